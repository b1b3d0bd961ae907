"""Dirac-GAN (thesis Figure 4.5, Sections 4.5.1 and 4.7, Appendix B.6): `smoothrl reproduce dirac-gan`.

Gradient descent on the Dirac-GAN E = l(θφ) + l(0), l(z) = −log(1 + e^{−z}) (`smoothrl.games.dirac`), from
(φ, θ) = (0.5, 1.0) at h = 0.2, in float64. Each run writes `OUT/runs/<name>/` with its `config.json`, its iterates
and the flows integrated beside them in `trajectory.npz` (plain arrays, no pickle) and `metrics.jsonl` (the
iterates every `log_period` updates, kind 'iterate', and the stability predictions at the equilibrium, kind
'analysis'). The runs:

- `simultaneous` (Figure 4.5a): simultaneous steps with the game's flow (it conserves θ² + φ²), the modified flow
  of Theorem 4.2.1 and the game PF (Section 4.8), each integrated over the same time;
- `alternating`: alternating steps at equal rates with the flow and the modified flow of Theorem 4.2.2;
- `simultaneous_cancel` (Figure 4.5b): the interaction terms cancelled, γ = ζ = h/4 (Table 4.2);
- `simultaneous_gamma_h8`, `simultaneous_gamma_h2`: the regularisers of B.6.3 at γ = ζ = h/8 (below the
  threshold) and h/2 (above);
- `alternating_cancel`, `alternating_cancel_phi`: Table 4.2's alternating cancellation of both interaction terms,
  and of the discriminator's only;
- `alternating_unequal`: alternating steps with v_φ = 0.5, v_θ = 1 and the same-physical-time modified flow of
  Theorem 4.7.2, with the predictions of both clocks at the equilibrium (Section 4.7).

`result.json` holds the numbers read back from those files and the thesis' directions checked on them.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from smoothrl import games
from smoothrl.games import dirac, drift, pf
from smoothrl.games import regularisers as reg
from smoothrl.launch.reproductions import common
from smoothrl.launch.run.files import CONFIG_FILE, METRICS_FILE, atomic_file, atomic_write_text, read_metrics

TRAJECTORY_FILE = 'trajectory.npz'
H = 0.2
START = (0.5, 1.0)  # (φ₀, θ₀)


@dataclasses.dataclass(frozen=True)
class Scale:
  """How long the runs go: updates, RK4 steps per update for the flows, and the metrics period."""

  steps: int
  substeps: int
  log_period: int


FULL = Scale(steps=600, substeps=20, log_period=10)
QUICK = Scale(steps=30, substeps=4, log_period=10)


@dataclasses.dataclass(frozen=True)
class Run:
  """One run: the update scheme, the rates, the regulariser and the flows integrated beside the iterates."""

  name: str
  scheme: str
  v_phi: float = 1.0
  v_theta: float = 1.0
  regulariser: str = 'none'  # 'none', 'gamma' (γ = ζ = gamma·h), 'cancel', 'cancel_phi'
  gamma: float = 0.0
  flows: tuple[str, ...] = ('modified',)  # the flows the figure draws
  clock: str = 'player'
  label: str = ''


RUNS = (
  Run('simultaneous', 'simultaneous', flows=('flow', 'modified', 'pf'), label='simultaneous'),
  Run('alternating', 'alternating', flows=('flow', 'modified'), label='alternating'),
  Run('simultaneous_cancel', 'simultaneous', regulariser='cancel', label='simultaneous, interaction cancelled (h/4)'),
  Run('simultaneous_gamma_h8', 'simultaneous', regulariser='gamma', gamma=1 / 8, label='simultaneous, γ = ζ = h/8'),
  Run('simultaneous_gamma_h2', 'simultaneous', regulariser='gamma', gamma=1 / 2, label='simultaneous, γ = ζ = h/2'),
  Run('alternating_cancel', 'alternating', regulariser='cancel', label='alternating, both interactions cancelled'),
  Run('alternating_cancel_phi', 'alternating', regulariser='cancel_phi', label='alternating, φ interaction cancelled'),
  Run('alternating_unequal', 'alternating', v_phi=0.5, v_theta=1.0, clock='shared', label='alternating, v_φ = 0.5'),
)


def _regulariser(run: Run) -> games.Regulariser:
  if run.regulariser == 'none':
    return games.NO_REGULARISER
  if run.regulariser == 'gamma':
    return reg.explicit(run.gamma * H, run.gamma * H)
  players = 'phi' if run.regulariser == 'cancel_phi' else 'both'
  return reg.cancel_interaction(H, scheme=run.scheme, v_phi=run.v_phi, v_theta=run.v_theta, players=players)


def _flow_names(scheme: str) -> tuple[str, ...]:
  return ('flow', 'modified', 'pf') if scheme == 'simultaneous' else ('flow', 'modified')


def _coefficients(run: Run, clock: str, drift_on: bool = True) -> tuple[float, ...]:
  c = drift.drift_coefficients(run.scheme, v_phi=run.v_phi, v_theta=run.v_theta, clock=clock)
  if not drift_on:
    c = c._replace(phi_self=0.0, phi_interaction=0.0, theta_interaction=0.0, theta_self=0.0)
  return tuple(float(x) for x in c)


@functools.cache
def _program(scheme: str, scale: Scale):
  """One compiled program per update scheme, its rates, regulariser and drift coefficients traced: the iterates
  and the flows at t = nh."""
  flow_names = _flow_names(scheme)

  def simulate(regulariser, v_phi, v_theta, flow_c, modified_c):
    game = dirac.game(games.Regulariser(*regulariser))
    phi0, theta0 = (jnp.asarray(x, jnp.float64) for x in START)
    update = games.make_update(game, H, scheme=scheme, v_phi=v_phi, v_theta=v_theta)
    iterates = games.rollout(update, update.init(phi0, theta0), scale.steps)
    fields = {
      'flow': drift.modified_field(game, H, coefficients=drift.DriftCoefficients(*flow_c)),
      'modified': drift.modified_field(game, H, coefficients=drift.DriftCoefficients(*modified_c)),
      'pf': pf.principal_field(game, H, v_phi=v_phi, v_theta=v_theta),
    }
    out = {'phi': iterates.phi, 'theta': iterates.theta}
    for name in flow_names:
      phis, thetas = drift.integrate(
        fields[name], phi0, theta0, scale.steps * H, steps=scale.steps * scale.substeps, saves=scale.steps
      )
      out[f'{name}/phi'] = jnp.concatenate([phi0[None], phis])
      out[f'{name}/theta'] = jnp.concatenate([theta0[None], thetas])
    return out

  return jax.jit(simulate)


def _simulate(run: Run, scale: Scale) -> dict[str, np.ndarray]:
  """The iterates and flows of `run` and the stability at the equilibrium of its modified flows (both clocks, the
  closed forms of `dirac.modified_jacobian`) and of its update (`dirac.linearised_update`)."""
  args = (
    tuple(float(c) for c in _regulariser(run)),
    run.v_phi,
    run.v_theta,
    _coefficients(run, run.clock, drift_on=False),
    _coefficients(run, run.clock),
  )
  arrays = {
    k: np.asarray(v) for k, v in _program(run.scheme, scale)(*(jnp.asarray(a, jnp.float64) for a in args)).items()
  }
  arrays['step'] = np.arange(scale.steps + 1)
  for prefix in ['', *(f'{name}/' for name in _flow_names(run.scheme))]:
    arrays[f'{prefix}radius'] = np.hypot(arrays[f'{prefix}phi'], arrays[f'{prefix}theta'])
  c = _regulariser(run)
  kw = dict(v_phi=run.v_phi, v_theta=run.v_theta, gamma=c.phi_interaction, zeta=c.theta_interaction)
  for clock in ('player', 'shared'):
    arrays[f'jacobian/{clock}'] = np.asarray(dirac.modified_jacobian(H, scheme=run.scheme, clock=clock, **kw))
  arrays['jacobian/update'] = np.asarray(dirac.linearised_update(H, scheme=run.scheme, **kw))
  return arrays


def _analysis(arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
  """The largest real part of the eigenvalues of the modified flows' Jacobians at the equilibrium on both clocks,
  and the spectral radius of the update's."""
  record = {
    f'{clock}_clock_max_real': float(np.linalg.eigvals(arrays[f'jacobian/{clock}']).real.max())
    for clock in ('player', 'shared')
  }
  record['update_spectral_radius'] = float(np.abs(np.linalg.eigvals(arrays['jacobian/update'])).max())
  return record


def _write_run(out: Path, run: Run, scale: Scale, arrays: Mapping[str, np.ndarray]) -> None:
  run_dir = out / 'runs' / run.name
  run_dir.mkdir(parents=True, exist_ok=True)
  config = {
    **dataclasses.asdict(run),
    'h': H,
    'start': {'phi': START[0], 'theta': START[1]},
    'regulariser_coefficients': [float(c) for c in _regulariser(run)],
    **dataclasses.asdict(scale),
  }
  atomic_write_text(run_dir / CONFIG_FILE, json.dumps(config, indent=2, sort_keys=True))
  with atomic_file(run_dir / TRAJECTORY_FILE, 'wb') as f:
    np.savez(f, **arrays)
  flows = _flow_names(run.scheme)
  lines = [json.dumps({'step': 0, 'kind': 'analysis', **_analysis(arrays)}, sort_keys=True)]
  for n in range(0, scale.steps + 1, scale.log_period):
    record = {'phi': arrays['phi'][n], 'theta': arrays['theta'][n]}
    record.update({f'{p}radius'.replace('/', '_'): arrays[f'{p}radius'][n] for p in ['', *(f'{f}/' for f in flows)]})
    lines.append(json.dumps({'step': n, 'kind': 'iterate', **{k: float(v) for k, v in record.items()}}, sort_keys=True))
  atomic_write_text(run_dir / METRICS_FILE, '\n'.join(lines) + '\n')


def read_run(out: Path | str, name: str) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
  """(the arrays of `trajectory.npz`, the records of `metrics.jsonl`) of run `name` under `out/runs/`."""
  run_dir = Path(out) / 'runs' / name
  with np.load(run_dir / TRAJECTORY_FILE, allow_pickle=False) as z:
    arrays = {k: z[k] for k in z.files}
  return arrays, list(read_metrics(run_dir / METRICS_FILE))


def _numbers(arrays: Mapping[str, np.ndarray], records: list[dict[str, Any]], flows: tuple[str, ...]) -> dict[str, Any]:
  r = arrays['radius']
  numbers: dict[str, Any] = {
    'final_radius_ratio': float(r[-1] / r[0]),
    'max_radius_ratio': float(r.max() / r[0]),
    'min_radius_ratio': float(r.min() / r[0]),
    **next(x for x in records if x['kind'] == 'analysis'),
  }
  numbers.pop('kind')
  numbers.pop('step')
  for name in flows:
    gap = np.hypot(arrays[f'{name}/phi'] - arrays['phi'], arrays[f'{name}/theta'] - arrays['theta'])
    numbers[f'{name}_final_radius_ratio'] = float(arrays[f'{name}/radius'][-1] / r[0])
    numbers[f'{name}_max_distance'] = float(gap.max() / r[0])  # the largest distance to the iterates, relative
    numbers[f'{name}_max_radius_gap'] = float(np.abs(arrays[f'{name}/radius'] - r).max() / r[0])
  return numbers


def _directions(n: Mapping[str, Mapping[str, Any]]) -> dict[str, bool]:
  sim, alt = n['simultaneous'], n['alternating']
  return {
    # Figure 4.5a, Eqs 4.38–4.39: the flow keeps the radius, the iterates and the modified flow spiral out.
    'simultaneous_spirals_out': sim['final_radius_ratio'] > 1.5,
    'flow_conserves_radius': abs(sim['flow_final_radius_ratio'] - 1) < 1e-6,
    'modified_flow_spirals_out': sim['modified_final_radius_ratio'] > 1.5,
    'modified_flow_tracks_simultaneous': sim['modified_max_radius_gap'] < 0.2 * sim['flow_max_radius_gap'],
    'pf_tracks_simultaneous': sim['pf_max_radius_gap'] < 0.1 * sim['flow_max_radius_gap']
    and sim['pf_max_distance'] < sim['flow_max_distance'],
    'modified_flow_predicts_divergence': sim['player_clock_max_real'] > 0,
    # Alternating updates with equal rates stay bounded (Section 4.5, Remark 4.5.1).
    'alternating_bounded': alt['max_radius_ratio'] < 1.2 and alt['min_radius_ratio'] > 0.8,
    'modified_flow_tracks_alternating': alt['modified_max_distance'] < alt['flow_max_distance'],
    # Figure 4.5b, B.6.3: cancelling the interaction terms keeps the radius; above h/4 converges, below diverges.
    'cancel_stays_on_circle': abs(n['simultaneous_cancel']['final_radius_ratio'] - 1) < 0.05,
    'above_threshold_converges': n['simultaneous_gamma_h2']['final_radius_ratio'] < 0.5,
    'below_threshold_diverges': n['simultaneous_gamma_h8']['final_radius_ratio'] > 1.2,
    'radius_ordered_by_gamma': sim['final_radius_ratio']
    > n['simultaneous_gamma_h8']['final_radius_ratio']
    > n['simultaneous_cancel']['final_radius_ratio']
    > n['simultaneous_gamma_h2']['final_radius_ratio'],
    # Section 4.6.3 for alternating updates: cancel the discriminator's interaction term only (here it converges,
    # faster than cancelling both).
    'alternating_cancel_phi_converges': n['alternating_cancel_phi']['final_radius_ratio'] < 0.5
    and n['alternating_cancel_phi']['final_radius_ratio'] < n['alternating_cancel']['final_radius_ratio'],
    # Section 4.7: with v_φ ≠ v_θ only the same-physical-time flow matches the bounded alternating iterates.
    'unequal_alternating_bounded': n['alternating_unequal']['max_radius_ratio'] < 1.3
    and n['alternating_unequal']['min_radius_ratio'] > 0.7,
    'player_clock_mispredicts_divergence': n['alternating_unequal']['player_clock_max_real'] > 0,
    'shared_clock_predicts_centre': abs(n['alternating_unequal']['shared_clock_max_real']) < 1e-12,
  }


def _figure(out: Path, data: Mapping[str, tuple[dict[str, np.ndarray], Run]]) -> None:
  from matplotlib.figure import Figure

  fig = Figure(figsize=(13.0, 8.0))
  axes = fig.subplots(2, 3)
  fig.subplots_adjust(left=0.06, right=0.98, bottom=0.07, top=0.92, wspace=0.28, hspace=0.32)
  fig.suptitle('Dirac-GAN, h = 0.2 from (φ, θ) = (0.5, 1.0) (thesis Figure 4.5)')
  styles = {
    'flow': ('k', '--', 'flow (Eq 4.37)'),
    'modified': ('C3', '-', 'modified flow'),
    'pf': ('C2', ':', 'game PF'),
  }
  for ax, name, title in [
    (axes[0, 0], 'simultaneous', '(a) simultaneous steps'),
    (axes[0, 1], 'alternating', '(b) alternating steps'),
    (axes[0, 2], 'simultaneous_cancel', '(c) simultaneous, interaction cancelled'),
  ]:
    arrays, run = data[name]
    ax.plot(arrays['theta'], arrays['phi'], '.', ms=2.5, color='C0', label='iterates')
    for flow in run.flows:
      color, style, label = styles[flow]
      ax.plot(arrays[f'{flow}/theta'], arrays[f'{flow}/phi'], style, color=color, lw=1.0, label=label)
    ax.plot([0], [0], 'k*', ms=8)
    ax.set(title=title, xlabel='θ', ylabel='φ', aspect='equal')
    ax.legend(fontsize=7, loc='upper right')
  for ax, names, title in [
    (
      axes[1, 0],
      ('simultaneous', 'simultaneous_gamma_h8', 'simultaneous_cancel', 'simultaneous_gamma_h2'),
      '(d) regularisers γ = ζ (threshold h/4)',
    ),
    (
      axes[1, 1],
      ('alternating', 'alternating_cancel', 'alternating_cancel_phi', 'alternating_unequal'),
      '(e) alternating steps',
    ),
  ]:
    for name in names:
      arrays, run = data[name]
      ax.plot(arrays['step'], arrays['radius'] / arrays['radius'][0], lw=1.2, label=run.label)
    ax.set(title=title, xlabel='update', ylabel='√(θ² + φ²) / start', yscale='log')
    ax.legend(fontsize=7)
  arrays, run = data['alternating_unequal']
  ax = axes[1, 2]
  ax.plot(arrays['theta'], arrays['phi'], '.', ms=2.5, color='C0', label='iterates')
  ax.plot(arrays['modified/theta'], arrays['modified/phi'], '-', color='C3', lw=1.0, label='same-physical-time flow')
  ax.set(title='(f) alternating, v_φ = 0.5, v_θ = 1', xlabel='θ', ylabel='φ', aspect='equal')
  ax.legend(fontsize=7, loc='upper right')
  common.save(fig, out)


def run(out: Path | str, quick: bool = False) -> dict[str, Any]:
  """Writes the runs, `figure.png` and `result.json` under `out` and returns the result."""
  out = Path(out)
  scale = QUICK if quick else FULL
  with jax.enable_x64(True):
    for r in RUNS:
      _write_run(out, r, scale, _simulate(r, scale))
  data, numbers = {}, {}
  for r in RUNS:
    arrays, records = read_run(out, r.name)
    data[r.name] = (arrays, r)
    numbers[r.name] = _numbers(arrays, records, _flow_names(r.scheme))
  _figure(out, data)
  return common.write_result(
    out, DIRAC_GAN, {'scale': dataclasses.asdict(scale), 'runs': numbers, 'direction': _directions(numbers)}
  )


DIRAC_GAN = common.Reproduction(
  name='dirac-gan',
  figure='Figure 4.5',
  claim='simultaneous steps spiral out as the modified flow predicts; alternating steps stay bounded; cancelling '
  'the interaction terms (γ = ζ = h/4) keeps the radius, above h/4 the iterates converge, below they diverge',
  settings='Dirac-GAN with l(z) = -log(1 + exp(-z)), h = 0.2 from (phi, theta) = (0.5, 1.0), 600 updates, float64, '
  'flows by RK4 with 20 steps per update; the exact game of the thesis, a proxy only in its chosen start, rate and '
  'length',
  run=run,
)

REPRODUCTIONS = (DIRAC_GAN,)
