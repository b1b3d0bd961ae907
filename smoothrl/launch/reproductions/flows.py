"""The principal flow against gradient descent (thesis Sections 3.2-3.4, Appendix A.4): Figures 3.2/3.7, 3.3, 3.6,
3.8, 3.9, A.6 and A.7 as runs of the flow kind (`smoothrl.launch.run.flows`).

Each reproduction writes one run directory per learning rate under `OUT/runs/`, reads every number back from them
(`metrics.jsonl` for the errors, `trajectories.npz` for the paths) and draws `OUT/figure.png`:

- `pf-quadratic` (Figs 3.2, 3.7): E = θᵀAθ, A = diag(1, 0.01) (hλ_0 = 2h), h = 0.5, 0.9, 1.05 from (1, 1); the
  PF (complex for h > 0.5, its real part drawn) passes through every GD iterate, the NGF and the IGR flow do not.
  At h = 0.5, hλ_0 = 1 and the PF's field is infinite (erratum 5): that run uses the closed form.
- `pf-1d` (Figs 3.3, 3.6): ½(θ − 0.6)² at h = 1.2 from 0, and ½z² at h = 0.8, 1.5, 2.1 from 1: the real flows stop
  at the minimum, the complex PF oscillates (1 < h < 2) and diverges (h > 2) with GD, z(t) = (1 − h)^{t/h}z(0).
- `pf-banana` (Fig 3.8): the Rosenbrock function from (−1.2, 1), h = 0.0006, 0.0017, 0.005, NGF, IGR, PF and PF
  with the third-order non-principal term (Eq 3.11), by Euler steps (see below).
- `pf-cos` (Fig A.6): the printed piecewise cos function from θ_0 = −2, h = 0.5, 0.85 (the paper's Figure 30); the
  PF is real there (h|E''| < 1) and the loss is not holomorphic across its switch, so complex=false.
- `pf-mlp` (Fig 3.9): an MLP 2 → 10 → 1 (tanh) on 5 Gaussian points with Gaussian targets, mean squared error,
  h = 0.1, 0.2, 0.25: the global error ‖θ(nh) − θ_n‖ of NGF, IGR, third-order flow and PF.
- `pf-breast-cancer` (Fig A.7): an MLP 30 → 10 → 1 (tanh) on the breast-cancer training split, binary
  cross-entropy, h = 1.5 and 5, two GD steps: the global error of the IGR flow and the PF.

Integrators: diffrax (Tsit5, rtol 1e-9) for the quadratics, the 1-D losses and the cos function. Beyond hλ = 1 on a
non-quadratic loss θ turns complex and the eigenvalues of the (complex-symmetric) Hessian leave the real axis; one
that starts beyond 1/h then crosses it back and forth, and the principal branch of log(1 − hλ) jumps by 2πi there:
the field is discontinuous, an adaptive solver stalls (diffrax reached its step limit on the banana function at
h = 0.0017 and on the MLP at h = 0.2) and Euler chatters across the cut (the MLP's PF at h = 0.2 then missed GD by
more than the NGF). The runs use the flow kind's default `pf_branch='continued'` (`flows.alpha_pf_continued`: the
cut on Re hλ = 1 instead) and, on the networks and the banana function, the thesis' explicit Euler: dt = h/500 on
the MLPs, dt = 1e-5 on the banana function (Appendix A.3 used 5e-5), where diffrax still stalls at h = 0.0017.

    smoothrl reproduce pf-quadratic --out runs/repro/pf-quadratic
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
from smoothrl.launch.run import config as config_lib
from smoothrl.launch.run import flows as flow_runs
from smoothrl.launch.run.kind import TrainOptions

COLOURS = {'gd': 'k', 'ngf': 'C0', 'igr': 'C1', 'third': 'C2', 'pf': 'C3', 'pf+third': 'C4'}
NAMES = {'gd': 'GD', 'ngf': 'NGF', 'igr': 'IGR flow', 'third': 'third-order flow', 'pf': 'PF', 'pf+third': 'PF + third'}
EXACT = 1e-6  # "passes through every GD iterate": a global error below this
STATIONARY_COS = -1.5 * math.pi  # the first stationary point of Figure A.6's function left of 0 (E' = E'' = 0)


@dataclasses.dataclass(frozen=True)
class Settings:
  """One reproduction's runs.

  Attributes:
    rates: the learning rates, one run each.
    steps: GD iterations per run.
    flows: the flows of every run.
    method: the integrator ('diffrax', 'euler', 'closed_form'); `closed_form_rates` use the closed form whatever it.
    dt: the Euler step, or, when `dt_per_h`, the Euler step as a fraction of h.
    samples: path points per step.
    closed_form_rates: rates whose runs use the closed form (the PF's field is infinite at hλ = 1).
  """

  rates: tuple[float, ...]
  steps: int
  flows: tuple[str, ...]
  method: str = 'diffrax'
  dt: float = 5e-5
  dt_per_h: bool = False
  samples: int = 16
  closed_form_rates: tuple[float, ...] = ()


def _key(value: float) -> str:
  return f'{value:g}'


def flow_config(out: Path | str, name: str, **fields: Any) -> flow_runs.FlowConfig:
  """A `FlowConfig` for run `name` under `out/runs/`, with dotted `fields` set."""
  return config_lib.replace(flow_runs.FlowConfig(out=str(Path(out) / 'runs' / name)), **fields)


def configs_for(out: Path | str, prefix: str, settings: Settings, **fields: Any) -> list[flow_runs.FlowConfig]:
  """One run per rate of `settings` (named `<prefix>-h<rate>`), sharing `fields`."""
  configs = []
  for h in settings.rates:
    method = 'closed_form' if h in settings.closed_form_rates else settings.method
    dt = settings.dt * h if settings.dt_per_h else settings.dt
    configs.append(
      flow_config(
        out,
        f'{prefix}-h{_key(h)}',
        **{
          'h': h,
          'steps': settings.steps,
          'flows': settings.flows,
          'integrator.method': method,
          'integrator.dt': dt,
          'integrator.samples': settings.samples,
          **fields,
        },
      )
    )
  return configs


def train(configs: Sequence[flow_runs.FlowConfig]) -> list[dict[str, Any]]:
  """Validates and runs (or, when they finished, reads back) `configs`; stops with the first failure's reason."""
  for config in configs:
    flow_runs.validate(config)
  summaries = flow_runs.train(configs, TrainOptions(show_progress=False, resume=True))
  failed = [(c.out, s['error']) for c, s in zip(configs, summaries) if s.get('state') == 'failed']
  if failed:
    raise config_lib.TrainingError(f'{failed[0][0]} failed: {failed[0][1]}')
  return summaries


def errors(config: flow_runs.FlowConfig, flow: str, kind: str = 'global') -> np.ndarray:
  """A flow's global (n = 0..N) or per-iteration (n = 1..N) errors read from the run's `eval` records; a diverged
  flow's non-finite values are +inf."""
  records = common.evals(config)
  if kind == 'global':
    values = [r[f'global_error_{flow}'] for r in records]
  else:
    values = [r[f'per_iteration_error_{flow}'] for r in records[1:]]
  array = np.asarray([float(v) for v in values], np.float64)
  return np.where(np.isfinite(array), array, np.inf)


def _mean(values: np.ndarray) -> float:
  """The mean of errors, +inf when a flow diverged."""
  return float(np.mean(values)) if np.all(np.isfinite(values)) else math.inf


def _run_numbers(config: flow_runs.FlowConfig) -> dict[str, Any]:
  """The errors of one run: max/mean global and per-iteration error per flow, hλ_0 at θ_0 and its largest value
  along GD, the integrator."""
  records = common.evals(config)
  out: dict[str, Any] = {
    'method': config.integrator.method,
    'h_lambda_0': float(records[0]['h_lambda_0']),
    'max_h_lambda_0': float(max(r['h_lambda_0'] for r in records)),
  }
  for kind in ('global', 'per_iteration'):
    for flow in config.flows:
      e = errors(config, flow, kind)
      out.setdefault(f'max_{kind}_error', {})[flow] = float(np.max(e))
      out.setdefault(f'mean_{kind}_error', {})[flow] = _mean(e[1:] if kind == 'global' else e)
  return out


def _by_rate(configs: Sequence[flow_runs.FlowConfig]) -> dict[str, dict[str, Any]]:
  return {_key(c.h): _run_numbers(c) for c in configs}


def _error_axes(ax: Any, config: flow_runs.FlowConfig, flows: Sequence[str], kind: str = 'global') -> None:
  """A flow's error against n on a log scale (zeros and divergence drawn at the axis' ends)."""
  for flow in flows:
    e = errors(config, flow, kind)
    n = np.arange(len(e)) + (0 if kind == 'global' else 1)
    shown = np.clip(e, 1e-16, 1e6)
    if kind == 'global':
      n, shown = n[1:], shown[1:]
    label = NAMES[flow] + (' (diverged)' if np.any(e > 1e6) else '')
    ax.plot(n, shown, marker='o', ms=3, color=COLOURS[flow], label=label)
  ax.set_yscale('log')
  ax.set_xlabel('iteration n')
  ax.set_ylabel('‖θ(nh) − θ_n‖' if kind == 'global' else '‖θ(h; θ_{n−1}) − θ_n‖')


# ----------------------------------------------------------------------------
# Figures 3.2 and 3.7: quadratics in two dimensions.
# ----------------------------------------------------------------------------

QUADRATIC_FULL = Settings(rates=(0.5, 0.9, 1.05), steps=10, flows=('ngf', 'igr', 'pf'), closed_form_rates=(0.5,))
QUADRATIC_QUICK = Settings(rates=(0.5, 0.9, 1.05), steps=4, flows=('ngf', 'igr', 'pf'), method='closed_form')


def quadratic_numbers(configs: Sequence[flow_runs.FlowConfig]) -> dict[str, Any]:
  """Per rate, the errors; whether the PF passes through every GD iterate (global error < `EXACT`) and the NGF and
  IGR flows miss them (> 1e-2) at every rate."""
  per_rate = _by_rate(configs)
  pf = max(v['max_global_error']['pf'] for v in per_rate.values())
  others = min(v['max_global_error'][f] for v in per_rate.values() for f in ('ngf', 'igr'))
  return {
    'per_rate': per_rate,
    'max_pf_global_error': pf,
    'min_ngf_igr_max_global_error': others,
    'direction': {'pf_passes_through_gd_iterates': bool(pf < EXACT), 'ngf_and_igr_miss_them': bool(others > 1e-2)},
  }


def _quadratic_figure(configs: Sequence[flow_runs.FlowConfig], numbers: Mapping[str, Any]) -> Any:
  fig = Figure(figsize=(15, 8.5), layout='constrained')
  axes = fig.subplots(2, len(configs), squeeze=False)
  titles = {
    0.5: 'hλ₀ = 1: one step to the minimum along u₀',
    0.9: 'hλ₀ = 1.8: oscillating',
    1.05: 'hλ₀ = 2.1: diverging',
  }
  for j, config in enumerate(configs):
    traj = flow_runs.load_trajectories(config.out)
    ax = axes[0, j]
    for flow in config.flows:
      path = np.real(traj[f'{flow}/path'])
      ax.plot(
        path[:, 0],
        path[:, 1],
        color=COLOURS[flow],
        lw=2.2 if flow == 'pf' else 1.6,
        label=NAMES[flow] + (' (real part)' if flow == 'pf' else ''),
        zorder=3 if flow == 'pf' else 2,
      )
    gd = traj['gd']
    ax.plot(gd[:, 0], gd[:, 1], ls=':', color='k', lw=0.8, zorder=4)
    ax.scatter(gd[:, 0], gd[:, 1], s=36, facecolors='none', edgecolors='k', lw=1.4, zorder=5, label='GD iterates θ_n')
    ax.scatter(gd[:1, 0], gd[:1, 1], s=60, marker='*', color='k', zorder=6, label='θ₀')
    ax.set_xlabel('θ[0] (λ = 2)')
    ax.set_ylabel('θ[1] (λ = 0.02)')
    ax.set_title(f'(h = {config.h:g}) {titles.get(config.h, "")}', fontsize=10)
    if j == 0:
      ax.legend(fontsize=8, loc='center right')
    _error_axes(axes[1, j], config, config.flows)
    axes[1, j].set_title(
      f'global error, h = {config.h:g} ({numbers["per_rate"][_key(config.h)]["method"]})', fontsize=10
    )
    axes[1, j].legend(fontsize=8)
  fig.suptitle(
    'E = θᵀAθ, A = diag(1, 0.01): the PF passes through every GD iterate; NGF and IGR do not (Figures 3.2, 3.7)'
  )
  return fig


def run_quadratic(out: Path | str, quick: bool = False) -> dict[str, Any]:
  """The runs of Figures 3.2/3.7 into `out/runs/`, `out/figure.png` and `out/result.json`."""
  out = Path(out)
  settings = QUADRATIC_QUICK if quick else QUADRATIC_FULL
  configs = configs_for(out, 'quadratic', settings, **{'problem.name': 'quadratic'})
  train(configs)
  numbers = quadratic_numbers(configs)
  return common.finish(out, PF_QUADRATIC, _quadratic_figure(configs, numbers), numbers, settings, quick)


PF_QUADRATIC = common.Reproduction(
  name='pf-quadratic',
  figure='Figures 3.2, 3.7',
  claim=(
    'On a quadratic the principal flow is exact: it passes through every GD iterate (error ~1e-6 or below), '
    'including the oscillating (hλ₀ = 1.8) and diverging (hλ₀ = 2.1) cases, where it is complex; the NGF and '
    'the IGR flow converge to the minimum and miss the iterates.'
  ),
  settings=(
    'E = θᵀAθ, A = diag(1, 0.01) (no ½: hλ₀ = 2h), θ₀ = (1, 1), h = 0.5, 0.9, 1.05, 10 GD steps; NGF, IGR flow and '
    'PF integrated by diffrax (Tsit5, rtol 1e-9, atol 1e-11, float64) over each step, except at h = 0.5 '
    '(hλ₀ = 1, the PF field is infinite) where every flow is its closed form.'
  ),
  run=run_quadratic,
)


# ----------------------------------------------------------------------------
# Figures 3.3 and 3.6: one dimension.
# ----------------------------------------------------------------------------

ONE_D_FULL = Settings(rates=(0.8, 1.5, 2.1), steps=6, flows=('ngf', 'igr', 'pf'), samples=32)
ONE_D_QUICK = Settings(rates=(0.8, 1.5, 2.1), steps=3, flows=('ngf', 'igr', 'pf'), method='closed_form', samples=8)
SHIFTED_RATE = 1.2


def one_d_configs(out: Path | str, settings: Settings) -> dict[str, list[flow_runs.FlowConfig]]:
  """'fig3.3': ½(θ − 0.6)² at h = 1.2; 'fig3.6': ½z² at each rate of `settings`."""
  shifted = dataclasses.replace(settings, rates=(SHIFTED_RATE,), steps=max(settings.steps - 1, 2))
  return {
    'fig3.3': configs_for(out, 'shifted-square', shifted, **{'problem.name': 'shifted_square'}),
    'fig3.6': configs_for(out, 'square', settings, **{'problem.name': 'square'}),
  }


def one_d_numbers(runs: Mapping[str, Sequence[flow_runs.FlowConfig]]) -> dict[str, Any]:
  """The errors of each run; whether the PF matches GD and z(t) = (1 − h)^{t/h}z(0); whether it is real below
  h = 1, oscillates (|Im z| > 0.1) above and ends farther from 0 than it started only above h = 2; whether the real
  flows stay below the minimum 0.6 of Figure 3.3 that GD overshoots."""
  (shifted,) = runs['fig3.3']
  traj = flow_runs.load_trajectories(shifted.out)
  real_top = max(float(np.max(np.real(traj[f'{f}/path']))) for f in ('ngf', 'igr') if f in shifted.flows)
  fig33 = {**_run_numbers(shifted), 'real_flows_max_theta': real_top, 'gd_max_theta': float(np.max(traj['gd']))}
  fig36: dict[str, Any] = {}
  for config in runs['fig3.6']:
    traj = flow_runs.load_trajectories(config.out)
    z = traj['pf/path'][:, 0]
    z0 = float(np.real(z[0]))
    exact = (1 - config.h + 0j) ** (traj['path_ts'] / config.h) * z0
    fig36[_key(config.h)] = {
      **_run_numbers(config),
      'pf_max_imag': float(np.max(np.abs(np.imag(z)))),
      'pf_closed_form_error': float(np.max(np.abs(z - exact))),
      'pf_final_abs': float(np.abs(z[-1])),
      'gd_final_abs': float(np.abs(traj['gd'][-1, 0])),
      'start_abs': abs(z0),
    }
  rates = {float(k): v for k, v in fig36.items()}
  pf_exact = all(v['max_global_error']['pf'] < EXACT for v in [fig33, *fig36.values()])
  direction = {
    'pf_passes_through_gd_iterates': bool(pf_exact),
    'pf_is_the_closed_form': bool(all(v['pf_closed_form_error'] < EXACT for v in fig36.values())),
    'real_flows_stop_at_the_minimum': bool(real_top <= 0.6 + 1e-9 < fig33['gd_max_theta']),
    'pf_real_below_1_over_h': bool(all(v['pf_max_imag'] < 1e-9 for h, v in rates.items() if h < 1)),
    'pf_oscillates_above_1_over_h': bool(all(v['pf_max_imag'] > 0.1 for h, v in rates.items() if h > 1)),
    'pf_diverges_iff_above_2_over_h': bool(
      all((v['pf_final_abs'] > v['start_abs']) == (h > 2) for h, v in rates.items())
    ),
  }
  return {'fig3.3': fig33, 'fig3.6': fig36, 'direction': direction}


def _one_d_figure(runs: Mapping[str, Sequence[flow_runs.FlowConfig]]) -> Any:
  squares = runs['fig3.6']
  fig = Figure(figsize=(4.6 * (1 + len(squares)), 4.4), layout='constrained')
  axes = fig.subplots(1, 1 + len(squares), squeeze=False)[0]
  (shifted,) = runs['fig3.3']
  traj = flow_runs.load_trajectories(shifted.out)
  ax = axes[0]
  ax.axhline(0.6, color='grey', lw=0.8, ls='--', label='minimum θ* = 0.6')
  for flow in shifted.flows:
    path = traj[f'{flow}/path'][:, 0]
    ax.plot(traj['path_ts'], np.real(path), color=COLOURS[flow], label=NAMES[flow] + (' Re' if flow == 'pf' else ''))
    if flow == 'pf':
      ax.plot(traj['path_ts'], np.imag(path), color=COLOURS[flow], ls=':', label='PF Im')
  ax.scatter(traj['ts'], traj['gd'][:, 0], color='k', zorder=5, label='GD iterates')
  ax.set(xlabel='t', ylabel='θ(t)', title=f'(Fig 3.3) ½(θ − 0.6)², h = {shifted.h:g}')
  ax.legend(fontsize=7)
  cases = {0.8: 'real stable', 1.5: 'complex stable', 2.1: 'unstable'}
  for ax, config in zip(axes[1:], squares):
    traj = flow_runs.load_trajectories(config.out)
    z = traj['pf/path'][:, 0]
    ax.plot(traj['path_ts'], np.real(z), color='C3', lw=2, label='PF Re z(t)')
    ax.plot(traj['path_ts'], np.imag(z), color='C3', ls=':', lw=2, label='PF Im z(t)')
    for flow in config.flows:
      if flow != 'pf':
        ax.plot(traj['path_ts'], np.real(traj[f'{flow}/path'][:, 0]), color=COLOURS[flow], lw=1, label=NAMES[flow])
    envelope = np.abs(1 - config.h) ** (traj['path_ts'] / config.h)
    ax.plot(traj['path_ts'], envelope, color='grey', lw=0.8, ls='--', label='|1 − h|^{t/h} z(0)')
    ax.scatter(traj['ts'], traj['gd'][:, 0], color='k', zorder=5, label='GD iterates')
    ax.set(xlabel='t', ylabel='z(t)', title=f'(Fig 3.6) ½z², h = {config.h:g}: {cases.get(config.h, "")}')
    ax.legend(fontsize=7)
  fig.suptitle('One dimension: the complex PF oscillates and diverges with GD; the real flows stop at the minimum')
  return fig


def run_one_d(out: Path | str, quick: bool = False) -> dict[str, Any]:
  """The runs of Figures 3.3 and 3.6 into `out/runs/`, `out/figure.png` and `out/result.json`."""
  out = Path(out)
  settings = ONE_D_QUICK if quick else ONE_D_FULL
  runs = one_d_configs(out, settings)
  train([c for v in runs.values() for c in v])
  numbers = one_d_numbers(runs)
  return common.finish(out, PF_1D, _one_d_figure(runs), numbers, settings, quick)


PF_1D = common.Reproduction(
  name='pf-1d',
  figure='Figures 3.3, 3.6',
  claim=(
    'In one dimension the complex PF follows GD exactly: across the minimum of ½(θ − 0.6)² at h = 1.2, where the '
    'real flows stop, and on ½z² it is real for h < 1, oscillates for 1 < h < 2 and diverges for h > 2, '
    'z(t) = (1 − h)^{t/h} z(0).'
  ),
  settings=(
    'E = ½(θ − 0.6)² from θ₀ = 0 at h = 1.2 (5 steps), and E = ½z² from z₀ = 1 at h = 0.8, 1.5, 2.1 (6 steps); NGF, '
    'IGR flow and PF by diffrax (Tsit5, rtol 1e-9, atol 1e-11, float64), 32 path points per step.'
  ),
  run=run_one_d,
)


# ----------------------------------------------------------------------------
# Figure 3.8: the banana function.
# ----------------------------------------------------------------------------

BANANA_FULL = Settings(
  rates=(0.0006, 0.0017, 0.005), steps=20, flows=('ngf', 'igr', 'pf', 'pf+third'), method='euler', dt=1e-5
)
BANANA_QUICK = Settings(
  rates=(0.0006, 0.005), steps=2, flows=('ngf', 'pf+third'), method='euler', dt=0.1, dt_per_h=True, samples=4
)


def banana_numbers(configs: Sequence[flow_runs.FlowConfig]) -> dict[str, Any]:
  """Per rate, the errors (+inf for a flow that diverged); which flows stay closest to GD, and whether the PF
  diverges while the PF + third-order flow stays close at the largest rate."""
  per_rate = _by_rate(configs)
  rates = sorted(per_rate, key=float)
  mean = lambda rate, flow: per_rate[rate]['mean_global_error'].get(flow, math.inf)
  best = {r: min(per_rate[r]['mean_global_error'], key=per_rate[r]['mean_global_error'].get) for r in rates}
  smallest, middle, largest = rates[0], rates[len(rates) // 2], rates[-1]
  direction = {
    # Fig 3.8a: λ_0 < 1/h: the (real) PF follows GD more closely than NGF and IGR.
    'pf_closer_than_ngf_igr_at_smallest_h': bool(
      mean(smallest, 'pf') < min(mean(smallest, 'ngf'), mean(smallest, 'igr'))
    ),
    # Fig 3.8b: λ_0 close to 2/h: the PF captures the GD trajectory over many iterations.
    'pf_closer_than_ngf_igr_near_2_over_h': bool(mean(middle, 'pf') < min(mean(middle, 'ngf'), mean(middle, 'igr'))),
    # Fig 3.8c, Remark 3.3.3: λ_0 ≫ 2/h: the PF leaves GD, the non-principal term restabilises it.
    'pf_third_closer_than_pf_at_largest_h': bool(mean(largest, 'pf+third') < mean(largest, 'pf')),
    'pf_third_closest_at_largest_h': bool(best[largest] == 'pf+third'),
  }
  return {'per_rate': per_rate, 'closest_flow': best, 'direction': direction}


def _rosenbrock_grid(box: tuple[float, float, float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  x, y = np.meshgrid(np.linspace(box[0], box[1], 200), np.linspace(box[2], box[3], 200))
  return x, y, np.log10((1 - x) ** 2 + 100 * (y - x**2) ** 2 + 1e-3)


def _banana_figure(configs: Sequence[flow_runs.FlowConfig], numbers: Mapping[str, Any]) -> Any:
  fig = Figure(figsize=(5 * len(configs), 9), layout='constrained')
  axes = fig.subplots(2, len(configs), squeeze=False)
  for j, config in enumerate(configs):
    traj = flow_runs.load_trajectories(config.out)
    gd = traj['gd']
    low, high = gd.min(axis=0), gd.max(axis=0)
    pad = np.maximum(0.25 * (high - low), 0.1)
    box = (low[0] - pad[0], high[0] + pad[0], low[1] - pad[1], high[1] + pad[1])
    ax = axes[0, j]
    ax.contour(*_rosenbrock_grid(box), levels=20, cmap='Greys', linewidths=0.5)
    for flow in config.flows:
      path = np.real(traj[f'{flow}/path'])
      finite = np.all(np.isfinite(path), axis=1) & np.all(np.abs(path) < 1e3, axis=1)
      ax.plot(path[finite, 0], path[finite, 1], color=COLOURS[flow], lw=1.5, label=NAMES[flow])
    ax.plot(gd[:, 0], gd[:, 1], ls=':', color='k', lw=0.8)
    ax.scatter(gd[:, 0], gd[:, 1], s=22, facecolors='none', edgecolors='k', zorder=5, label='GD iterates')
    ax.set_xlim(box[0], box[1])
    ax.set_ylim(box[2], box[3])
    h_lambda = numbers['per_rate'][_key(config.h)]['h_lambda_0']
    ax.set(xlabel='x', ylabel='y', title=f'h = {config.h:g}, hλ₀(θ₀) = {h_lambda:.2f}')
    if j == 0:
      ax.legend(fontsize=8)
    _error_axes(axes[1, j], config, config.flows)
    axes[1, j].set_title(f'global error, h = {config.h:g}', fontsize=10)
    axes[1, j].legend(fontsize=8)
  fig.suptitle(
    'Banana (Rosenbrock) function from (−1.2, 1): real parts of the flows, Euler dt = '
    f'{configs[0].integrator.dt:g} (Figure 3.8)'
  )
  return fig


def run_banana(out: Path | str, quick: bool = False) -> dict[str, Any]:
  """The runs of Figure 3.8 into `out/runs/`, `out/figure.png` and `out/result.json`."""
  out = Path(out)
  settings = BANANA_QUICK if quick else BANANA_FULL
  configs = configs_for(out, 'banana', settings, **{'problem.name': 'rosenbrock'})
  train(configs)
  numbers = banana_numbers(configs)
  return common.finish(out, PF_BANANA, _banana_figure(configs, numbers), numbers, settings, quick)


PF_BANANA = common.Reproduction(
  name='pf-banana',
  figure='Figure 3.8',
  claim=(
    'On the banana function the PF tracks GD when λ₀ < 1/h and, the thesis says, over many iterations when λ₀ is '
    'close to 2/h; when λ₀ ≫ 2/h the PF leaves the GD trajectory and adding the third-order non-principal term '
    '(Eq 3.11) restabilises it (Remark 3.3.3).'
  ),
  settings=(
    'Rosenbrock (1 − x)² + 100(y − x²)² from (−1.2, 1) (hλ₀ = 0.90, 2.56, 7.53 at h = 0.0006, 0.0017, 0.005), 20 GD '
    'steps; NGF, IGR flow, PF and PF + third-order term by explicit Euler with dt = 1e-5 (the thesis used 5e-5; '
    'diffrax stalls on the PF at h = 0.0017), dense Hessians, the branch cut on Re hλ = 1, float64.'
  ),
  run=run_banana,
)


# ----------------------------------------------------------------------------
# Figure A.6: a non-quadratic function with cos.
# ----------------------------------------------------------------------------

COS_FULL = Settings(rates=(0.5, 0.85), steps=12, flows=('ngf', 'igr', 'pf'))
COS_QUICK = Settings(rates=(0.5, 0.85), steps=2, flows=('ngf', 'pf'), method='euler', dt=0.1, dt_per_h=True, samples=4)


def cos_numbers(configs: Sequence[flow_runs.FlowConfig]) -> dict[str, Any]:
  """Per rate, the errors, where GD and each flow end, and whether each passed the stationary point −3π/2; whether
  the PF is closest to GD at every rate, and whether it escapes where the NGF and IGR flow stop."""
  per_rate: dict[str, Any] = {}
  escapes = []
  for config in configs:
    traj = flow_runs.load_trajectories(config.out)
    ends = {f: float(np.real(traj[f'{f}/iterates'][-1, 0])) for f in config.flows}
    ends['gd'] = float(traj['gd'][-1, 0])
    passed = {f: bool(e < STATIONARY_COS) for f, e in ends.items()}
    per_rate[_key(config.h)] = {**_run_numbers(config), 'final_theta': ends, 'passed_stationary_point': passed}
    escapes.append(passed.get('pf', False) and not passed.get('ngf', False) and not passed.get('igr', False))
  closest = all(
    v['mean_global_error']['pf'] < min(e for f, e in v['mean_global_error'].items() if f != 'pf')
    for v in per_rate.values()
  )
  return {
    'per_rate': per_rate,
    'stationary_point': STATIONARY_COS,
    'direction': {
      'pf_closest_to_gd': bool(closest),
      'pf_real_on_the_path': bool(all(v['max_h_lambda_0'] < 1 for v in per_rate.values())),
      'pf_escapes_where_ngf_igr_stop': bool(any(escapes)),
    },
  }


def _cos_figure(configs: Sequence[flow_runs.FlowConfig]) -> Any:
  fig = Figure(figsize=(5 * (1 + len(configs)), 4.4), layout='constrained')
  axes = fig.subplots(1, 1 + len(configs), squeeze=False)[0]
  theta = np.linspace(-6.5, 2.0, 600)
  energy = np.where(theta < 0, np.cos(theta) + theta, 2 * (theta / 3) ** 2 + 1 + theta / 3)
  axes[0].plot(theta, energy, color='k')
  axes[0].axvline(STATIONARY_COS, color='grey', ls='--', lw=0.8, label="−3π/2: E' = E'' = 0")
  axes[0].set(xlabel='θ', ylabel='E(θ)', title='E = cos θ + θ (θ < 0), 2(θ/3)² + 1 + θ/3 (θ ≥ 0)')
  for ax, config in zip(axes[1:], configs):
    traj = flow_runs.load_trajectories(config.out)
    for flow in config.flows:
      ax.plot(traj['path_ts'], np.real(traj[f'{flow}/path'][:, 0]), color=COLOURS[flow], label=NAMES[flow])
    ax.scatter(traj['ts'], traj['gd'][:, 0], color='k', zorder=5, s=18, label='GD iterates')
    ax.axhline(STATIONARY_COS, color='grey', ls='--', lw=0.8)
    ax.set(xlabel='t', ylabel='θ(t)', title=f'h = {config.h:g}')
    ax.legend(fontsize=8)
  axes[0].legend(fontsize=8)
  fig.suptitle("Figure A.6's function from θ₀ = −2: every flow (and GD) slows at the stationary point −3π/2")
  return fig


def run_cos(out: Path | str, quick: bool = False) -> dict[str, Any]:
  """The runs of Figure A.6 into `out/runs/`, `out/figure.png` and `out/result.json`."""
  out = Path(out)
  settings = COS_QUICK if quick else COS_FULL
  configs = configs_for(out, 'cos', settings, **{'problem.name': 'cos', 'complex': False})
  train(configs)
  numbers = cos_numbers(configs)
  return common.finish(out, PF_COS, _cos_figure(configs), numbers, settings, quick)


PF_COS = common.Reproduction(
  name='pf-cos',
  figure='Figure A.6',
  claim=(
    'On a non-quadratic function with cos the PF describes GD better than the NGF and the IGR flow, which stop '
    'at the local minimum, while the PF can exit it.'
  ),
  settings=(
    "E = cos θ + θ (θ < 0), 2(θ/3)² + 1 + θ/3 (θ ≥ 0) as printed, from θ₀ = −2, h = 0.5 and 0.85 (the paper's "
    "Figure 30), 12 GD steps; NGF, IGR flow and PF by diffrax (Tsit5, rtol 1e-9, float64). h|E''| < 1, so the PF "
    'is real and is integrated in real space (complex=false: the loss is not holomorphic across θ = 0).'
  ),
  run=run_cos,
)


# ----------------------------------------------------------------------------
# Figure 3.9: an MLP on five points.
# ----------------------------------------------------------------------------

MLP_FULL = Settings(
  rates=(0.1, 0.2, 0.25),
  steps=12,
  flows=('ngf', 'igr', 'third', 'pf'),
  method='euler',
  dt=2e-3,
  dt_per_h=True,
  samples=4,
)
MLP_QUICK = Settings(rates=(0.1, 0.25), steps=2, flows=('ngf', 'pf'), method='euler', dt=0.1, dt_per_h=True, samples=2)
MLP_SEED = 3  # data and initialisation: hλ₀(θ₀) = 0.92, 1.84, 2.30 at the three rates
FIRST_ITERATIONS = 3


def mlp_numbers(configs: Sequence[flow_runs.FlowConfig], first: int = FIRST_ITERATIONS) -> dict[str, Any]:
  """Per rate, the errors and the global error per flow for n = 1..`first`; whether the PF has the smallest global
  error at each of those n at every rate."""
  per_rate: dict[str, Any] = {}
  smallest = True
  for config in configs:
    curves = {f: errors(config, f)[1 : first + 1] for f in config.flows}
    per_rate[_key(config.h)] = {
      **_run_numbers(config),
      'first_global_errors': {f: v.tolist() for f, v in curves.items()},
    }
    others = np.min([v for f, v in curves.items() if f != 'pf'], axis=0)
    smallest &= bool(np.all(curves['pf'] < others))
  return {'per_rate': per_rate, 'first_iterations': first, 'direction': {'pf_smallest_global_error_first_n': smallest}}


def _network_figure(configs: Sequence[flow_runs.FlowConfig], numbers: Mapping[str, Any], title: str) -> Any:
  fig = Figure(figsize=(5 * len(configs), 4.4), layout='constrained')
  axes = fig.subplots(1, len(configs), squeeze=False)[0]
  for ax, config in zip(axes, configs):
    _error_axes(ax, config, config.flows)
    h_lambda = numbers['per_rate'][_key(config.h)]['h_lambda_0']
    ax.set_title(f'h = {config.h:g}, hλ₀(θ₀) = {h_lambda:.2f}')
    ax.legend(fontsize=8)
  fig.suptitle(title)
  return fig


def run_mlp(out: Path | str, quick: bool = False) -> dict[str, Any]:
  """The runs of Figure 3.9 into `out/runs/`, `out/figure.png` and `out/result.json`."""
  out = Path(out)
  settings = MLP_QUICK if quick else MLP_FULL
  fields = {'problem.name': 'mlp', 'problem.width': 10, 'problem.num_points': 5, 'seed': MLP_SEED}
  configs = configs_for(out, 'mlp', settings, **fields)
  train(configs)
  numbers = mlp_numbers(configs, min(FIRST_ITERATIONS, settings.steps))
  fig = _network_figure(
    configs, numbers, 'MLP 2 → 10 → 1 (tanh), 5 Gaussian points, MSE: global error ‖θ(nh) − θ_n‖ (Figure 3.9)'
  )
  return common.finish(out, PF_MLP, fig, numbers, settings, quick)


PF_MLP = common.Reproduction(
  name='pf-mlp',
  figure='Figure 3.9',
  claim='On a small MLP the PF has the smallest global error ‖θ(nh) − θ_n‖ of all the flows over the first iterations.',
  settings=(
    'An MLP 2 → 10 → 1 (tanh) on 5 points x ~ N(0, I₂) with targets y ~ N(0, 1), mean squared error, seed 3 '
    '(hλ₀ = 0.92, 1.84, 2.30 at h = 0.1, 0.2, 0.25), 12 GD steps; NGF, IGR, third-order flow and PF (complex, '
    'dense Hessian, the branch cut on Re hλ = 1) by explicit Euler with dt = h/500, float64.'
  ),
  run=run_mlp,
)


# ----------------------------------------------------------------------------
# Figure A.7: an MLP on the breast-cancer data.
# ----------------------------------------------------------------------------

CANCER_FULL = Settings(
  rates=(1.5, 5.0), steps=2, flows=('igr', 'pf'), method='euler', dt=2e-3, dt_per_h=True, samples=4
)
CANCER_QUICK = Settings(
  rates=(1.5, 5.0), steps=1, flows=('igr', 'pf'), method='euler', dt=0.1, dt_per_h=True, samples=2
)
CANCER_SEED = 1
CANCER_QUICK_POINTS = 40


def cancer_numbers(configs: Sequence[flow_runs.FlowConfig]) -> dict[str, Any]:
  """Per rate, the IGR flow's and the PF's global errors at n = 1..N; whether the PF's is smaller at every n."""
  per_rate: dict[str, Any] = {}
  smaller = True
  for config in configs:
    igr, pf = errors(config, 'igr')[1:], errors(config, 'pf')[1:]
    per_rate[_key(config.h)] = {
      **_run_numbers(config),
      'global_errors': {'igr': igr.tolist(), 'pf': pf.tolist()},
      'ratio_pf_to_igr': (pf / igr).tolist(),
    }
    smaller &= bool(np.all(pf < igr))
  return {'per_rate': per_rate, 'direction': {'pf_smaller_than_igr': smaller}}


def run_cancer(out: Path | str, quick: bool = False) -> dict[str, Any]:
  """The runs of Figure A.7 into `out/runs/`, `out/figure.png` and `out/result.json`."""
  out = Path(out)
  settings = CANCER_QUICK if quick else CANCER_FULL
  fields = {
    'problem.name': 'breast_cancer',
    'problem.width': 10,
    'problem.num_points': CANCER_QUICK_POINTS if quick else 0,
    'seed': CANCER_SEED,
  }
  configs = configs_for(out, 'breast-cancer', settings, **fields)
  train(configs)
  numbers = cancer_numbers(configs)
  fig = _network_figure(
    configs, numbers, 'MLP 30 → 10 → 1 (tanh) on breast cancer, BCE: global error of IGR and PF (Figure A.7)'
  )
  return common.finish(out, PF_BREAST_CANCER, fig, numbers, settings, quick)


PF_BREAST_CANCER = common.Reproduction(
  name='pf-breast-cancer',
  figure='Figure A.7',
  claim='On an MLP trained on the UCI breast-cancer data the PF tracks GD better than the IGR flow, by a margin.',
  settings=(
    'An MLP 30 → 10 → 1 (tanh) on the standardised breast-cancer training split (426 examples), binary '
    'cross-entropy with logits, seed 1 (hλ₀ = 1.70 and 5.65 at h = 1.5 and 5), two GD steps (time 2h); IGR flow and '
    'PF (complex, dense Hessian of 321 parameters, the branch cut on Re hλ = 1) by explicit Euler with '
    'dt = h/500, float64.'
  ),
  run=run_cancer,
)

REPRODUCTIONS = (PF_QUADRATIC, PF_1D, PF_BANANA, PF_COS, PF_MLP, PF_BREAST_CANCER)
