"""The smoothness toys of thesis Chapter 6 on two moons (Figures 6.3, 6.4, 6.5; Appendix D.1), as CPU proxies.

Three reproductions, each training MLPs on 50 two-moons points for 100 full-batch Adam steps (learning rate 0.01,
β₁ = 0.9, β₂ = 0.999), 3 seeds, then measuring the trained networks on a grid over the input box:

- `moons-depth` (Figure 6.3a–b): the deep MLP (100, 100, 100) against the shallow one (100,); depth makes the
  decision function less smooth (higher local Lipschitz constants over the box).
- `moons-penalty` (Figures 6.3c, 6.4, 6.5): the deep MLP with and without a gradient penalty on the data (Eq 6.4);
  the penalty lowers the local Lipschitz constants near the training points.
- `moons-sn` (Figures 6.3d–e, 6.4, 6.5): the deep MLP with Spectral Normalisation on every layer (Eq 6.3) at K = 1
  underfits; K = 10 recovers the fit.

The thesis' networks have one output; here the model has two logits trained with softmax cross-entropy, and every
smoothness measure is taken of the logit margin m(x) = f₁(x) − f₀(x), the one-output network's logit (softmax of
two logits is the sigmoid of their difference).

Every number is read back from the run directories: accuracies from `metrics.jsonl`, and the local Lipschitz grids
(`smoothness.local_lipschitz_grid`, Appendix D.1) from the final parameters in `final/`, rebuilt on the model of the
run's own config. The final parameters hold no model state: an SN model's power-iteration vectors are rebuilt by
`model.init` with the run's initialisation key, then advanced by as many power-iteration steps as the run took, on
the final weights. The per-cell grids and decision surfaces go to `lipschitz.npz` beside `result.json` (plain
arrays: load with `numpy.load(path, allow_pickle=False)`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from smoothrl.launch.reproductions import common
from smoothrl.launch.run import checkpoint, supervised
from smoothrl.networks import smoothness
from smoothrl.supervised import data, models

GRID_FILE = 'lipschitz.npz'
# The input box the grids cover: make_moons' points (noise 0.1) lie in about [-1.3, 2.3] x [-0.8, 1.3].
BOX_LOW = (-1.5, -1.0)
BOX_HIGH = (2.5, 1.5)
DEEP = (100, 100, 100)
SHALLOW = (100,)
# The pairs of every grid come from one key, so that the networks of a reproduction are measured on the same pairs.
GRID_KEY = 0


class Scale(NamedTuple):
  """How big a reproduction runs: the real CPU proxy or the quick smoke version."""

  seeds: tuple[int, ...]
  steps: int
  log_period: int
  deep: tuple[int, ...]
  shallow: tuple[int, ...]
  cells_per_dim: int
  pairs_per_cell: int
  surface_cells: int
  gc: bool


FULL = Scale(
  seeds=(0, 1, 2),
  steps=100,
  log_period=10,
  deep=DEEP,
  shallow=SHALLOW,
  cells_per_dim=50,
  pairs_per_cell=200,
  surface_cells=100,
  gc=True,
)
QUICK = Scale(
  seeds=(0,),
  steps=2,
  log_period=2,
  deep=(8, 8, 8),
  shallow=(8,),
  cells_per_dim=4,
  pairs_per_cell=4,
  surface_cells=8,
  gc=False,
)

# The data and optimiser of Appendix D.1: 50 training points (of 200 generated, 50 of the rest held out for
# testing), Adam at 0.01, full batch.
BASE: dict[str, Any] = {
  'data.name': 'two_moons',
  'data.num_points': 200,
  'data.noise': 0.1,
  'data.num_train': 50,
  'batch_size': 0,
  'checkpoint_period': 0,
  'optimizer.name': 'adam',
  'optimizer.learning_rate': 0.01,
  'optimizer.adam_b1': 0.9,
  'optimizer.adam_b2': 0.999,
}
# Eq 6.4 on the data with K = 0: ζ E_data (‖∇_x f‖² − 0)², with ‖∇_x f‖ the Frobenius norm of the logits' Jacobian.
PENALTY: dict[str, Any] = {
  'regulariser.gradient_penalty': 0.1,
  'regulariser.penalty_form': 'squared',
  'regulariser.penalty_target': 0.0,
  'regulariser.penalty_points': 'data',
}
# Eq 6.3 on all four layers as Miyato et al.: W -> K W / σ(W) (every layer's spectral norm is K, Figure 6.4), one
# power-iteration step per training step, no gradient through σ.
SN: dict[str, Any] = {'model.sn_layers': (0, 1, 2, 3), 'model.sn_always': True, 'model.power_iterations': 1}

_COMMON_SETTINGS = (
  'two moons (sklearn make_moons, noise 0.1): 50 training points, 50 test points; full-batch Adam (lr 0.01, '
  'betas 0.9, 0.999) for 100 steps; seeds 0, 1, 2; two logits with softmax cross-entropy where the thesis has one '
  'output, smoothness measured on the logit margin f1 - f0; local Lipschitz constants on a 50 x 50 grid (2500 cells, '
  'as the thesis) of the box [-1.5, 2.5] x [-1.0, 1.5] with 200 pairs per cell (the thesis: 2500); a CPU-scale proxy'
)


# ----------------------------------------------------------------------------
# Training and reading back.
# ----------------------------------------------------------------------------


def _scale(quick: bool) -> Scale:
  return QUICK if quick else FULL


def _configs(
  out: Path, variants: Mapping[str, Mapping[str, Any]], scale: Scale
) -> dict[str, list[supervised.FitConfig]]:
  """One config per variant and seed, in `out/runs/<variant>_s<seed>`."""
  fields = {**BASE, 'steps': scale.steps, 'log_period': scale.log_period, 'metrics.gc': scale.gc}
  return {
    name: [common.fit_config(out, f'{name}_s{seed}', seed=seed, **fields, **extra) for seed in scale.seeds]
    for name, extra in variants.items()
  }


class Trained(NamedTuple):
  """A finished run rebuilt from its directory: its config, data, model, final parameters and model state."""

  config: supervised.FitConfig
  dataset: data.Dataset
  model: models.Model
  params: Any
  state: Any


@functools.lru_cache(maxsize=16)
def _model(config: models.ModelConfig, input_shape: tuple[int, ...], num_outputs: int) -> models.Model:
  """One `Model` per architecture, so that the runs of a variant share its compiled functions."""
  return models.make_model(config, input_shape, num_outputs)


@functools.lru_cache(maxsize=16)
def _power_iteration(config: models.ModelConfig, input_shape: tuple[int, ...], num_outputs: int, steps: int):
  """`(params, state, x) -> state` advanced by `steps` training-mode forward passes (power-iteration steps)."""
  model = _model(config, input_shape, num_outputs)
  advance = lambda params, x: lambda _, s: model.apply(params, s, x, True)[1]
  return jax.jit(lambda params, state, x: jax.lax.fori_loop(0, steps, advance(params, x), state))


def load_trained(run_dir: str | Path) -> Trained:
  """Rebuilds a finished supervised run from `run_dir`: the model of its saved config and its final parameters.

  The final parameters hold no model state; an SN model's power-iteration vectors are rebuilt with `model.init` on
  the run's initialisation key (the trainer's first split of `PRNGKey(seed)`) and advanced by `steps` training-mode
  forward passes (`steps × power_iterations` power-iteration steps, as many as the run took) on the final weights.

  Raises:
    ConfigError: the run has no final parameters, or they do not fit the model of its config.
  """
  meta, leaves = checkpoint.load_model(run_dir)
  config = supervised.FitConfig.from_dict(meta['config'])
  dataset = data.load(config.data)
  shape = tuple(int(d) for d in dataset.x_train.shape[1:])
  model = _model(config.model, shape, dataset.num_outputs)
  x = jnp.asarray(dataset.x_train[:1])
  init_key = jax.random.split(jax.random.PRNGKey(config.seed))[0]
  template = jax.eval_shape(lambda k: model.init(k, x)[0], init_key)
  params = checkpoint.restore(leaves, template, run_dir)
  state = model.init(init_key, x)[1]
  if model.sn_names:
    state = _power_iteration(config.model, shape, dataset.num_outputs, config.steps)(params, state, x)
  return Trained(config, dataset, model, params, state)


def margin_fn(model: models.Model, params: Any, state: Any):
  """x (batch, 2) -> the logit margin f₁(x) − f₀(x), shape (batch, 1): the thesis' one-output network's logit."""

  def margin(x: jax.Array) -> jax.Array:
    logits = model.apply(params, state, x, False)[0]
    return (logits[:, 1] - logits[:, 0])[:, None]

  return margin


def data_cells(x: np.ndarray, cells_per_dim: int) -> np.ndarray:
  """A (cells, cells) bool mask of the grid cells of `local_lipschitz_grid` over the box that hold a point of `x`."""
  x = np.asarray(x)
  if x.ndim != 2 or x.shape[1] != len(BOX_LOW):
    raise ValueError(f'x must be a batch of {len(BOX_LOW)}-d points, shape (n, {len(BOX_LOW)}); got {x.shape}')
  if isinstance(cells_per_dim, bool) or not isinstance(cells_per_dim, (int, np.integer)) or cells_per_dim < 1:
    raise ValueError(f'cells_per_dim must be a positive int, got {cells_per_dim!r}')
  low, high = np.asarray(BOX_LOW), np.asarray(BOX_HIGH)
  index = np.floor((x - low) / (high - low) * cells_per_dim).astype(int)
  inside = np.all((index >= 0) & (index < cells_per_dim), axis=1)
  mask = np.zeros((cells_per_dim, cells_per_dim), bool)
  mask[index[inside, 0], index[inside, 1]] = True
  return mask


@functools.lru_cache(maxsize=16)
def _measure_fn(config: models.ModelConfig, input_shape: tuple[int, ...], num_outputs: int, scale: Scale):
  """The jitted `(params, state, x_train) -> (grid, surface, sigmas, predictions)` of one architecture."""
  model = _model(config, input_shape, num_outputs)
  centres = smoothness.grid_cell_centres(BOX_LOW, BOX_HIGH, scale.surface_cells).reshape(-1, 2)

  def measured(params, state, x_train):
    grid = smoothness.local_lipschitz_grid(
      margin_fn(model, params, state),
      BOX_LOW,
      BOX_HIGH,
      scale.cells_per_dim,
      scale.pairs_per_cell,
      jax.random.PRNGKey(GRID_KEY),
      cells_per_batch=50,
    )
    logits = model.apply(params, state, centres, False)[0]
    surface = jax.nn.softmax(logits)[:, 1].reshape(scale.surface_cells, scale.surface_cells)
    weights = model.normalise(params, state) if model.sn_names else params
    sigmas = smoothness.layer_spectral_norms(weights, model.specs)
    predictions = jnp.argmax(model.apply(params, state, x_train, False)[0], axis=-1)
    return grid, surface, jnp.stack([sigmas[s.name] for s in model.specs]), predictions

  return jax.jit(measured)


class Measured(NamedTuple):
  """What one trained network gives: its local Lipschitz grid, its decision surface and summaries."""

  grid: np.ndarray  # (cells, cells), entry [i, j] the cell i-th along x₀ and j-th along x₁ from BOX_LOW
  surface: np.ndarray  # (surface_cells, surface_cells): p(class 1) at the centres of a finer grid
  numbers: dict[str, Any]


def measure(run_dir: str | Path, scale: Scale) -> Measured:
  """Rebuilds the run in `run_dir` and measures it: the local Lipschitz constants of its logit margin over the box
  (Appendix D.1), their mean and max over the box, over the cells holding a training point and over the others, its
  decision surface, each layer's spectral norm σ_l of the weights the forward pass uses (Figure 6.4) and the
  training accuracy of the rebuilt network."""
  t = load_trained(run_dir)
  shape = tuple(int(d) for d in t.dataset.x_train.shape[1:])
  fn = _measure_fn(t.config.model, shape, t.dataset.num_outputs, scale)
  grid, surface, sigmas, predictions = jax.device_get(fn(t.params, t.state, jnp.asarray(t.dataset.x_train)))
  grid, sigmas = np.asarray(grid, np.float64), np.asarray(sigmas, np.float64)
  near = data_cells(t.dataset.x_train, scale.cells_per_dim)
  numbers = {
    'lipschitz_mean': float(grid.mean()),
    'lipschitz_max': float(grid.max()),
    'lipschitz_near_data': float(grid[near].mean()),
    'lipschitz_away_from_data': float(grid[~near].mean()),
    'layer_spectral_norms': [float(s) for s in sigmas],
    'spectral_norm_product': float(np.prod(sigmas)),
    'rebuilt_train_accuracy': float(np.mean(predictions == t.dataset.y_train)),
  }
  return Measured(grid, np.asarray(surface), numbers)


def _mean(values: Sequence[float]) -> float:
  return float(np.mean(values))


def _train_and_measure(
  out: Path, variants: Mapping[str, Mapping[str, Any]], scale: Scale
) -> tuple[dict[str, list[supervised.FitConfig]], dict[str, list[Measured]], dict[str, Any]]:
  """Trains every variant × seed (seeds of one variant as one vmapped program), measures each finished run from
  its directory, writes the grids and surfaces to `out/GRID_FILE` and returns the numbers per variant: the final
  `eval` record's accuracies and losses, and the measurements, per seed and averaged over seeds."""
  configs = _configs(out, variants, scale)
  common.train([c for cs in configs.values() for c in cs])
  measured = {name: [measure(c.out, scale) for c in cs] for name, cs in configs.items()}
  arrays: dict[str, np.ndarray] = {
    'box_low': np.asarray(BOX_LOW),
    'box_high': np.asarray(BOX_HIGH),
  }
  per_variant: dict[str, Any] = {}
  for name, cs in configs.items():
    runs = []
    for c, m in zip(cs, measured[name]):
      arrays[f'lipschitz/{name}/seed{c.seed}'] = m.grid
      arrays[f'surface/{name}/seed{c.seed}'] = m.surface
      record = {
        'seed': c.seed,
        'run': str(Path(c.out).relative_to(out)),
        **{f: common.final(c, f) for f in ('train_accuracy', 'test_accuracy', 'train_loss', 'test_loss')},
        **m.numbers,
      }
      runs.append(record)
    scalars = [k for k, v in runs[0].items() if isinstance(v, float)]
    per_variant[name] = {'mean_over_seeds': {k: _mean([r[k] for r in runs]) for k in scalars}, 'seeds': runs}
  first = next(iter(configs.values()))[0]
  dataset = data.load(first.data)  # every run of a reproduction shares the split (`data.split_seed`)
  arrays['x_train'], arrays['y_train'] = dataset.x_train, dataset.y_train
  out.mkdir(parents=True, exist_ok=True)
  with open(out / GRID_FILE, 'wb') as f:
    np.savez(f, **arrays)
  return configs, measured, per_variant


# ----------------------------------------------------------------------------
# The figure.
# ----------------------------------------------------------------------------


def _figure(out: Path, title: str, labels: Mapping[str, str], measured: Mapping[str, Sequence[Measured]]):
  """One row per variant (its first seed): the decision surface p(class 1) with the training points, and the map
  of local Lipschitz constants of the logit margin (a colour scale per panel, as in thesis Figure 6.5)."""
  from matplotlib.figure import Figure

  with np.load(out / GRID_FILE, allow_pickle=False) as z:
    x, y = z['x_train'], z['y_train']
  extent = (BOX_LOW[0], BOX_HIGH[0], BOX_LOW[1], BOX_HIGH[1])
  rows = len(measured)
  fig = Figure(figsize=(10.0, 3.0 * rows + 0.5))  # a fixed layout: the constrained one doubles the drawing time
  axes = fig.subplots(rows, 2, squeeze=False)
  fig.subplots_adjust(left=0.06, right=0.97, bottom=0.06, top=1 - 0.5 / (3.0 * rows + 0.5), wspace=0.2, hspace=0.35)
  for row, (name, ms) in enumerate(measured.items()):
    m = ms[0]
    surface_ax, grid_ax = axes[row]
    image = surface_ax.imshow(m.surface.T, origin='lower', extent=extent, cmap='RdBu_r', vmin=0, vmax=1, aspect='auto')
    surface_ax.contour(m.surface.T, levels=[0.5], origin='lower', extent=extent, colors='k', linewidths=1)
    surface_ax.scatter(x[:, 0], x[:, 1], c=y, cmap='RdBu_r', edgecolors='k', s=14, vmin=0, vmax=1)
    acc = m.numbers['rebuilt_train_accuracy']
    surface_ax.set_title(f'{labels[name]}: p(class 1), train acc {acc:.2f}', fontsize=9)
    fig.colorbar(image, ax=surface_ax, shrink=0.8)
    image = grid_ax.imshow(m.grid.T, origin='lower', extent=extent, cmap='viridis', aspect='auto')
    grid_ax.scatter(x[:, 0], x[:, 1], c='w', edgecolors='k', s=10)
    grid_ax.set_title(
      f'{labels[name]}: local Lipschitz of f1 - f0 (mean {m.numbers["lipschitz_mean"]:.2f})', fontsize=9
    )
    fig.colorbar(image, ax=grid_ax, shrink=0.8)
  fig.suptitle(f'{title} (seed 0; CPU proxy)', fontsize=10)
  common.save(fig, out)


# ----------------------------------------------------------------------------
# The reproductions.
# ----------------------------------------------------------------------------


def _depth(out: Path | str, quick: bool) -> dict[str, Any]:
  out, scale = Path(out), _scale(quick)
  variants = {'deep': {'model.widths': scale.deep}, 'shallow': {'model.widths': scale.shallow}}
  _, measured, numbers = _train_and_measure(out, variants, scale)
  deep, shallow = numbers['deep']['mean_over_seeds'], numbers['shallow']['mean_over_seeds']
  summary = {
    'deep_lipschitz_mean': deep['lipschitz_mean'],
    'shallow_lipschitz_mean': shallow['lipschitz_mean'],
    'deep_lipschitz_max': deep['lipschitz_max'],
    'shallow_lipschitz_max': shallow['lipschitz_max'],
    'deep_train_accuracy': deep['train_accuracy'],
    'shallow_train_accuracy': shallow['train_accuracy'],
    'seeds_deep_rougher': sum(
      d['lipschitz_mean'] > s['lipschitz_mean'] for d, s in zip(numbers['deep']['seeds'], numbers['shallow']['seeds'])
    ),
  }
  labels = {'deep': f'MLP {scale.deep}', 'shallow': f'MLP {scale.shallow}'}
  _figure(out, 'Depth reduces smoothness (thesis Figure 6.3a-b)', labels, measured)
  return common.write_result(out, MOONS_DEPTH, {'summary': summary, 'variants': numbers, 'grids': GRID_FILE})


def _penalty(out: Path | str, quick: bool) -> dict[str, Any]:
  out, scale = Path(out), _scale(quick)
  variants = {'baseline': {'model.widths': scale.deep}, 'penalty': {'model.widths': scale.deep, **PENALTY}}
  _, measured, numbers = _train_and_measure(out, variants, scale)
  base, pen = numbers['baseline']['mean_over_seeds'], numbers['penalty']['mean_over_seeds']
  summary = {
    'baseline_lipschitz_near_data': base['lipschitz_near_data'],
    'penalty_lipschitz_near_data': pen['lipschitz_near_data'],
    'baseline_lipschitz_away_from_data': base['lipschitz_away_from_data'],
    'penalty_lipschitz_away_from_data': pen['lipschitz_away_from_data'],
    'baseline_train_accuracy': base['train_accuracy'],
    'penalty_train_accuracy': pen['train_accuracy'],
    'baseline_spectral_norm_product': base['spectral_norm_product'],
    'penalty_spectral_norm_product': pen['spectral_norm_product'],
    'seeds_penalty_smoother_near_data': sum(
      p['lipschitz_near_data'] < b['lipschitz_near_data']
      for p, b in zip(numbers['penalty']['seeds'], numbers['baseline']['seeds'])
    ),
  }
  labels = {'baseline': 'no penalty', 'penalty': 'gradient penalty'}
  _figure(out, 'A gradient penalty smooths near the data (thesis Figures 6.3c, 6.5)', labels, measured)
  return common.write_result(out, MOONS_PENALTY, {'summary': summary, 'variants': numbers, 'grids': GRID_FILE})


def _sn(out: Path | str, quick: bool) -> dict[str, Any]:
  out, scale = Path(out), _scale(quick)
  variants = {
    'baseline': {'model.widths': scale.deep},
    'sn_k1': {'model.widths': scale.deep, **SN, 'model.lipschitz': 1.0},
    'sn_k10': {'model.widths': scale.deep, **SN, 'model.lipschitz': 10.0},
  }
  _, measured, numbers = _train_and_measure(out, variants, scale)
  means = {name: v['mean_over_seeds'] for name, v in numbers.items()}
  summary = {
    **{f'{name}_train_accuracy': m['train_accuracy'] for name, m in means.items()},
    **{f'{name}_test_accuracy': m['test_accuracy'] for name, m in means.items()},
    **{f'{name}_lipschitz_mean': m['lipschitz_mean'] for name, m in means.items()},
    'sn_k1_layer_spectral_norms': numbers['sn_k1']['seeds'][0]['layer_spectral_norms'],
    'sn_k10_layer_spectral_norms': numbers['sn_k10']['seeds'][0]['layer_spectral_norms'],
    'baseline_layer_spectral_norms': numbers['baseline']['seeds'][0]['layer_spectral_norms'],
  }
  labels = {'baseline': 'no SN', 'sn_k1': 'SN all layers, K = 1', 'sn_k10': 'SN all layers, K = 10'}
  _figure(out, 'SN with K = 1 underfits, K = 10 recovers the fit (thesis Figures 6.3d-e)', labels, measured)
  return common.write_result(out, MOONS_SN, {'summary': summary, 'variants': numbers, 'grids': GRID_FILE})


MOONS_DEPTH = common.Reproduction(
  name='moons-depth',
  figure='Figure 6.3 (a, b)',
  claim='depth reduces smoothness: the MLP (100, 100, 100) has higher local Lipschitz constants over the input box '
  'than the MLP (100,) trained the same way',
  settings=f'{_COMMON_SETTINGS}; MLPs (100, 100, 100) and (100,), ReLU, standard initialisation',
  run=_depth,
)
MOONS_PENALTY = common.Reproduction(
  name='moons-penalty',
  figure='Figures 6.3c, 6.4, 6.5',
  claim='a gradient penalty on the data smooths the decision surface near the data: lower local Lipschitz '
  'constants in the grid cells holding training points than without it',
  settings=f'{_COMMON_SETTINGS}; MLP (100, 100, 100), ReLU; gradient penalty (Eq 6.4) with zeta 0.1, K = 0, '
  'squared form, at the training points, against the same MLP without it',
  run=_penalty,
)
MOONS_SN = common.Reproduction(
  name='moons-sn',
  figure='Figures 6.3d, 6.3e, 6.4, 6.5',
  claim='Spectral Normalisation of every layer with K = 1 underfits (low training accuracy); K = 10 recovers the fit',
  settings=f'{_COMMON_SETTINGS}; MLP (100, 100, 100), ReLU; SN (Eq 6.3, Miyato et al.: W -> K W / sigma(W), one '
  'power-iteration step per training step, no gradient through sigma) on all 4 layers with K = 1 and K = 10 per '
  'layer, against no SN; the data-scaling variant (Figure 6.3f) is not run',
  run=_sn,
)

REPRODUCTIONS: tuple[common.Reproduction, ...] = (MOONS_DEPTH, MOONS_PENALTY, MOONS_SN)
