"""Discretisation drift and drift-adjusted learning rates (thesis Section 3.7), as small-scale CPU proxies.

`drift` (Figures 3.21, 3.22): a learning-rate sweep of gradient descent on the 8x8 digits with an ELU MLP of 4 hidden
layers of 100 units (the thesis: MNIST). Every evaluation measures the per-iteration drift of the next step,
‖θ_NGF(h; θ) − (θ − h g)‖ (the negative gradient flow integrated by Euler sub-steps), beside ‖Hg‖ and the estimate
(h²/2)‖Hg‖ of Theorem 3.7.1; the reproduction draws both during training (Figure 3.21) and, per learning rate, the
Pearson correlation over training of the measured drift with ‖Hg‖, ‖Hg‖/‖g‖ and ‖g‖ (Figure 3.22).

`dal` (Figures 3.23-3.26): full-batch training on the digits with an ELU MLP (2 x 100), 3 seeds, with a fixed
learning-rate sweep (one vmapped program), DAL (Eq 3.20, p = 1) and DAL-p (Eq 3.21) for p in a sweep; the
figure shows the loss and test-accuracy curves, the DAL rate and update norm (Figure 3.24) and the p sweep.

Both read every number back from the run directories (`metrics.jsonl`).

    smoothrl reproduce drift --out runs/repro/drift
    smoothrl reproduce dal --out runs/repro/dal
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from smoothrl.launch.reproductions import common
from smoothrl.launch.run import supervised

# What every run of this module shares: Appendix A.3's ELU networks, cross-entropy, full batch, no GC.
_BASE: dict[str, Any] = {
  'data.name': 'digits',
  'model.activation': 'elu',
  'batch_size': 0,
  'checkpoint_period': 0,
  'metrics.gc': False,
}


# ----------------------------------------------------------------------------
# Numbers from curves.
# ----------------------------------------------------------------------------


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
  """The Pearson correlation of `x` and `y`; NaN when either is constant.

  Raises:
    ValueError: the sequences differ in length, have fewer than 2 points, or hold a non-finite value.
  """
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  if x.shape != y.shape or x.ndim != 1:
    raise ValueError(f'pearson needs two 1-D sequences of one length, got shapes {x.shape} and {y.shape}')
  if x.size < 2:
    raise ValueError(f'pearson needs at least 2 points, got {x.size}')
  if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
    raise ValueError('pearson needs finite values')
  dx, dy = x - x.mean(), y - y.mean()
  denominator = math.sqrt(float(np.sum(dx * dx)) * float(np.sum(dy * dy)))
  return float(np.sum(dx * dy)) / denominator if denominator > 0 else math.nan


def instability(losses: Sequence[float]) -> float:
  """How much a loss curve climbs: Σ_k max(0, L_{k+1} − L_k) / L_0, the total rise between consecutive
  evaluations relative to the initial loss (0 for a curve that never rises).

  Raises:
    ValueError: no points, a non-positive initial loss, or a non-finite value.
  """
  values = np.asarray(losses, np.float64)
  if values.ndim != 1 or values.size == 0:
    raise ValueError(f'instability needs a non-empty 1-D loss curve, got shape {values.shape}')
  if not np.all(np.isfinite(values)):
    raise ValueError('instability needs finite losses')
  if not values[0] > 0:
    raise ValueError(f'instability needs a positive initial loss, got {values[0]}')
  return float(np.sum(np.maximum(np.diff(values), 0.0)) / values[0])


def _key(value: float) -> str:
  """A sweep value as a JSON key: '0.01', '0.5'."""
  return f'{value:g}'


# ----------------------------------------------------------------------------
# Figures 3.21 and 3.22: ‖Hg‖ against the measured per-iteration drift.
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DriftSettings:
  """The drift reproduction's sweep.

  Attributes:
    learning_rates: the gradient-descent rates, trained as one vmapped program.
    shown_rate: the rate whose curves Figure 3.21's panel shows (one of `learning_rates`).
    widths: the MLP's hidden widths.
    steps, log_period: training steps and the steps between evaluations (each measures the drift).
    substeps: Euler steps of the negative gradient flow over one learning rate's time h.
    num_train: training examples kept (0: the whole training split).
    seed: the runs' seed.
  """

  learning_rates: tuple[float, ...]
  shown_rate: float
  widths: tuple[int, ...]
  steps: int
  log_period: int
  substeps: int
  num_train: int = 0
  seed: int = 0


DRIFT_FULL = DriftSettings(
  learning_rates=tuple(round(0.01 * i, 2) for i in range(1, 11)),
  shown_rate=0.05,
  widths=(100, 100, 100, 100),
  steps=1000,
  log_period=25,
  substeps=20,
)
DRIFT_QUICK = DriftSettings(
  learning_rates=(0.05, 0.1), shown_rate=0.05, widths=(16,), steps=10, log_period=5, substeps=4, num_train=200
)


def drift_configs(out: Path | str, settings: DriftSettings) -> list[supervised.FitConfig]:
  """One gradient-descent run per learning rate, each measuring the NGF drift at every evaluation."""
  if settings.shown_rate not in settings.learning_rates:
    raise ValueError(f'shown_rate {settings.shown_rate} is not one of the learning rates {settings.learning_rates}')
  return [
    common.fit_config(
      out,
      f'lr{_key(lr)}',
      **_BASE,
      **{
        'seed': settings.seed,
        'steps': settings.steps,
        'log_period': settings.log_period,
        'data.num_train': settings.num_train,
        'model.widths': settings.widths,
        'optimizer.name': 'sgd',
        'optimizer.learning_rate': lr,
        'metrics.ngf_drift': True,
        'metrics.ngf_substeps': settings.substeps,
      },
    )
    for lr in settings.learning_rates
  ]


def drift_numbers(configs: Sequence[supervised.FitConfig]) -> dict[str, Any]:
  """Per learning rate, the correlations over training of the measured drift with ‖Hg‖, ‖Hg‖/‖g‖ and ‖g‖
  (Figure 3.22), and over the whole sweep the correlation of the measured drift with (h²/2)‖Hg‖."""
  per_rate: dict[str, dict[str, float]] = {}
  measured_all: list[float] = []
  estimate_all: list[float] = []
  for config in configs:
    records = common.evals(config)
    ngf = [r['ngf_drift'] for r in records]
    hg = [r['hg_norm'] for r in records]
    g = [r['grad_norm'] for r in records]
    per_rate[_key(config.optimizer.learning_rate)] = {
      'corr_hg_norm': pearson(ngf, hg),
      'corr_hg_over_grad_norm': pearson(ngf, [a / b for a, b in zip(hg, g)]),
      'corr_grad_norm': pearson(ngf, g),
      'ratio_measured_to_estimate': float(np.median([m / r['drift'] for m, r in zip(ngf, records)])),
      'mean_ngf_drift': float(np.mean(ngf)),
      'final_train_loss': float(records[-1]['train_loss']),
    }
    measured_all += ngf
    estimate_all += [r['drift'] for r in records]
  mean = lambda name: float(np.nanmean([v[name] for v in per_rate.values()]))
  minimum = lambda name: float(np.nanmin([v[name] for v in per_rate.values()]))
  return {
    'per_learning_rate': per_rate,
    'mean_corr_hg_norm': mean('corr_hg_norm'),
    'mean_corr_hg_over_grad_norm': mean('corr_hg_over_grad_norm'),
    'mean_corr_grad_norm': mean('corr_grad_norm'),
    'min_corr_hg_norm': minimum('corr_hg_norm'),
    'sweep_corr_estimate': pearson(measured_all, estimate_all),
    'sweep_log_corr_estimate': pearson(np.log(measured_all), np.log(estimate_all)),
  }


def _drift_figure(configs: Sequence[supervised.FitConfig], settings: DriftSettings, numbers: Mapping[str, Any]) -> Any:
  fig = Figure(figsize=(15, 4.2), layout='constrained')
  ax_curve, ax_corr, ax_scatter = fig.subplots(1, 3)
  shown = next(c for c in configs if c.optimizer.learning_rate == settings.shown_rate)
  steps, hg = common.series(shown, 'hg_norm')
  _, ngf = common.series(shown, 'ngf_drift')
  _, estimate = common.series(shown, 'drift')
  ax_curve.plot(steps, ngf, color='C0', label='per-iteration drift ‖θ_NGF(h) − θ_GD‖')
  ax_curve.plot(steps, estimate, color='C0', ls='--', label='(h²/2)‖Hg‖ (Theorem 3.7.1)')
  ax_curve.set_yscale('log')
  ax_curve.set_xlabel('step')
  ax_curve.set_ylabel('drift', color='C0')
  twin = ax_curve.twinx()
  twin.plot(steps, hg, color='C3', label='‖Hg‖')
  twin.set_yscale('log')
  twin.set_ylabel('‖Hg‖', color='C3')
  lines = ax_curve.get_lines() + twin.get_lines()
  ax_curve.legend(lines, [line.get_label() for line in lines], fontsize=8)
  ax_curve.set_title(f'(a) during training, h = {settings.shown_rate:g} (Fig 3.21)')
  rates = settings.learning_rates
  per_rate = numbers['per_learning_rate']
  for name, label in (
    ('corr_hg_norm', '‖Hg‖'),
    ('corr_hg_over_grad_norm', '‖Hg‖/‖g‖'),
    ('corr_grad_norm', '‖g‖'),
  ):
    ax_corr.plot(rates, [per_rate[_key(lr)][name] for lr in rates], marker='o', label=label)
  ax_corr.set_xlabel('learning rate h')
  ax_corr.set_ylabel('Pearson correlation with the drift')
  ax_corr.set_title('(b) correlation over training (Fig 3.22)')
  ax_corr.legend()
  for i, config in enumerate(configs):
    _, m = common.series(config, 'ngf_drift')
    _, e = common.series(config, 'drift')
    ax_scatter.scatter(e, m, s=8, color=f'C{i % 10}', label=f'h = {config.optimizer.learning_rate:g}')
  ax_scatter.set_xscale('log')
  ax_scatter.set_yscale('log')
  low, high = ax_scatter.get_xlim()
  ax_scatter.plot([low, high], [low, high], color='k', lw=0.8, label='y = x')
  ax_scatter.set_xlabel('(h²/2)‖Hg‖')
  ax_scatter.set_ylabel('measured per-iteration drift')
  ax_scatter.set_title(f'(c) the sweep (log corr {numbers["sweep_log_corr_estimate"]:.2f})')
  ax_scatter.legend(fontsize=6, ncol=2)
  fig.suptitle(f'Drift vs ‖Hg‖: digits, ELU MLP {settings.widths}, full-batch GD (small-scale proxy)')
  return fig


def run_drift(out: Path | str, quick: bool = False) -> dict[str, Any]:
  """Trains the drift sweep into `out/runs/`, draws `out/figure.png` and writes `out/result.json`."""
  out = Path(out)
  settings = DRIFT_QUICK if quick else DRIFT_FULL
  configs = drift_configs(out, settings)
  common.train(configs)
  numbers = drift_numbers(configs)
  return common.finish(out, DRIFT, _drift_figure(configs, settings, numbers), numbers, settings, quick)


DRIFT = common.Reproduction(
  name='drift',
  figure='Figures 3.21, 3.22',
  claim=(
    'The per-iteration drift ‖θ_NGF(h; θ) − (θ − hg)‖ follows ‖Hg‖ during training and is strongly correlated with '
    'it at every learning rate of the sweep (more than with ‖Hg‖/‖g‖ or ‖g‖ alone); Theorem 3.7.1 estimates it by '
    '(h²/2)‖Hg‖.'
  ),
  settings=(
    'Small-scale CPU proxy of the thesis MNIST experiment: the 8x8 digits (1347 train / 450 test), an ELU MLP of 4 '
    'hidden layers of 100 units, full-batch gradient descent for 1000 steps at learning rates 0.01, 0.02, ..., 0.1 '
    '(one vmapped program, seed 0); every 25 steps the drift of the next step against the negative gradient flow '
    'integrated by 20 Euler steps over time h (float32), and ‖g‖, ‖Hg‖ by a Hessian-vector product.'
  ),
  run=run_drift,
)


# ----------------------------------------------------------------------------
# Figures 3.23-3.26: DAL and DAL-p against a fixed learning-rate sweep.
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DALSettings:
  """The DAL reproduction's sweeps.

  Attributes:
    learning_rates: the fixed gradient-descent rates (one vmapped program with the seeds).
    powers: the p of the DAL-p sweep; p = 1 is DAL itself (its runs are reused), 0.5 is DAL-0.5.
    seeds: the seeds of every setting.
    widths: the MLP's hidden widths.
    steps, log_period: training steps and the steps between evaluations.
    num_train: training examples kept (0: the whole training split).
  """

  learning_rates: tuple[float, ...]
  powers: tuple[float, ...]
  seeds: tuple[int, ...]
  widths: tuple[int, ...]
  steps: int
  log_period: int
  num_train: int = 0


DAL_FULL = DALSettings(
  learning_rates=(0.01, 0.03, 0.1, 0.3, 1.0),
  powers=(0.25, 0.5, 0.75, 1.0),
  seeds=(0, 1, 2),
  widths=(100, 100),
  steps=500,
  log_period=20,
)
DAL_QUICK = DALSettings(
  learning_rates=(0.1, 1.0), powers=(0.5, 1.0), seeds=(0,), widths=(16,), steps=10, log_period=5, num_train=200
)


def _dal_config(out: Path, name: str, settings: DALSettings, seed: int, optimizer: Mapping[str, Any]) -> Any:
  fields = {
    'seed': seed,
    'steps': settings.steps,
    'log_period': settings.log_period,
    'data.num_train': settings.num_train,
    'model.widths': settings.widths,
    **{f'optimizer.{k}': v for k, v in optimizer.items()},
  }
  return common.fit_config(out, f'{name}/seed{seed}', **_BASE, **fields)


def dal_configs(out: Path | str, settings: DALSettings) -> dict[str, list[supervised.FitConfig]]:
  """The runs by setting: 'lr=<h>' (fixed rates), 'dal' (p = 1) and 'dal-p=<p>' (p < 1), each over the seeds."""
  if 1.0 not in settings.powers or 0.5 not in settings.powers:
    raise ValueError(f'powers must include 1 (DAL) and 0.5 (DAL-0.5), got {settings.powers}')
  if any(not p > 0 for p in settings.powers):
    raise ValueError(f'powers must be positive, got {settings.powers}')
  out = Path(out)
  runs: dict[str, list[supervised.FitConfig]] = {}
  for lr in settings.learning_rates:
    optimizer = {'name': 'sgd', 'learning_rate': lr}
    runs[f'lr={_key(lr)}'] = [_dal_config(out, f'lr{_key(lr)}', settings, s, optimizer) for s in settings.seeds]
  runs['dal'] = [_dal_config(out, 'dal', settings, s, {'name': 'dal'}) for s in settings.seeds]
  for p in settings.powers:
    if p != 1.0:
      optimizer = {'name': 'dal-p', 'p': p}
      runs[f'dal-p={_key(p)}'] = [_dal_config(out, f'dal-p{_key(p)}', settings, s, optimizer) for s in settings.seeds]
  return runs


def _setting_numbers(configs: Sequence[supervised.FitConfig]) -> dict[str, float]:
  """Means (and the spread of test accuracy) over the seeds of one setting, read from the run directories."""
  finals = [common.evals(c) for c in configs]
  test = [r[-1]['test_accuracy'] for r in finals]
  return {
    'test_accuracy': float(np.mean(test)),
    'test_accuracy_std': float(np.std(test)),
    'train_loss': float(np.mean([r[-1]['train_loss'] for r in finals])),
    'train_accuracy': float(np.mean([r[-1]['train_accuracy'] for r in finals])),
    'instability': float(np.mean([instability([x['train_loss'] for x in r]) for r in finals])),
    'mean_drift': float(np.mean([np.mean([x['drift'] for x in r[1:]]) for r in finals])),
    'mean_rate': float(np.mean([np.mean([x['rate'] for x in r[1:]]) for r in finals])),
  }


def dal_numbers(runs: Mapping[str, Sequence[supervised.FitConfig]], settings: DALSettings) -> dict[str, Any]:
  """Per setting, the final test accuracy, train loss and instability over the seeds; the best fixed rate; and
  whether each direction the thesis reports holds."""
  fixed = {_key(lr): _setting_numbers(runs[f'lr={_key(lr)}']) for lr in settings.learning_rates}
  dal = _setting_numbers(runs['dal'])
  powers = sorted(settings.powers)
  dal_p = {_key(p): dal if p == 1.0 else _setting_numbers(runs[f'dal-p={_key(p)}']) for p in powers}
  best = max(fixed, key=lambda k: fixed[k]['test_accuracy'])
  largest = _key(max(settings.learning_rates))
  accuracies = [dal_p[_key(p)]['test_accuracy'] for p in powers]
  smallest = dal_p[_key(powers[0])]
  direction = {
    # Fig 3.23: DAL trains without a sweep (ends below the median fixed rate's loss) and never climbs more than
    # the largest fixed rate.
    'dal_trains_without_sweep': dal['train_loss'] <= float(np.median([v['train_loss'] for v in fixed.values()])),
    'dal_as_stable_as_largest_rate': dal['instability'] <= fixed[largest]['instability'],
    # Fig 3.25: DAL-0.5 matches (within one percentage point) or beats the best fixed rate on test accuracy.
    'dal_half_matches_best_fixed': dal_p['0.5']['test_accuracy'] >= fixed[best]['test_accuracy'] - 0.01,
    # Fig 3.26: smaller p (more drift), higher test accuracy, at the cost of stability.
    'smaller_p_higher_test_accuracy': bool(
      pearson(powers, accuracies) < 0 and smallest['test_accuracy'] > dal['test_accuracy']
    ),
    'smaller_p_less_stable': smallest['instability'] > dal['instability'],
  }
  return {
    'fixed': fixed,
    'dal': dal,
    'dal_p': dal_p,
    'best_fixed_learning_rate': float(best),
    'best_fixed_test_accuracy': fixed[best]['test_accuracy'],
    'corr_p_test_accuracy': pearson(powers, accuracies),
    'direction': {k: bool(v) for k, v in direction.items()},
  }


def _mean_series(configs: Sequence[supervised.FitConfig], field: str) -> tuple[list[int], np.ndarray]:
  """A field's curve averaged over seeds (runs of one setting share their evaluation steps)."""
  curves = [common.series(c, field) for c in configs]
  steps = curves[0][0]
  return steps, np.mean([values for _, values in curves], axis=0)


def _dal_figure(
  runs: Mapping[str, Sequence[supervised.FitConfig]], settings: DALSettings, numbers: Mapping[str, Any]
) -> Any:
  fig = Figure(figsize=(16, 8), layout='constrained')
  (ax_loss, ax_test, ax_rate), (ax_update, ax_p, ax_pstab) = fig.subplots(2, 3)
  shown = [(f'h = {_key(lr)}', runs[f'lr={_key(lr)}'], '-') for lr in settings.learning_rates]
  dal_runs = [('DAL', runs['dal'], '--')] + [
    (f'DAL-{_key(p)}', runs[f'dal-p={_key(p)}'], '--') for p in sorted(settings.powers) if p != 1.0
  ]
  for i, (label, configs, ls) in enumerate(shown + dal_runs):
    steps, loss = _mean_series(configs, 'train_loss')
    ax_loss.plot(steps, loss, ls=ls, color=f'C{i % 10}', label=label)
    steps, test = _mean_series(configs, 'test_accuracy')
    ax_test.plot(steps, test, ls=ls, color=f'C{i % 10}', label=label)
    steps, rate = _mean_series(configs, 'rate')
    _, grad_norm = _mean_series(configs, 'grad_norm')
    ax_rate.plot(steps[1:], rate[1:], ls=ls, color=f'C{i % 10}', label=label)
    ax_update.plot(steps[1:], (rate * grad_norm)[1:], ls=ls, color=f'C{i % 10}', label=label)
  ax_loss.set_yscale('log')
  initial = max(line.get_ydata()[0] for line in ax_loss.get_lines())
  ax_loss.set_ylim(top=10 * initial)  # a run that diverges leaves through the top
  ax_loss.set(xlabel='step', ylabel='train loss', title='(a) training loss (Figs 3.23, 3.25)')
  ax_loss.legend(fontsize=7, ncol=2)
  ax_test.set(xlabel='step', ylabel='test accuracy', title='(b) test accuracy')
  ax_test.set_ylim(0.0, 1.0)
  ax_rate.set_yscale('log')
  ax_rate.set(xlabel='step', ylabel='learning rate h(θ)', title='(c) the rate (Fig 3.24a)')
  ax_update.set_yscale('log')
  ax_update.set(xlabel='step', ylabel='update norm h(θ)‖g‖', title='(d) the update norm (Fig 3.24b)')
  powers = sorted(settings.powers)
  dal_p = numbers['dal_p']
  accuracy = [dal_p[_key(p)]['test_accuracy'] for p in powers]
  spread = [dal_p[_key(p)]['test_accuracy_std'] for p in powers]
  ax_p.errorbar(powers, accuracy, yerr=spread, marker='o', capsize=3, label='DAL-p')
  ax_p.axhline(numbers['best_fixed_test_accuracy'], color='k', ls=':', label='best fixed rate')
  ax_p.set(xlabel='p', ylabel=f'final test accuracy ({len(settings.seeds)} seeds)', title='(e) DAL-p sweep (Fig 3.26)')
  ax_p.legend()
  ax_pstab.plot(powers, [dal_p[_key(p)]['instability'] for p in powers], marker='o', color='C3')
  ax_pstab.set_yscale('symlog', linthresh=1e-3)
  ax_pstab.set(xlabel='p', ylabel='Σ rises of the train loss / initial loss', title='(f) instability against p')
  fig.suptitle(
    f'DAL and DAL-p vs fixed rates: digits, ELU MLP {settings.widths}, full batch, {settings.steps} steps, '
    f'mean of {len(settings.seeds)} seeds (small-scale proxy)'
  )
  return fig


def run_dal(out: Path | str, quick: bool = False) -> dict[str, Any]:
  """Trains the fixed-rate, DAL and DAL-p runs into `out/runs/`, draws `out/figure.png`, writes `out/result.json`."""
  out = Path(out)
  settings = DAL_QUICK if quick else DAL_FULL
  runs = dal_configs(out, settings)
  common.train([c for configs in runs.values() for c in configs])
  numbers = dal_numbers(runs, settings)
  return common.finish(out, DAL, _dal_figure(runs, settings, numbers), numbers, settings, quick)


DAL = common.Reproduction(
  name='dal',
  figure='Figures 3.23, 3.24, 3.25, 3.26',
  claim=(
    'DAL (h = 2/‖Hĝ‖) trains stably without a learning-rate sweep; DAL-0.5 matches or beats the best fixed '
    'learning rate on test accuracy; in a DAL-p sweep smaller p (more drift) gives higher test accuracy at the '
    'cost of stability.'
  ),
  settings=(
    'Small-scale CPU proxy of the thesis CIFAR-10/ImageNet experiments: the 8x8 digits (1347 train / 450 test), an '
    'ELU MLP with 2 hidden layers of 100 units, cross-entropy, full-batch training for 500 steps, 3 seeds; fixed '
    'learning rates 0.01, 0.03, 0.1, 0.3, 1.0 (one vmapped program), DAL (p = 1) and DAL-p for p = 0.25, 0.5, '
    '0.75 (p = 1 is the DAL runs), rates capped at 5, exact Hessian-vector products; evaluations every 20 steps.'
  ),
  run=run_dal,
)

REPRODUCTIONS = (DRIFT, DAL)
