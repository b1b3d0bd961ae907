"""The GAN run kind: a generator and a discriminator trained by `smoothrl.gan.trainer`, through the recorder.

A run (`GanRunConfig`) trains one pair of `smoothrl.gan.networks` on one data set: an image set of
`smoothrl.gan.data` ('digits', 'fashion_mnist', 'mnist') or a 2-D mixture of `smoothrl.gan.mixtures` ('ring': 8
modes, 'grid': 25), with the loss, update scheme and smoothness method of `GanConfig` (thesis Sections 4.6, 7.4)
and each player's optimiser: Adam with β's from `gan.adam_betas`, DIVGRAD or MULEPS where the method asks for them
(Eqs 7.28, 7.31), its ε optionally annealed exponentially from `eps` to `eps_final` (Figure 7.15), or SGD.

Training runs in chunks of `log_period` steps, each one call of a jitted `lax.scan` (`GanTrainer.train`) that
returns the chunk's mean of every step metric: one host transfer per chunk, one `train` record (both losses, ρ,
the binned entropies of D on data and samples, σ of every discriminator layer under 'sigma', and Adam's
low-curvature fractions of Eq 7.36). A non-finite loss stops the run alone (`Recorder.check_loss`).

An `eval` record at step 0, every `eval_period` steps and at the end holds the FID and KID proxies of
`eval_samples` generator samples against held-out real examples (the test split of an image set, fresh draws of a
mixture): on an image set in the feature space of the classifier `classifier.cached_classifier` trains once on the
real data (its test accuracy is written once, as a 'classifier' record at step 0, and into the summary and the
final parameters' metadata as 'classifier_accuracy'), on a mixture in raw 2-D coordinates, there with the modes
covered and the high-quality fraction of `metrics.mode_coverage`; plus the trainer's `evaluate` (losses, entropies,
ρ, σ) on `gan.eval_batch_size` examples. Its samples (and held-out draws) come from `eval_key(seed, step)`, so an
evaluation is a function of the run's state alone. Each evaluation draws `samples/step_<step>.png`: a
`sample_grid`² grid of samples for images, a scatter of the samples over the modes for mixtures.

Every `checkpoint_period` steps the whole `GanState` is checkpointed (arrays and JSON, no pickle); a resumed run
continues from it and ends with the numbers of an uninterrupted run. The final parameters are
{'generator': θ, 'discriminator': φ} in `final/`.
"""

from __future__ import annotations

import dataclasses
import difflib
import io
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from smoothrl import optimizers
from smoothrl.gan import classifier as classifier_lib
from smoothrl.gan import data as gan_data
from smoothrl.gan import metrics, mixtures, networks, trainer
from smoothrl.gan.classifier import ClassifierConfig
from smoothrl.gan.networks import DIGITS_NETWORK, MIXTURE_NETWORK, NetworkConfig
from smoothrl.gan.trainer import GanConfig
from smoothrl.launch.run import checkpoint
from smoothrl.launch.run import config as config_lib
from smoothrl.launch.run import recorder as recorder_lib
from smoothrl.launch.run.files import atomic_file
from smoothrl.launch.run.kind import RunKind, TrainOptions
from smoothrl.launch.run.progress import Progress

KIND_NAME = 'gan'
SAMPLES_DIR = 'samples'
SCORE = 'fid_proxy'
MAX_SEED = 2**32 - 1
MIXTURES: tuple[str, ...] = ('ring', 'grid')
DATA_NAMES: tuple[str, ...] = (*gan_data.IMAGE_SETS, *MIXTURES)
# One example of each data set (known without loading it).
DATA_SHAPES: dict[str, tuple[int, ...]] = {
  'digits': (8, 8, 1),
  'fashion_mnist': (28, 28, 1),
  'mnist': (28, 28, 1),
  'ring': (2,),
  'grid': (2,),
}
OPTIMIZERS: tuple[str, ...] = ('adam', 'sgd')
_PRESET_OF = {'digits': 'digits', 'fashion_mnist': 'fashion', 'mnist': 'fashion', 'ring': 'ring', 'grid': 'grid'}
KID_SUBSETS = 10
KID_SUBSET_SIZE = 1000
_EVAL_STREAM = 0x6A4E  # folded into the run's key for the evaluations' draws, apart from training's


@dataclasses.dataclass(frozen=True)
class GanDataConfig:
  """The real data.

  Attributes:
    name: one of `DATA_NAMES`.
    path: a directory of IDX files ('mnist' needs one; 'fashion_mnist' falls back to the Debian package's).
  """

  name: str = 'digits'
  path: str = ''


@dataclasses.dataclass(frozen=True)
class GanOptimizerConfig:
  """Both players' optimisers.

  Attributes:
    name: 'adam' (β's from `gan.adam_betas`; DIVGRAD or MULEPS under those methods) or 'sgd'.
    discriminator_rate, generator_rate: the learning rates of φ and θ.
    eps: Adam's ε (ε₀ of MULEPS).
    eps_final: None, or Adam's ε annealed exponentially from `eps` to it (Figure 7.15); plain Adam only.
    eps_anneal_steps: the steps of the anneal (0: the run's steps).
  """

  name: str = 'adam'
  discriminator_rate: float = 2e-4
  generator_rate: float = 2e-4
  eps: float = 1e-8
  eps_final: float | None = None
  eps_anneal_steps: int = 0


@dataclasses.dataclass(frozen=True)
class GanRunConfig(config_lib.JsonConfig):
  """One GAN training run.

  Attributes:
    seed: the run's seed (initialisation, minibatches, latents, the evaluations' draws).
    out: the run directory.
    steps: training steps (one step updates both players).
    log_period: steps per compiled chunk, and between `train` records.
    eval_period: steps between `eval` records, a multiple of `log_period` (0: at step 0 and at the end only).
    eval_samples: generator samples (and at most as many held-out real examples) of each evaluation.
    sample_grid: the side of the PNG grid of samples drawn at each evaluation (0: none).
    checkpoint_period: steps between checkpoints, a multiple of `log_period` (0: none).
    data, network, gan, optimizer: the sections above and `smoothrl.gan`'s.
    classifier: the proxy classifier of image sets (`smoothrl.gan.classifier`).
  """

  seed: int = 0
  out: str = 'runs/gan'
  steps: int = 2000
  log_period: int = 50
  eval_period: int = 500
  eval_samples: int = 1000
  sample_grid: int = 8
  checkpoint_period: int = 500
  data: GanDataConfig = GanDataConfig()
  network: NetworkConfig = DIGITS_NETWORK
  gan: GanConfig = GanConfig()
  optimizer: GanOptimizerConfig = GanOptimizerConfig()
  classifier: ClassifierConfig = ClassifierConfig()


def _network_fields(network: NetworkConfig) -> dict[str, Any]:
  return {f'network.{k}': v for k, v in dataclasses.asdict(network).items()}


PRESETS: dict[str, dict[str, Any]] = {
  # The 8x8 digits with the small DCGAN pair.
  'digits': {'data.name': 'digits', **_network_fields(DIGITS_NETWORK)},
  # Fashion-MNIST (28x28) with the default DCGAN pair (thesis Section 7.4's image GANs at CPU scale).
  'fashion': {'data.name': 'fashion_mnist', **_network_fields(NetworkConfig())},
  # The ring of 8 and the grid of 25 with the MLP pair (the mode-collapse benchmarks of Metz et al.).
  'ring': {'data.name': 'ring', **_network_fields(MIXTURE_NETWORK)},
  'grid': {'data.name': 'grid', **_network_fields(MIXTURE_NETWORK)},
}


# ---------------------------------------------------------------------------------------------------------------
# Validation


def _is_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _is_rate(value: Any) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def validate(config: GanRunConfig, compiled: bool = False) -> None:
  """Raises one `ConfigError` listing every problem of `config` before any work starts."""
  del compiled  # GAN runs have no compiled programs of the compiled backend (`KIND.group` is None)
  c, d, o = config, config.data, config.optimizer
  found: list[str] = []
  check = lambda ok, message: None if ok else found.append(message)
  check(_is_int(c.seed) and 0 <= c.seed <= MAX_SEED, f'seed must be an integer in [0, 2**32), got {c.seed!r}')
  check(_is_int(c.steps) and c.steps > 0, f'steps must be a positive integer, got {c.steps!r}')
  log_ok = _is_int(c.log_period) and c.log_period > 0
  check(log_ok, f'log_period must be a positive integer, got {c.log_period!r}')
  for name in ('eval_period', 'checkpoint_period'):
    value = getattr(c, name)
    check(
      _is_int(value) and value >= 0 and (not log_ok or value % c.log_period == 0),
      f'{name} ({value!r}) must be 0 or a positive multiple of log_period ({c.log_period!r})',
    )
  check(
    _is_int(c.eval_samples) and c.eval_samples >= 2, f'eval_samples must be an integer >= 2, got {c.eval_samples!r}'
  )
  check(_is_int(c.sample_grid) and c.sample_grid >= 0, f'sample_grid must be an integer >= 0, got {c.sample_grid!r}')
  if _is_int(c.sample_grid) and _is_int(c.eval_samples) and d.name not in MIXTURES:
    check(
      c.sample_grid**2 <= c.eval_samples,
      f'sample_grid {c.sample_grid} needs {c.sample_grid**2} samples; eval_samples is {c.eval_samples}',
    )
  if d.name not in DATA_NAMES:
    close = difflib.get_close_matches(str(d.name), DATA_NAMES, n=1)
    hint = f'did you mean {close[0]!r}? ' if close else ''
    found.append(f'data.name {d.name!r} is unknown; {hint}valid: {", ".join(DATA_NAMES)}')
  check(isinstance(d.path, str), f'data.path must be a string (a directory of IDX files), got {d.path!r}')
  if d.name == 'mnist':
    check(bool(d.path), 'data.path must name a directory of the MNIST IDX files')
  if d.name in MIXTURES:
    check(not d.path, f'data.path applies to the image sets; {d.name!r} is drawn, not read')
  network_problems = networks.validate(c.network)
  found += network_problems
  if d.name in DATA_SHAPES and not network_problems:
    shape, kind = DATA_SHAPES[d.name], 'mlp' if d.name in MIXTURES else 'dcgan'
    check(
      tuple(c.network.data_shape) == shape,
      f'network.data_shape {tuple(c.network.data_shape)} does not fit data {d.name!r}, whose examples are {shape} '
      f"(the {_PRESET_OF[d.name]!r} preset's network fits it)",
    )
    check(c.network.kind == kind, f'data {d.name!r} takes network.kind {kind!r}, got {c.network.kind!r}')
  found += trainer.validate(c.gan)
  check(o.name in OPTIMIZERS, f'optimizer.name {o.name!r} is unknown; valid: {", ".join(OPTIMIZERS)}')
  for name in ('discriminator_rate', 'generator_rate', 'eps'):
    check(_is_rate(getattr(o, name)), f'optimizer.{name} must be a finite number > 0, got {getattr(o, name)!r}')
  check(o.eps_final is None or _is_rate(o.eps_final), f'optimizer.eps_final must be None or > 0, got {o.eps_final!r}')
  check(
    _is_int(o.eps_anneal_steps) and o.eps_anneal_steps >= 0,
    f"optimizer.eps_anneal_steps must be an integer >= 0 (0: the run's steps), got {o.eps_anneal_steps!r}",
  )
  scaled = c.gan.method in ('divgrad', 'muleps')
  if o.eps_final is not None:
    check(
      not scaled,
      f"optimizer.eps_final anneals plain Adam's ε; gan.method {c.gan.method!r} sets ε itself (Eqs 7.28, 7.31)",
    )
    check(o.name == 'adam', f"optimizer.eps_final anneals Adam's ε; optimizer.name is {o.name!r}")
  if o.name == 'sgd':
    check(not scaled, f'gan.method {c.gan.method!r} is an Adam variant (Eqs 7.28, 7.31); optimizer.name is sgd')
  found += classifier_lib.validate(c.classifier)
  if found:
    raise config_lib.ConfigError('invalid config:\n  - ' + '\n  - '.join(found))


def canonical(config: GanRunConfig) -> GanRunConfig:
  """`config` without its directory (and without the classifier of a mixture, which has none)."""
  config = dataclasses.replace(config, out='')
  if config.data.name in MIXTURES:
    config = dataclasses.replace(config, classifier=ClassifierConfig())
  return config


# ---------------------------------------------------------------------------------------------------------------
# The compiled pieces


def eval_key(seed: int, step: int) -> jax.Array:
  """The key of the evaluation at `step`: (samples, held-out draws, `evaluate`) come from its three splits."""
  return jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), _EVAL_STREAM), step)


def _player_optimizer(config: GanRunConfig, player: str) -> optax.GradientTransformation:
  o = config.optimizer
  rate = o.discriminator_rate if player == 'discriminator' else o.generator_rate
  if o.name == 'sgd':
    return optax.sgd(rate)
  schedule = None
  if o.eps_final is not None:
    schedule = optimizers.exponential_eps_schedule(o.eps, o.eps_final, o.eps_anneal_steps or config.steps)
  return trainer.player_optimizer(config.gan, player, rate, o.eps, schedule)


class _Programs:
  """The data, networks and jitted functions of one structure, shared by the runs of a process that have it."""

  def __init__(self, config: GanRunConfig):
    name = config.data.name
    self.mixture: mixtures.Mixture | None = None
    self.images: gan_data.ImageData | None = None
    if name in MIXTURES:
      self.mixture = mixtures.ring() if name == 'ring' else mixtures.grid()
      sampler = self.mixture.sample
    else:
      self.images = gan_data.load_images(name, config.data.path)
      sampler = gan_data.array_sampler(self.images.train)
    self.networks = networks.make_networks(config.network)
    self.trainer = trainer.make_trainer(
      self.networks,
      sampler,
      _player_optimizer(config, 'discriminator'),
      _player_optimizer(config, 'generator'),
      config.gan,
    )
    self.init = self.trainer.init  # once per run: its networks' inits are jitted, the rest is a few small ops
    self.evaluate = jax.jit(self._evaluate, static_argnums=2)
    self._chunks: dict[int, Callable[[trainer.GanState], Any]] = {}
    self.classifier: classifier_lib.Classifier | None = None
    self.real_features: np.ndarray | None = None

  def _evaluate(self, state: trainer.GanState, key: jax.Array, n: int) -> tuple[jax.Array, jax.Array, dict]:
    sample_key, real_key, eval_key_ = jax.random.split(key, 3)
    samples = self.trainer.sample(state, sample_key, n)
    real = self.mixture.sample(real_key, n) if self.mixture is not None else jnp.zeros((0,))
    return samples, real, self.trainer.evaluate(state, eval_key_)

  def chunk(self, steps: int) -> Callable[[trainer.GanState], Any]:
    """state -> (state after `steps` steps, the mean of every step metric over them): one compiled call."""
    if steps not in self._chunks:

      def run(state: trainer.GanState) -> Any:
        state, stacked = self.trainer.train(state, steps)
        return state, jax.tree.map(lambda x: jnp.mean(x, axis=0), stacked)

      self._chunks[steps] = jax.jit(run, donate_argnums=0)
    return self._chunks[steps]

  def template(self) -> trainer.GanState:
    return jax.eval_shape(self.trainer.init, jax.random.PRNGKey(0))

  def features_of(self, config: GanRunConfig) -> tuple[classifier_lib.Classifier, np.ndarray]:
    """The cached classifier of the image set and the features of its held-out examples (at most eval_samples)."""
    if self.classifier is None:
      self.classifier = classifier_lib.cached_classifier(self.images, config.classifier)
      self.real_features = classifier_lib.features(self.classifier, self.images.test[: config.eval_samples])
    return self.classifier, self.real_features


_PROGRAMS: dict[str, _Programs] = {}


def _programs(config: GanRunConfig) -> _Programs:
  """`_Programs` of `config`'s structure: everything but the seed, the directory and the periods."""
  o = config.optimizer
  anneal = o.eps_anneal_steps or config.steps if o.eps_final is not None else 0
  key = json.dumps(
    {
      'data': dataclasses.asdict(config.data),
      'network': dataclasses.asdict(config.network),
      'gan': dataclasses.asdict(config.gan),
      'optimizer': dataclasses.asdict(dataclasses.replace(o, eps_anneal_steps=anneal)),
      'classifier': dataclasses.asdict(config.classifier),
      'eval_samples': config.eval_samples,
    },
    sort_keys=True,
  )
  if key not in _PROGRAMS:
    _PROGRAMS[key] = _Programs(config)
  return _PROGRAMS[key]


# ---------------------------------------------------------------------------------------------------------------
# Sample figures


def _png(draw: Callable[[Any], None], path: Path, size: float) -> None:
  """Draws on matplotlib's Agg canvas (no display) and writes the PNG atomically."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  fig = Figure(figsize=(size, size))
  FigureCanvasAgg(fig)
  draw(fig)
  buffer = io.BytesIO()
  fig.savefig(buffer, format='png', dpi=100)
  path.parent.mkdir(parents=True, exist_ok=True)
  with atomic_file(path, 'wb') as f:
    f.write(buffer.getvalue())


def image_grid(images: np.ndarray, side: int) -> np.ndarray:
  """The first side² images (N, H, W, C) in [−1, 1] tiled row by row into one (side·(H+1)−1, side·(W+1)−1, C)
  image in [0, 1], one background pixel between neighbours."""
  n, h, w, c = images.shape
  if n < side * side:
    raise ValueError(f'a {side}x{side} grid needs {side * side} images, got {n}')
  grid = np.zeros((side * (h + 1) - 1, side * (w + 1) - 1, c), np.float32)
  for i in range(side * side):
    r, col = divmod(i, side)
    grid[r * (h + 1) : r * (h + 1) + h, col * (w + 1) : col * (w + 1) + w] = (np.clip(images[i], -1, 1) + 1) / 2
  return grid


def _write_samples(config: GanRunConfig, programs: _Programs, step: int, samples: np.ndarray, title: str) -> None:
  path = Path(config.out) / SAMPLES_DIR / f'step_{step:06d}.png'
  if programs.mixture is not None:
    means = programs.mixture.means

    def draw(fig: Any) -> None:
      ax = fig.add_subplot()
      ax.scatter(samples[:, 0], samples[:, 1], s=3, alpha=0.4, label='samples')
      ax.scatter(means[:, 0], means[:, 1], marker='x', color='red', s=30, label='modes')
      ax.set_aspect('equal')
      ax.set_title(title, fontsize=9)
      ax.legend(loc='upper right', fontsize=7)

    _png(draw, path, 5)
    return
  grid = image_grid(samples, config.sample_grid)

  def draw(fig: Any) -> None:
    ax = fig.add_axes((0, 0, 1, 0.94))
    ax.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid, cmap='gray', vmin=0, vmax=1, interpolation='nearest')
    ax.set_axis_off()
    fig.suptitle(title, fontsize=9)

  _png(draw, path, 4)


# ---------------------------------------------------------------------------------------------------------------
# One run


def _mean_record(values: dict[str, Any]) -> dict[str, Any]:
  """A metrics dict with 'sigma/<layer>' entries gathered under 'sigma' (as RL's records hold them)."""
  record: dict[str, Any] = {}
  sigma: dict[str, float] = {}
  for key, value in values.items():
    if key.startswith('sigma/'):
      sigma[key[len('sigma/') :]] = float(value)
    else:
      record[key] = float(value)
  if sigma:
    record['sigma'] = sigma
  return record


def _evaluation(config: GanRunConfig, programs: _Programs, state: trainer.GanState, step: int) -> dict[str, Any]:
  """The `eval` record at `step` (module docstring); draws the samples' PNG."""
  samples, real, values = jax.device_get(programs.evaluate(state, eval_key(config.seed, step), config.eval_samples))
  samples = np.asarray(samples, np.float64)
  if not np.all(np.isfinite(samples)):
    raise config_lib.TrainingError(f'non-finite generator samples at step {step}; stopping this run')
  record: dict[str, Any] = {'step': step, 'kind': 'eval'}
  if programs.mixture is not None:
    real_features, fake_features = np.asarray(real, np.float64), samples
    name = 'raw 2-D coordinates'
  else:
    clf, real_features = programs.features_of(config)
    fake_features, name = classifier_lib.features(clf, samples), clf.name
  fid = metrics.fid_proxy(real_features, fake_features, features_name=name)
  kid = metrics.kid_proxy(
    real_features, fake_features, num_subsets=KID_SUBSETS, subset_size=KID_SUBSET_SIZE, features_name=name
  )
  record.update(fid_proxy=fid.value, kid_proxy=kid.value, kid_proxy_std=kid.std)
  record.update(sample_count=int(samples.shape[0]), real_count=int(real_features.shape[0]))
  title = f'step {step}: fid_proxy {fid.value:.3g}'
  if programs.mixture is not None:
    coverage = metrics.mode_coverage(samples, programs.mixture)
    record.update(
      modes_covered=coverage.modes_covered,
      num_modes=coverage.num_modes,
      high_quality_fraction=coverage.high_quality_fraction,
    )
    title += f', {coverage.modes_covered}/{coverage.num_modes} modes'
  record.update(_mean_record(values))
  if config.sample_grid:
    _write_samples(config, programs, step, samples, title)
  return record


def _train_one(config: GanRunConfig, show_progress: bool, resume: bool) -> dict[str, Any]:
  done = recorder_lib.finished_summary(config.out, config.to_json()) if resume else None
  if done is not None:
    return done
  with recorder_lib.Recorder(config.out, config.to_json(), kind=KIND_NAME) as rec:
    try:
      return _run(config, rec, show_progress, resume)
    except config_lib.TrainingError as e:
      return rec.fail(e)
    except BaseException as e:
      if rec.failure is None:
        rec.fail(e)
      raise


def _run(config: GanRunConfig, rec: recorder_lib.Recorder, show_progress: bool, resume: bool) -> dict[str, Any]:
  programs = _programs(config)
  saved = rec.saved_checkpoint() if resume else None
  if saved is None:
    state, t0, elapsed = programs.init(jax.random.PRNGKey(config.seed)), 0, 0.0
  else:
    state = checkpoint.restore(saved.leaves['state'], programs.template(), config.out)
    t0, elapsed = saved.step, float(saved.meta['elapsed'])
  rec.start(saved)
  accuracy = None
  if programs.images is not None:
    clf, _ = programs.features_of(config)
    accuracy = clf.test_accuracy
    if t0 == 0:
      rec.write(
        {
          'step': 0,
          'kind': 'classifier',
          'classifier_accuracy': clf.test_accuracy,
          'num_test': clf.num_test,
          'features': clf.name,
          'cache': str(classifier_lib.cache_path(programs.images, config.classifier)),
        }
      )
  start = time.perf_counter() - elapsed
  last_eval: dict[str, Any] = {}
  if t0 == 0:
    last_eval = _evaluation(config, programs, state, 0) | {'elapsed': 0.0}
    rec.write(last_eval)
  t = t0
  with Progress(config.steps, enabled=show_progress, first=t0) as progress:
    while t < config.steps:
      end = min(t + config.log_period, config.steps)
      state, means = programs.chunk(end - t)(state)
      record = _mean_record(jax.device_get(means))
      rec.check_loss(record['d_loss'], end)
      rec.check_loss(record['g_loss'], end)
      rec.write({'step': end, 'kind': 'train', **record})
      if end == config.steps or (config.eval_period and end % config.eval_period == 0):
        last_eval = _evaluation(config, programs, state, end) | {'elapsed': time.perf_counter() - start}
        rec.write(last_eval)
      if config.checkpoint_period and end % config.checkpoint_period == 0 and end < config.steps:
        rec.checkpoint(end, {'state': jax.device_get(state)}, {'elapsed': time.perf_counter() - start})
      t = end
      progress.update(
        end, force=end == config.steps, d_loss=record['d_loss'], g_loss=record['g_loss'], fid=last_eval.get(SCORE)
      )
  host = jax.device_get(state)
  summary: dict[str, Any] = {
    'steps': config.steps,
    'data': config.data.name,
    'wall_seconds': time.perf_counter() - start,
    'generator_parameters': networks.num_parameters(host.g_params),
    'discriminator_parameters': networks.num_parameters(host.d_params),
    'features': programs.classifier.name if programs.classifier is not None else 'raw 2-D coordinates',
    'final_eval': last_eval,
  }
  meta: dict[str, Any] = {'config': config.to_dict()}
  if accuracy is not None:
    summary['classifier_accuracy'] = meta['classifier_accuracy'] = accuracy
  model = {'arrays': {'generator': host.g_params, 'discriminator': host.d_params}, 'meta': meta}
  return rec.finish(summary, config.steps, model)


def train(configs: Sequence[GanRunConfig], options: TrainOptions) -> list[dict[str, Any]]:
  """Trains GAN runs one after another (each through its own `Recorder`); on resume, finished runs are read back
  and stopped ones continue from their checkpoints. A run whose loss turns non-finite stops alone."""
  return [_train_one(c, options.show_progress and n == 0, options.resume) for n, c in enumerate(configs)]


KIND = RunKind(
  name=KIND_NAME,
  config_type=GanRunConfig,
  presets=PRESETS,
  validate=validate,
  train=train,
  canonical=canonical,
  group=None,
  score=SCORE,
  higher_is_better=False,
  subject=lambda config: f'gan/{config.get("data", {}).get("name", "?")}',
  step_name='training steps',
)
