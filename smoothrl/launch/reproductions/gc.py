"""Geometric Complexity (thesis Chapter 8, Figures 8.2–8.7; settings of Appendix F.1), as CPU-scale proxies.

GC = (1/|D|) Σ_{x∈D} ‖df(x)/dx‖²_F on the logits f (Definition 8.2.1, Eq 8.1), as every supervised run records it
(`gc` in its `eval` records, `smoothness.geometric_complexity`). Four reproductions:

- `gc-depth` (Figure 8.2): GC at initialisation falls as ReLU MLPs of 500 units get deeper (1 to 8 hidden layers),
  with the standard (truncated normal, 1/sqrt(fan_in)) and Glorot initialisations; GC on 100 digits.
- `gc-training` (Figure 8.3): an MLP of three layers of 300 units fits 10 points of the 1-D regression by gradient
  descent (lr 0.02): GC grows during training, yet the fit stays simple: its mean squared slope over the data's range
  stays close to the least any function through the points can have (that of their piecewise-linear interpolant).
- `gc-regularisers` (Figure 8.4): L2, gradient-norm, spectral and Jacobian regularisation each lower the final GC
  against no regularisation at equal steps of minibatch SGD, GC falling as the strength grows.
- `gc-rate-batch` (Figures 8.6, 8.7): larger learning rates (one vmapped program of learning rates × seeds) and
  smaller batches (at a fixed learning rate) give lower GC at equal steps; test accuracies are reported beside.

The thesis trains a ResNet-18 on CIFAR-10 for Figures 8.4–8.7; here a ReLU MLP (100, 100) on the 8×8 digits
(1347 training, 450 test examples), plain SGD, 3 seeds. Every number is read back from the run directories: GC,
losses and accuracies from `metrics.jsonl`, the fits of `gc-training` from the final parameters in `final/`, rebuilt
on the model of each run's own config.
"""

from __future__ import annotations

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

INITIALISERS = ('standard', 'glorot')
# The regularisers of Figure 8.4, each with its config field and three strengths a decade apart.
REGULARISERS: dict[str, tuple[str, tuple[float, ...]]] = {
  'l2': ('regulariser.l2', (1e-4, 1e-3, 1e-2)),
  'grad_norm': ('regulariser.grad_norm', (0.01, 0.1, 1.0)),
  'spectral': ('regulariser.spectral', (1e-3, 1e-2, 1e-1)),
  'jacobian': ('regulariser.jacobian', (1e-3, 1e-2, 1e-1)),
}
REGULARISER_LABELS = {'l2': 'L2', 'grad_norm': 'gradient norm', 'spectral': 'spectral', 'jacobian': 'Jacobian (GC)'}
# Exact σ_l (an SVD per layer per step) is slow on CPU; power iteration from random vectors, 10 steps per step.
SPECTRAL_ITERATIONS = 10
GRID_POINTS = 2001  # midpoints of the uniform grid on which gc-training measures its fits' slopes


class Scale(NamedTuple):
  """How big a reproduction runs: the CPU proxy (`FULL`) or the smoke version (`QUICK`)."""

  seeds: tuple[int, ...]
  # gc-depth
  initialisers: tuple[str, ...]
  depths: tuple[int, ...]
  depth_width: int
  depth_points: int
  # gc-training
  fit_widths: tuple[int, ...]
  fit_steps: int
  fit_log_period: int
  # gc-regularisers and gc-rate-batch
  widths: tuple[int, ...]
  steps: int
  log_period: int
  regularisers: tuple[str, ...]
  strengths: int  # how many of each regulariser's strengths are run (the first ones)
  learning_rates: tuple[float, ...]
  batch_sizes: tuple[int, ...]  # 0: the full batch
  learning_rate: float
  batch_size: int


FULL = Scale(
  seeds=(0, 1, 2),
  initialisers=INITIALISERS,
  depths=tuple(range(1, 9)),
  depth_width=500,
  depth_points=100,
  fit_widths=(300, 300, 300),
  fit_steps=20_000,
  fit_log_period=500,
  widths=(100, 100),
  steps=2000,
  log_period=100,
  regularisers=tuple(REGULARISERS),
  strengths=3,
  learning_rates=(0.02, 0.05, 0.1, 0.2),
  batch_sizes=(16, 64, 256, 0),
  learning_rate=0.02,
  batch_size=64,
)
# The smoke version: one compiled program per reproduction where it can (two for gc-regularisers: none and L2).
QUICK = Scale(
  seeds=(0, 1),
  initialisers=('standard',),
  depths=(1,),
  depth_width=16,
  depth_points=20,
  fit_widths=(16,),
  fit_steps=20,
  fit_log_period=10,
  widths=(16,),
  steps=20,
  log_period=10,
  regularisers=('l2',),
  strengths=1,
  learning_rates=(0.05, 0.2),
  batch_sizes=(64,),
  learning_rate=0.05,
  batch_size=64,
)


def _scale(quick: bool) -> Scale:
  return QUICK if quick else FULL


def _config(out: Path, name: str, quick: bool, **fields: Any) -> supervised.FitConfig:
  """A run `out/runs/<name>` (`quick-<name>` for the smoke version, so the two never share a directory)."""
  return common.fit_config(out, f'quick-{name}' if quick else name, checkpoint_period=0, **fields)


# ----------------------------------------------------------------------------
# Numbers.
# ----------------------------------------------------------------------------


def strictly_decreasing(values: Sequence[float]) -> bool:
  """Whether every value is below the one before it (True for fewer than two values)."""
  return all(b < a for a, b in zip(values, values[1:]))


def interpolant_energy(x: Any, y: Any) -> float:
  """(1/(b − a)) ∫_a^b s′(x)² dx for s the piecewise-linear interpolant of the points (x_i, y_i), [a, b] their range:
  Σ_i (Δy_i)²/Δx_i / (b − a). It is the least mean squared slope over [a, b] of any function through the points
  (on each interval the straight line minimises ∫ f′² given the end values), the 1-D GC of the simplest fit.

  Raises:
    ValueError: fewer than two points, shapes that differ, or two points with the same x.
  """
  x, y = np.asarray(x, np.float64).reshape(-1), np.asarray(y, np.float64).reshape(-1)
  if x.shape != y.shape or x.size < 2:
    raise ValueError(f'need at least two points with one y each, got x of shape {x.shape} and y of shape {y.shape}')
  order = np.argsort(x)
  dx, dy = np.diff(x[order]), np.diff(y[order])
  if np.any(dx <= 0):
    raise ValueError('the points must have distinct x: the interpolant of two values at one x has no slope')
  return float(np.sum(dy**2 / dx) / (x[order][-1] - x[order][0]))


def grid(low: float, high: float, points: int = GRID_POINTS) -> np.ndarray:
  """The midpoints of `points` equal cells of [low, high], shape (points, 1): the mean of g over them is the midpoint
  rule for (1/(high − low)) ∫ g."""
  if not high > low or points < 1:
    raise ValueError(f'need low < high and points >= 1, got [{low}, {high}] and {points}')
  return (low + (np.arange(points) + 0.5) * (high - low) / points).reshape(-1, 1).astype(np.float32)


def _stats(values: Sequence[float]) -> dict[str, Any]:
  values = [float(v) for v in values]
  return {'mean': float(np.mean(values)), 'std': float(np.std(values)), 'seeds': values}


def first_at_or_below(records: Sequence[Mapping[str, Any]], field: str, level: float) -> Mapping[str, Any] | None:
  """The first record (in the given order) whose `field` is at most `level`, or None."""
  return next((r for r in records if r[field] <= level), None)


def _record(config: supervised.FitConfig, step: int) -> dict[str, Any]:
  """Run `config`'s `eval` record at `step`, read back from its directory."""
  for r in common.evals(config):
    if r['step'] == step:
      return r
  raise ValueError(f'{config.out} has no eval record at step {step}')


def _mean_series(configs: Sequence[supervised.FitConfig], field: str) -> tuple[list[int], list[float]]:
  """(steps, the seed-mean of `field` at each step) over runs that logged the same steps."""
  curves = [common.series(c, field) for c in configs]
  steps = curves[0][0]
  if any(s != steps for s, _ in curves):
    raise ValueError(f'the runs {[c.out for c in configs]} logged different steps')
  return steps, [float(v) for v in np.mean([v for _, v in curves], axis=0)]


def _finals(configs: Sequence[supervised.FitConfig], fields: Sequence[str]) -> dict[str, Any]:
  return {f: _stats([common.final(c, f) for c in configs]) for f in fields}


# ----------------------------------------------------------------------------
# gc-depth (Figure 8.2).
# ----------------------------------------------------------------------------


def _depth_configs(out: Path, quick: bool) -> dict[str, dict[int, list[supervised.FitConfig]]]:
  s = _scale(quick)
  fields = {
    'steps': 1,
    'log_period': 1,
    'data.name': 'digits',
    'data.num_train': s.depth_points,
    'metrics.gc_points': s.depth_points,
  }
  return {
    init: {
      depth: [
        _config(
          out,
          f'{init}-depth{depth}-seed{seed}',
          quick,
          seed=seed,
          **fields,
          **{'model.widths': (s.depth_width,) * depth, 'model.initialiser': init},
        )
        for seed in s.seeds
      ]
      for depth in s.depths
    }
    for init in s.initialisers
  }


def _depth_figure(out: Path, numbers: Mapping[str, Any]) -> None:
  from matplotlib.figure import Figure

  fig = Figure(figsize=(5.0, 3.6))
  ax = fig.subplots()
  fig.subplots_adjust(left=0.15, right=0.97, bottom=0.14, top=0.88)
  depths = numbers['depths']
  for init, marker in zip(numbers['initialisers'], 'os'):
    gc = numbers['initialisers'][init]
    ax.errorbar(depths, gc['mean'], yerr=gc['std'], marker=marker, capsize=3, label=f'{init} initialisation')
  ax.set_yscale('log')
  ax.set_xlabel('hidden layers')
  ax.set_ylabel('GC at initialisation')
  ax.legend(fontsize=8)
  ax.set_title(
    f'GC at initialisation falls with depth (Figure 8.2; MLP width {numbers["width"]}, CPU proxy)', fontsize=8
  )
  common.save(fig, out)


def run_depth(out: Path | str, quick: bool = False) -> dict[str, Any]:
  """Figure 8.2: the step-0 GC of ReLU MLPs of depth 1..8 under each initialiser, seeds as one program per depth."""
  out, s = Path(out), _scale(quick)
  configs = _depth_configs(out, quick)
  common.train([c for by_depth in configs.values() for cs in by_depth.values() for c in cs])
  inits = {}
  for init, by_depth in configs.items():
    per_depth = [_stats([_record(c, 0)['gc'] for c in by_depth[d]]) for d in s.depths]
    means = [p['mean'] for p in per_depth]
    inits[init] = {
      'mean': means,
      'std': [p['std'] for p in per_depth],
      'seeds': [p['seeds'] for p in per_depth],
      'decreasing': strictly_decreasing(means),
      'first_over_last': means[0] / means[-1],
    }
  numbers = {
    'quick': quick,
    'depths': list(s.depths),
    'width': s.depth_width,
    'gc_points': s.depth_points,
    'initialisers': inits,
    'summary': {f'decreasing_{init}': inits[init]['decreasing'] for init in s.initialisers},
  }
  _depth_figure(out, numbers)
  return common.write_result(out, GC_DEPTH, numbers)


# ----------------------------------------------------------------------------
# gc-training (Figure 8.3).
# ----------------------------------------------------------------------------


def _training_configs(out: Path, quick: bool) -> list[supervised.FitConfig]:
  s = _scale(quick)
  fields = {
    'steps': s.fit_steps,
    'log_period': s.fit_log_period,
    'data.name': 'regression1d',
    'data.num_train': 10,
    'model.widths': s.fit_widths,
    'optimizer.learning_rate': 0.02,
  }
  return [_config(out, f'fit-seed{seed}', quick, seed=seed, **fields) for seed in s.seeds]


class Fitted(NamedTuple):
  """A finished regression run rebuilt from its directory."""

  config: supervised.FitConfig
  dataset: data.Dataset
  f: Any  # x (batch, 1) -> f(x) (batch, 1), the network with its final parameters


def load_fit(run_dir: str | Path) -> Fitted:
  """Rebuilds a finished supervised run (no SN, no batch norm: no model state) from `run_dir`: the model of its saved
  config with its final parameters.

  Raises:
    ConfigError: the run has no final parameters, or they do not fit the model of its config.
  """
  meta, leaves = checkpoint.load_model(run_dir)
  config = supervised.FitConfig.from_dict(meta['config'])
  dataset = data.load(config.data)
  model = models.make_model(config.model, dataset.x_train.shape[1:], dataset.num_outputs)
  x = jnp.asarray(dataset.x_train[:1])
  template, state = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
  params = checkpoint.restore(leaves, template, run_dir)
  if jax.tree.leaves(state):
    raise ValueError(f'{run_dir}: a model with state (SN or batch norm) cannot be rebuilt from its final parameters')
  return Fitted(config, dataset, lambda xb: model.apply(params, {}, xb, False)[0])


def _target(x: jax.Array) -> jax.Array:
  """sin(5x) − sin(10x), the noiseless target of 'regression1d' (`data.regression_function`), in jax."""
  return jnp.sin(5 * x) - jnp.sin(10 * x)


def _fit_numbers(fitted: Fitted) -> dict[str, float]:
  """The fit's mean squared slope over the training points' range, against the interpolant's and the target's."""
  x, y = fitted.dataset.x_train[:, 0], fitted.dataset.y_train[:, 0]
  points = grid(float(x.min()), float(x.max()))
  fit = float(smoothness.geometric_complexity(fitted.f, points))
  least = interpolant_energy(x, y)
  target = float(smoothness.geometric_complexity(_target, points))
  return {
    'fit_slope_energy': fit,
    'interpolant_slope_energy': least,
    'target_slope_energy': target,
    'energy_ratio': fit / least,
    'target_energy_ratio': target / least,
    'rebuilt_gc': float(smoothness.geometric_complexity(fitted.f, jnp.asarray(fitted.dataset.x_train))),
  }


def _training_figure(out: Path, configs: Sequence[supervised.FitConfig], fits: Sequence[Fitted]) -> None:
  from matplotlib.figure import Figure

  fig = Figure(figsize=(10.0, 3.6))
  gc_ax, loss_ax, fit_ax = fig.subplots(1, 3)
  fig.subplots_adjust(left=0.06, right=0.98, bottom=0.14, top=0.84, wspace=0.3)
  for c in configs:
    steps, gc = common.series(c, 'gc')
    gc_ax.plot(steps, gc, label=f'seed {c.seed}')
    steps, loss = common.series(c, 'train_loss')
    loss_ax.plot(steps, loss, label=f'seed {c.seed}')
  gc_ax.set_xlabel('step')
  gc_ax.set_ylabel('GC on the 10 training points')
  gc_ax.legend(fontsize=7)
  loss_ax.set_yscale('log')
  loss_ax.set_xlabel('step')
  loss_ax.set_ylabel('train loss')
  xs = grid(-1.0, 1.0, 401)
  fit_ax.plot(xs[:, 0], np.asarray(_target(jnp.asarray(xs)))[:, 0], 'k--', lw=1, label='target')
  for fitted in fits:
    fit_ax.plot(xs[:, 0], np.asarray(fitted.f(jnp.asarray(xs)))[:, 0], lw=1, label=f'fit, seed {fitted.config.seed}')
  d = fits[0].dataset
  fit_ax.scatter(d.x_train[:, 0], d.y_train[:, 0], c='k', s=16, zorder=3, label='training points')
  fit_ax.set_xlabel('x')
  fit_ax.legend(fontsize=7)
  fig.suptitle(
    'GC grows in training while the fit of 10 points stays simple (Figure 8.3; MLP 300-300-300, GD lr 0.02, CPU proxy)',
    fontsize=9,
  )
  common.save(fig, out)


def run_training(out: Path | str, quick: bool = False) -> dict[str, Any]:
  """Figure 8.3: GC of the MLP fitting 10 points at the start, middle and end of training, and the fits' slopes."""
  out, s = Path(out), _scale(quick)
  configs = _training_configs(out, quick)
  common.train(configs)
  marks = {'start': 0, 'middle': s.fit_steps // 2, 'end': s.fit_steps}
  at = {
    name: {f: _stats([_record(c, step)[f] for c in configs]) for f in ('gc', 'train_loss')}
    for name, step in marks.items()
  }
  fits = [load_fit(c.out) for c in configs]
  seeds = [
    {'seed': c.seed, **{f'gc_{m}': _record(c, step)['gc'] for m, step in marks.items()}, **_fit_numbers(fitted)}
    for c, fitted in zip(configs, fits)
  ]
  steps, gc = _mean_series(configs, 'gc')
  gc_means = [at[m]['gc']['mean'] for m in marks]
  numbers = {
    'quick': quick,
    'marks': marks,
    'at': at,
    'final': _finals(configs, ('train_loss', 'test_loss')),
    'curve': {'steps': steps, 'gc_mean': gc, 'train_loss_mean': _mean_series(configs, 'train_loss')[1]},
    'seeds': seeds,
    'summary': {
      'gc_grows': strictly_decreasing(gc_means[::-1]),
      'gc_start_middle_end': gc_means,
      'train_loss_start_end': [at['start']['train_loss']['mean'], at['end']['train_loss']['mean']],
      'max_energy_ratio': max(r['energy_ratio'] for r in seeds),
      'target_energy_ratio': seeds[0]['target_energy_ratio'],
    },
  }
  _training_figure(out, configs, fits)
  return common.write_result(out, GC_TRAINING, numbers)


# ----------------------------------------------------------------------------
# Digits runs: gc-regularisers (Figure 8.4) and gc-rate-batch (Figures 8.6, 8.7).
# ----------------------------------------------------------------------------


def _digits_fields(scale: Scale, learning_rate: float, batch_size: int) -> dict[str, Any]:
  return {
    'steps': scale.steps,
    'log_period': scale.log_period,
    'batch_size': batch_size,
    'data.name': 'digits',
    'model.widths': scale.widths,
    'optimizer.name': 'sgd',
    'optimizer.learning_rate': learning_rate,
  }


def _regulariser_configs(out: Path, quick: bool) -> dict[str, dict[float, list[supervised.FitConfig]]]:
  """{'none': {0.0: runs}, regulariser: {strength: runs}}, one run per seed."""
  s = _scale(quick)
  base = _digits_fields(s, s.learning_rate, s.batch_size)
  seeds = lambda name, extra: [
    _config(out, f'{name}-seed{seed}', quick, seed=seed, **base, **extra) for seed in s.seeds
  ]
  configs = {'none': {0.0: seeds('none', {})}}
  for name in s.regularisers:
    field, strengths = REGULARISERS[name]
    extra = {'regulariser.spectral_iterations': SPECTRAL_ITERATIONS} if name == 'spectral' else {}
    configs[name] = {z: seeds(f'{name}-{z:g}', {field: z, **extra}) for z in strengths[: s.strengths]}
  return configs


FIELD_LABELS = {'gc': 'GC (mean of seeds)', 'test_accuracy': 'test accuracy (mean of seeds)'}


def _curves_figure(
  out: Path,
  panels: Mapping[str, Mapping[str, Sequence[supervised.FitConfig]]],
  title: str,
  fields: Sequence[str] = ('gc',),
) -> None:
  """A column per entry of `panels` and a row per field: the seed-mean field over steps of each labelled group."""
  from matplotlib.figure import Figure

  cols, rows = len(panels), len(fields)
  width, height = 3.6 * cols, 2.9 * rows + 0.5
  fig = Figure(figsize=(width, height))
  axes = fig.subplots(rows, cols, squeeze=False)
  fig.subplots_adjust(
    left=0.75 / width, right=1 - 0.15 / width, bottom=0.5 / height, top=1 - 0.55 / height, wspace=0.35, hspace=0.4
  )
  for col, (panel, groups) in enumerate(panels.items()):
    for row, field in enumerate(fields):
      ax = axes[row, col]
      for label, configs in groups.items():
        steps, values = _mean_series(configs, field)
        ax.plot(steps, values, label=label)
      ax.set_ylabel(FIELD_LABELS.get(field, field), fontsize=8)
      if row == 0:
        ax.set_title(panel, fontsize=9)
        ax.legend(fontsize=7)
      if row == rows - 1:
        ax.set_xlabel('step')
  fig.suptitle(title, fontsize=9)
  common.save(fig, out)


def run_regularisers(out: Path | str, quick: bool = False) -> dict[str, Any]:
  """Figure 8.4: the final GC of each regulariser and strength against no regularisation, at equal SGD steps."""
  out = Path(out)
  configs = _regulariser_configs(out, quick)
  common.train([c for by_z in configs.values() for cs in by_z.values() for c in cs])
  fields = ('gc', 'train_accuracy', 'test_accuracy', 'train_loss')
  none = _finals(configs['none'][0.0], fields)
  regs = {}
  for name, by_z in configs.items():
    if name == 'none':
      continue
    finals = [_finals(cs, fields) for cs in by_z.values()]
    gc = [f['gc']['mean'] for f in finals]
    regs[name] = {
      'field': REGULARISERS[name][0],
      'strengths': list(by_z),
      **{f: [x[f]['mean'] for x in finals] for f in fields},
      'gc_seeds': [x['gc']['seeds'] for x in finals],
      'below_none': [g < none['gc']['mean'] for g in gc],
      'decreasing': strictly_decreasing(gc),
    }
  numbers = {
    'quick': quick,
    'none': none,
    'regularisers': regs,
    'summary': {
      'all_below_none': all(all(r['below_none']) for r in regs.values()),
      'all_decreasing': all(r['decreasing'] for r in regs.values()),
      'gc_none': none['gc']['mean'],
      **{f'gc_{name}': r['gc'] for name, r in regs.items()},
    },
  }
  panels = {
    REGULARISER_LABELS[name]: {
      'none': configs['none'][0.0],
      **{f'{z:g}': cs for z, cs in configs[name].items()},
    }
    for name in regs
  }
  _curves_figure(out, panels, 'Explicit regularisers lower GC (Figure 8.4; digits MLP, SGD, CPU proxy)')
  return common.write_result(out, GC_REGULARISERS, numbers)


def _rate_batch_configs(
  out: Path, quick: bool
) -> tuple[dict[float, list[supervised.FitConfig]], dict[int, list[supervised.FitConfig]]]:
  """The learning-rate sweep (at the scale's batch size) and the batch-size sweep (at its learning rate); the run
  they share is one directory."""
  s = _scale(quick)
  runs = lambda lr, b: [
    _config(out, f'lr{lr:g}-batch{b or "full"}-seed{seed}', quick, seed=seed, **_digits_fields(s, lr, b))
    for seed in s.seeds
  ]
  return {lr: runs(lr, s.batch_size) for lr in s.learning_rates}, {b: runs(s.learning_rate, b) for b in s.batch_sizes}


def _sweep(groups: Mapping[Any, Sequence[supervised.FitConfig]]) -> dict[str, Any]:
  fields = ('gc', 'train_accuracy', 'test_accuracy', 'train_loss')
  finals = [_finals(cs, fields) for cs in groups.values()]
  return {
    'values': list(groups),
    **{f: [x[f]['mean'] for x in finals] for f in fields},
    'gc_seeds': [x['gc']['seeds'] for x in finals],
    'test_accuracy_seeds': [x['test_accuracy']['seeds'] for x in finals],
  }


def run_rate_batch(out: Path | str, quick: bool = False) -> dict[str, Any]:
  """Figures 8.6 and 8.7: final GC and test accuracy against the learning rate and against the batch size."""
  out, s = Path(out), _scale(quick)
  by_lr, by_batch = _rate_batch_configs(out, quick)
  unique = {c.out: c for cs in [*by_lr.values(), *by_batch.values()] for c in cs}
  common.train(list(unique.values()))
  lr = {'batch_size': s.batch_size, **_sweep(by_lr)}
  lr['gc_decreasing'] = strictly_decreasing(lr['gc'])
  lr['test_accuracy_rises'] = lr['test_accuracy'][-1] > lr['test_accuracy'][0]
  # A diagnostic beside the claim: equal steps take a larger rate further, so each run is also read at its first
  # record with a train loss at or below the smallest rate's mean final train loss (its final record if none is).
  level = lr['train_loss'][0]
  matched = [
    [first_at_or_below(common.evals(c), 'train_loss', level) or common.evals(c)[-1] for c in cs]
    for cs in by_lr.values()
  ]
  lr['at_matched_train_loss'] = {
    'train_loss': level,
    'gc': [float(np.mean([r['gc'] for r in rs])) for rs in matched],
    'steps': [[r['step'] for r in rs] for rs in matched],
  }
  n = data.load(by_batch[s.batch_sizes[0]][0].data).x_train.shape[0]
  batch = {'learning_rate': s.learning_rate, 'examples': [b or n for b in s.batch_sizes], **_sweep(by_batch)}
  # Smaller batches, lower GC: GC rises with the batch size (the sweep runs from small to full).
  batch['gc_rising'] = strictly_decreasing(batch['gc'][::-1])
  batch['test_accuracy_falls'] = batch['test_accuracy'][0] > batch['test_accuracy'][-1]
  numbers = {
    'quick': quick,
    'learning_rate': lr,
    'batch_size': batch,
    'summary': {
      'gc_falls_with_learning_rate': lr['gc_decreasing'],
      'gc_rises_with_batch_size': batch['gc_rising'],
      'gc_by_learning_rate': lr['gc'],
      'gc_by_batch_size': batch['gc'],
      'test_accuracy_by_learning_rate': lr['test_accuracy'],
      'test_accuracy_by_batch_size': batch['test_accuracy'],
    },
  }
  panels = {
    f'learning rate (batch {s.batch_size})': {f'lr {v:g}': cs for v, cs in by_lr.items()},
    f'batch size (lr {s.learning_rate:g})': {f'batch {b or "full"}': cs for b, cs in by_batch.items()},
  }
  title = 'Learning rate, batch size and GC (Figures 8.6, 8.7; digits MLP, SGD, CPU proxy)'
  _curves_figure(out, panels, title, ('gc', 'test_accuracy'))
  return common.write_result(out, GC_RATE_BATCH, numbers)


# ----------------------------------------------------------------------------
# The reproductions.
# ----------------------------------------------------------------------------

_DIGITS_SETTINGS = (
  'digits 8x8 (1347 training, 450 test examples, pixels / 16), ReLU MLP (100, 100) with the standard initialisation, '
  'softmax cross-entropy, plain SGD for 2000 steps, GC on the first 256 training examples, seeds 0, 1, 2; '
  'a CPU-scale proxy of the thesis ResNet-18 on CIFAR-10'
)

GC_DEPTH = common.Reproduction(
  name='gc-depth',
  figure='Figure 8.2',
  claim='GC at initialisation decreases as the number of layers of an MLP increases, with the standard and the '
  'Glorot initialisation',
  settings='ReLU MLPs of 1 to 8 hidden layers of 500 units, standard (truncated normal, std 1/sqrt(fan_in)) and '
  'Glorot (uniform) initialisation, zero biases; GC of the logits on 100 digits (8x8, pixels / 16) at step 0; seeds '
  '0, 1, 2; a CPU-scale proxy',
  run=run_depth,
)
GC_TRAINING = common.Reproduction(
  name='gc-training',
  figure='Figure 8.3',
  claim='the GC of a large MLP fitting 10 points in 1-D grows during training, while the learned function stays '
  'simple and fits the data',
  settings='regression1d (y = sin(5x) - sin(10x) + 0.1 noise, x ~ U[-1, 1]), 10 training points; ReLU MLP '
  '(300, 300, 300), squared error, full-batch gradient descent with lr 0.02 for 20000 steps; GC on the 10 points; '
  "simplicity: the fit's mean squared slope over the points' range (a grid of 2001 midpoints) over that of the "
  'piecewise-linear interpolant, the least of any function through the points; seeds 0, 1, 2; a CPU-scale proxy',
  run=run_training,
)
GC_REGULARISERS = common.Reproduction(
  name='gc-regularisers',
  figure='Figure 8.4',
  claim='L2, gradient-norm, spectral and Jacobian regularisation each lower GC against no regularisation at equal '
  'steps of plain SGD, and GC decreases as the regularisation strength increases',
  settings=f'{_DIGITS_SETTINGS}; batch 64, lr 0.02 (Appendix F.1); L2 z*|theta|^2 with z in 1e-4, 1e-3, 1e-2; '
  'gradient norm z*|grad E|^2 with z in 0.01, 0.1, 1; spectral z*sum_l sigma_l^2 with z in 1e-3, 1e-2, 1e-1 (sigma by '
  f'{SPECTRAL_ITERATIONS} power-iteration steps from random vectors); Jacobian z*GC(batch) with z in 1e-3, 1e-2, 1e-1',
  run=run_regularisers,
)
GC_RATE_BATCH = common.Reproduction(
  name='gc-rate-batch',
  figure='Figures 8.6, 8.7',
  claim='at equal steps, larger learning rates give lower GC (and higher test accuracy), and smaller batches give '
  'lower GC (and higher test accuracy) at a fixed learning rate',
  settings=f'{_DIGITS_SETTINGS}; learning rates 0.02, 0.05, 0.1, 0.2 at batch 64 (one vmapped program of 12 runs); '
  'batch sizes 16, 64, 256 and the full batch (1347) at lr 0.02 (Appendix F.1)',
  run=run_rate_batch,
)

REPRODUCTIONS: tuple[common.Reproduction, ...] = (GC_DEPTH, GC_TRAINING, GC_REGULARISERS, GC_RATE_BATCH)
