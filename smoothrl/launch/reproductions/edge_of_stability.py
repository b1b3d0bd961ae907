"""The edge of stability through the principal flow (thesis Sections 3.4-3.5), as small-scale CPU proxies.

`eos-iris` (Figures 3.13, A.8): a tanh MLP of 4 hidden layers of 10 units (413 parameters) on UCI Iris, full-batch
gradient descent at h = 0.18. The run records the trainer's edge-of-stability diagnostics (`MetricsConfig.
edge_of_stability`: λ_0 by warm-started Lanczos, 2/h, gᵀu_0, sc_0, the predicted and measured next gᵀu_0); λ_0
rises to 2/h and hovers there. From the run's final parameters (read back from its `final/`) gradient descent goes
on for `flow_steps` iterations in float64, and at each iterate θ_{n−1} the NGF, the IGR flow and the PF are run for
time h: the local errors ‖θ_n − θ_flow(h; θ_{n−1})‖ and the loss errors Re E(θ_flow(h; θ_{n−1})) − E(θ_n) of
Figure 3.13, and the dense Hessian spectrum at every iterate (Figure A.8).

`eos-stability` (Figures 3.15, 3.17): a tanh MLP on the 8x8 digits, full-batch gradient descent at a rate that
reaches the edge of stability, evaluated every `log_period` steps: how the loss increases of the next step line up
with Re sc_0 > 0. Then, from the run's final parameters, Figure 3.17's flip flow θ̇ = (gᵀu_0)u_0 − Σ_{i≥1}
(gᵀu_i)u_i = −g + 2(gᵀu_0)u_0 (NGF in every direction but u_0, whose sign is flipped) against the NGF θ̇ = −g, by
Euler steps, u_0 refreshed by warm-started Lanczos every `refresh` steps: the flip flow's loss and λ_0 increase,
the NGF's loss decreases.

The PF at complex θ. The PF leaves the reals once some hλ_i > 1 (Section 3.3), and its field is then evaluated at
complex θ, where H is complex symmetric and its eigenvalues move off the real axis. The principal branch of
log(1 − z) jumps by 2πi across the real axis beyond z = 1, so an eigenvalue with hλ ≈ 2 (at the edge of stability)
that wobbles across the axis switches the direction the flow turns in and the PF misses the GD iterate by more than
the NGF does. The thesis does not say which branch it took; here the PF's coefficient is continued from the real
axis (`alpha_pf_continued`: (log(z − 1) + iπ)/z for Re z > 1, its value on the real axis beyond 1, with no cut
there), evaluated by the Arnoldi route of `flows.fields.spectral` (`pf_depth` Hessian-vector products per field
evaluation, exact when the Krylov space of g closes within it) and integrated by explicit Euler with step
`euler_dt`, as the thesis integrates its flows. The losses along the flows are holomorphic: tanh networks and
softmax cross-entropy written as −log_softmax (`cross_entropy`), checked by `flows.holomorphic.check_holomorphic`.

Numbers from the training runs are read from their `metrics.jsonl`; those of the flows (computed from the runs'
final parameters) go to `flows.npz` beside `result.json` (plain arrays: `numpy.load(path, allow_pickle=False)`).

    smoothrl reproduce eos-iris --out runs/repro/eos-iris
    smoothrl reproduce eos-stability --out runs/repro/eos-stability
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from smoothrl.curvature import eigen, products
from smoothrl.flows import coefficients, fields, holomorphic, integrate
from smoothrl.launch.reproductions import common
from smoothrl.launch.reproductions.dal import pearson
from smoothrl.launch.reproductions.smoothness_toys import Trained, load_trained
from smoothrl.launch.run import supervised
from smoothrl.launch.run.files import atomic_file

FLOWS_FILE = 'flows.npz'
FLOW_NAMES = ('ngf', 'igr', 'pf')
FLOW_LABELS = {'ngf': 'NGF', 'igr': 'IGR flow', 'pf': 'PF'}

_BASE: dict[str, Any] = {
  'model.activation': 'tanh',  # holomorphic, so the PF can be followed at complex θ
  'batch_size': 0,
  'checkpoint_period': 0,
  'optimizer.name': 'sgd',
  'metrics.gc': False,
  'metrics.edge_of_stability': True,
}


# ----------------------------------------------------------------------------
# Holomorphic pieces of the flows.
# ----------------------------------------------------------------------------


def alpha_pf_continued(z: jax.Array) -> jax.Array:
  """α_PF(z) = log(1 − z)/z (Eq 3.9) continued from the real axis: (log(z − 1) + iπ)/z for Re z > 1.

  On the real axis it is the principal branch of `coefficients.alpha_pf` (the upper side of the cut beyond z = 1);
  off it, it has no cut along the real axis beyond 1, where the principal branch jumps by 2πi/z, but one along
  Re z = 1. Complex.
  """
  z = jnp.asarray(z)
  z = z.astype(jnp.result_type(z, jnp.complex64))
  beyond = jnp.real(z) > 1
  safe = jnp.where(beyond, z, 2)
  continued = (jnp.log(safe - 1) + 1j * jnp.pi) / safe
  return jnp.where(beyond, continued, coefficients.alpha_pf(jnp.where(beyond, 0, z)))


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """The mean of −log softmax(logits)[label]: the trainer's loss, written so that it is holomorphic in the logits
  (`jax.nn.log_softmax` keeps its max under `stop_gradient`; optax's losses refuse complex logits)."""
  picked = jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1)
  return -jnp.mean(picked)


def flow_loss(trained: Trained, dtype: Any = jnp.float64) -> Callable[[Any], jax.Array]:
  """E(params): the training loss of a rebuilt run on its whole training split, inputs cast to `dtype` (call it
  with x64 enabled for float64)."""
  x = jnp.asarray(trained.dataset.x_train, dtype)
  y = jnp.asarray(trained.dataset.y_train)
  model, state = trained.model, trained.state
  return lambda params: cross_entropy(model.apply(params, state, x, False)[0], y)


def _cast(params: Any, dtype: Any) -> Any:
  return jax.tree.map(lambda a: jnp.asarray(a, dtype), params)


def _distances(a: Any, b: Any) -> jax.Array:
  """‖a_n − b_n‖ over the leading axis (|·| of complex differences)."""
  leaves = zip(jax.tree.leaves(a), jax.tree.leaves(b))
  return jnp.sqrt(sum(jnp.sum(jnp.abs(x - y).reshape(x.shape[0], -1) ** 2, axis=1) for x, y in leaves))


def _write_arrays(out: Path, arrays: Mapping[str, np.ndarray]) -> None:
  with atomic_file(out / FLOWS_FILE, 'wb') as f:
    np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})


def _read_arrays(out: Path) -> dict[str, np.ndarray]:
  with np.load(out / FLOWS_FILE, allow_pickle=False) as z:
    return {k: z[k] for k in z.files}


# ----------------------------------------------------------------------------
# Numbers from the runs' `eval` records.
# ----------------------------------------------------------------------------


def increases_with_positive_sc0(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
  """How the loss increases of the next step line up with Re sc_0 (Figure 3.15), over `eval` records carrying the
  edge-of-stability diagnostics.

  Returns the count of records whose next step increased the loss; the fraction of those with Re sc_0 > 0, beside
  the fraction of all records with Re sc_0 > 0 (the base rate) and the fraction of records with Re sc_0 > 0 whose
  next step increased the loss; the median Re sc_0 at the increases and elsewhere; the probability that Re sc_0 at
  an increase exceeds Re sc_0 at a non-increase (the area under the ROC curve of Re sc_0 as a detector of
  increases, ties counting one half: 0.5 is chance); and the Pearson correlation of Re sc_0 with the loss change.
  Statistics of an empty group are NaN.

  Raises:
    ValueError: fewer than 2 records.
  """
  if len(records) < 2:
    raise ValueError(f'need at least 2 eval records with the edge-of-stability diagnostics, got {len(records)}')
  sc0 = np.asarray([r['sc0_real'] for r in records], np.float64)
  change = np.asarray([r['next_loss_change'] for r in records], np.float64)
  up, positive = change > 0, sc0 > 0
  nan = float('nan')
  a, b = sc0[up], sc0[~up]
  auc = float(np.mean(a[:, None] > b[None, :]) + 0.5 * np.mean(a[:, None] == b[None, :])) if a.size and b.size else nan
  return {
    'evaluations': int(sc0.size),
    'loss_increases': int(up.sum()),
    'increases_with_positive_sc0': float(positive[up].mean()) if up.any() else nan,
    'positive_sc0_fraction': float(positive.mean()),
    'positive_sc0_followed_by_increase': float(up[positive].mean()) if positive.any() else nan,
    'median_sc0_at_increases': float(np.median(a)) if a.size else nan,
    'median_sc0_elsewhere': float(np.median(b)) if b.size else nan,
    'auc_sc0_increase': auc,
    'corr_sc0_loss_change': pearson(sc0, change),
  }


def _window(records: Sequence[Mapping[str, Any]], fraction: float) -> list[Mapping[str, Any]]:
  """The last `fraction` of the records (at least one)."""
  return list(records[-max(1, round(fraction * len(records))) :])


# ----------------------------------------------------------------------------
# eos-iris: Figures 3.13 and A.8.
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class IrisSettings:
  """The eos-iris reproduction.

  Attributes:
    widths: the MLP's hidden widths.
    learning_rate: h.
    steps, log_period: training steps and the steps between evaluations.
    krylov_depth: the depth of the trainer's warm-started Lanczos.
    window: the share of the last evaluations over which λ_0 is compared with 2/h.
    flow_steps: gradient-descent iterations from the final parameters at which the flows are compared.
    euler_dt: the Euler step of the flows over each time h.
    pf_depth: the Krylov depth of the PF's field.
    seed: the run's seed.
  """

  widths: tuple[int, ...]
  learning_rate: float
  steps: int
  log_period: int
  krylov_depth: int
  window: float
  flow_steps: int
  euler_dt: float
  pf_depth: int
  seed: int = 0


IRIS_FULL = IrisSettings(
  widths=(10, 10, 10, 10),
  learning_rate=0.18,
  steps=1300,
  log_period=5,
  krylov_depth=10,
  window=0.25,
  flow_steps=60,
  euler_dt=0.18 / 200,
  pf_depth=30,
)
IRIS_QUICK = IrisSettings(
  widths=(4, 4), learning_rate=0.18, steps=20, log_period=10, krylov_depth=4, window=0.5, flow_steps=2,
  euler_dt=0.18 / 4, pf_depth=6,
)  # fmt: skip


def iris_config(out: Path | str, settings: IrisSettings) -> supervised.FitConfig:
  """The gradient-descent run on Iris with the edge-of-stability diagnostics."""
  return common.fit_config(
    out,
    'iris',
    **_BASE,
    **{
      'seed': settings.seed,
      'steps': settings.steps,
      'log_period': settings.log_period,
      'data.name': 'iris',
      'model.widths': settings.widths,
      'optimizer.learning_rate': settings.learning_rate,
      'metrics.eos_krylov_depth': settings.krylov_depth,
    },
  )


def local_errors(trained: Trained, settings: IrisSettings) -> dict[str, np.ndarray]:
  """Figure 3.13's errors and Figure A.8's spectra along `flow_steps` GD iterations from the run's final parameters.

  In float64: θ_0 = the final parameters, θ_n = θ_{n−1} − h∇E(θ_{n−1}); for each flow, θ_flow(h; θ_{n−1}) by Euler
  steps of `euler_dt`. Returns arrays: 'gd_loss' (N + 1,), 'eigenvalues' (N + 1, D) ascending (dense Hessian),
  and per flow '<flow>/error' ‖θ_n − θ_flow(h; θ_{n−1})‖ and '<flow>/loss_error' Re E(θ_flow(h; θ_{n−1})) − E(θ_n)
  and '<flow>/loss' Re E(θ_flow(h; θ_{n−1})), each (N,).
  """
  h = settings.learning_rate
  with jax.enable_x64(True):
    loss = flow_loss(trained)
    start = _cast(trained.params, jnp.float64)
    holomorphic.check_holomorphic(loss, holomorphic.complexify(start))
    iterates = jax.jit(lambda p: integrate.gd(loss, p, h, settings.flow_steps))(start)
    batched_loss = jax.jit(jax.vmap(loss))
    gd_loss = batched_loss(iterates)
    spectra = jax.jit(jax.vmap(lambda p: jnp.linalg.eigvalsh(eigen.hessian_matrix(loss, p))))(iterates)
    out = {'gd_loss': np.asarray(gd_loss), 'eigenvalues': np.asarray(spectra)}
    flows = {
      'ngf': fields.ngf(loss, h),
      'igr': fields.igr(loss, h),
      'pf': fields.spectral(loss, h, alpha_pf_continued, method='lanczos', krylov_depth=settings.pf_depth),
    }
    following = jax.tree.map(lambda x: x[1:], iterates)
    for name, field in flows.items():
      ends = integrate.one_step_flows(field, iterates, h, method='euler', dt=settings.euler_dt, holomorphic=True)
      predicted = np.real(np.asarray(batched_loss(holomorphic.complexify(ends))))
      out[f'{name}/error'] = np.asarray(_distances(ends, following))
      out[f'{name}/loss'] = predicted
      out[f'{name}/loss_error'] = predicted - out['gd_loss'][1:]
  return out


def iris_numbers(
  config: supervised.FitConfig, arrays: Mapping[str, np.ndarray], settings: IrisSettings
) -> dict[str, Any]:
  """λ_0 against 2/h over the run (its `metrics.jsonl`), and the flows' errors and the spectra (`local_errors`)."""
  records = common.evals(config)
  window = _window(records, settings.window)
  two_over_h = 2 / settings.learning_rate
  lam = np.asarray([r['lambda_0'] for r in window])
  dense_final = float(arrays['eigenvalues'][0, -1])
  errors = {name: arrays[f'{name}/error'] for name in FLOW_NAMES}
  stacked = np.stack([errors[name] for name in FLOW_NAMES])
  gd_up = np.diff(arrays['gd_loss']) > 0  # the GD step from θ_{n−1} increased the loss
  before = arrays['gd_loss'][:-1]
  eigenvalues = arrays['eigenvalues']
  negative_mass = np.sum(np.maximum(-eigenvalues, 0), axis=1) / np.sum(np.abs(eigenvalues), axis=1)  # Σ|λ<0| / Σ|λ|
  flows = {}
  for i, name in enumerate(FLOW_NAMES):
    predicted_up = arrays[f'{name}/loss'] > before
    flows[name] = {
      'median_error': float(np.median(errors[name])),
      'mean_error': float(np.mean(errors[name])),
      'smallest_error_fraction': float(np.mean(np.argmin(stacked, axis=0) == i)),
      'median_abs_loss_error': float(np.median(np.abs(arrays[f'{name}/loss_error']))),
      'predicts_increase_where_gd_increases': float(predicted_up[gd_up].mean()) if gd_up.any() else float('nan'),
    }
  return {
    'two_over_h': two_over_h,
    'lambda_0_initial': float(records[0]['lambda_0']),
    'lambda_0_max': float(max(r['lambda_0'] for r in records)),
    'lambda_0_window_median': float(np.median(lam)),
    'lambda_0_window_ratio': float(np.median(lam) / two_over_h),
    'window_steps': [int(window[0]['step']), int(window[-1]['step'])],
    'lambda_0_final_run': float(records[-1]['lambda_0']),
    'lambda_0_final_dense': dense_final,
    'final_train_loss': float(records[-1]['train_loss']),
    'final_train_accuracy': float(records[-1]['train_accuracy']),
    'loss_vs_sc0': increases_with_positive_sc0(records[1:]),
    'flows': flows,
    'flow_window': {
      'iterations': int(settings.flow_steps),
      'gd_loss_increases': int(gd_up.sum()),
      'lambda_0_median': float(np.median(eigenvalues[:, -1])),
      'above_two_over_h_fraction': float(np.mean(eigenvalues[:, -1] > two_over_h)),
    },
    'spectrum': {
      'parameters': int(eigenvalues.shape[1]),
      'negative_fraction': float(np.mean(eigenvalues < 0)),  # counts the many eigenvalues at rounding level
      'significant_negative_fraction': float(np.mean(eigenvalues < -1e-3 * eigenvalues[:, -1:])),
      'negative_mass_fraction': float(np.mean(negative_mass)),
      'negative_mass_fraction_max': float(np.max(negative_mass)),
      'min_over_max': float(np.min(eigenvalues[:, 0] / eigenvalues[:, -1])),
    },
  }


def _iris_figure(config: supervised.FitConfig, arrays: Mapping[str, np.ndarray], numbers: Mapping[str, Any]) -> Any:
  fig = Figure(figsize=(16, 8), layout='constrained')
  (ax_lam, ax_gu, ax_sc), (ax_err, ax_loss, ax_spec) = fig.subplots(2, 3)
  records = common.evals(config)
  steps = [r['step'] for r in records]
  ax_lam.plot(steps, [r['lambda_0'] for r in records], color='C0', label='λ_0 (warm-started Lanczos)')
  ax_lam.axhline(numbers['two_over_h'], color='k', ls='--', label='2/h')
  twin = ax_lam.twinx()
  twin.plot(steps, [r['train_loss'] for r in records], color='C3', lw=0.8, label='train loss')
  twin.set_yscale('log')
  twin.set_ylabel('train loss', color='C3')
  ax_lam.set(xlabel='step', ylabel='λ_0', title='(a) λ_0 rises to 2/h (edge of stability)')
  ax_lam.legend(loc='upper left', fontsize=8)
  _projection_panel(ax_gu, records)
  _sc0_panel(ax_sc, records)
  n = np.arange(1, len(arrays['gd_loss']))
  for name in FLOW_NAMES:
    ax_err.plot(n, arrays[f'{name}/error'], marker='o', ms=3, label=FLOW_LABELS[name])
    ax_loss.plot(n, arrays[f'{name}/loss_error'], marker='o', ms=3, label=FLOW_LABELS[name])
  ax_err.set_yscale('log')
  ax_err.set(
    xlabel=f'GD iteration n after step {config.steps}',
    ylabel='‖θ_n − θ(h; θ_{n−1})‖',
    title='(d) local error (Fig 3.13a)',
  )
  ax_err.legend(fontsize=8)
  ax_loss.axhline(0, color='k', lw=0.6)
  ax_loss.set_yscale('symlog', linthresh=1e-6)
  ax_loss.set(xlabel='GD iteration n', ylabel='Re E(θ(h; θ_{n−1})) − E(θ_n)', title='(e) loss error (Fig 3.13b)')
  ax_loss.legend(fontsize=8)
  eigenvalues = arrays['eigenvalues']
  it = np.repeat(np.arange(eigenvalues.shape[0]), eigenvalues.shape[1])
  ax_spec.scatter(it, eigenvalues.ravel(), s=2, color='C0', alpha=0.4)
  ax_spec.axhline(numbers['two_over_h'], color='k', ls='--', lw=0.8, label='2/h')
  ax_spec.set_yscale('symlog', linthresh=1e-3)
  ax_spec.set(xlabel='GD iteration n', ylabel='Hessian eigenvalues', title='(f) the spectrum along GD (Fig A.8)')
  ax_spec.legend(fontsize=8)
  fig.suptitle(
    f'Edge of stability on Iris: tanh MLP {config.model.widths}, full-batch GD, h = {config.optimizer.learning_rate:g} '
    '(small-scale proxy)'
  )
  return fig


def _projection_panel(ax: Any, records: Sequence[Mapping[str, Any]]) -> None:
  steps = [r['step'] for r in records]
  ax.plot(steps, [r['next_g_u0'] for r in records], color='k', lw=1.2, label='measured g_{t+1}ᵀu_0')
  for name, ls in (('pf', '--'), ('ngf', ':'), ('igr', '-.')):
    ax.plot(steps, [r[f'next_g_u0_{name}'] for r in records], ls=ls, label=f'{FLOW_LABELS[name]} prediction')
  ax.set_yscale('symlog', linthresh=1e-6)
  ax.set(xlabel='step', ylabel='next gᵀu_0', title='(b) next gᵀu_0: measured and predicted (Rem 3.4.2-3.4.4)')
  ax.legend(fontsize=7)


def _sc0_panel(ax: Any, records: Sequence[Mapping[str, Any]]) -> None:
  steps = [r['step'] for r in records]
  ax.plot(steps, [r['sc0_real'] for r in records], color='C2', label='Re sc_0')
  ax.plot(steps, [r['sc0_imag'] for r in records], color='C4', lw=0.8, label='Im sc_0')
  up = [r['step'] for r in records if r['next_loss_change'] > 0]
  for s in up:
    ax.axvline(s, color='C3', alpha=0.15, lw=1)
  ax.axhline(0, color='k', lw=0.6)
  ax.set_yscale('symlog', linthresh=1e-6)
  ax.set(xlabel='step (red: the next step increases the loss)', ylabel='sc_0', title='(c) stability coefficient sc_0')
  ax.legend(fontsize=8)


def run_iris(out: Path | str, quick: bool = False) -> dict[str, Any]:
  """Trains the Iris run into `out/runs/`, compares the flows from its final parameters, writes `out/flows.npz`,
  `out/figure.png` and `out/result.json`."""
  out = Path(out)
  settings = IRIS_QUICK if quick else IRIS_FULL
  config = iris_config(out, settings)
  common.train([config])
  _write_arrays(out, local_errors(load_trained(config.out), settings))
  arrays = _read_arrays(out)
  numbers = iris_numbers(config, arrays, settings)
  return common.finish(out, EOS_IRIS, _iris_figure(config, arrays, numbers), numbers, settings, quick)


EOS_IRIS = common.Reproduction(
  name='eos-iris',
  figure='Figures 3.13, A.8',
  claim=(
    'Under full-batch GD λ_0 rises to about 2/h and stays there (the edge of stability); there the PF predicts the '
    'next GD iterate with a smaller local error than the NGF and the IGR flow, and captures the loss increases '
    'the NGF and IGR flow miss; the Hessian eigenvalues along the path are largely positive.'
  ),
  settings=(
    'Small-scale CPU proxy: UCI Iris (112 train / 38 test, standardised), a tanh MLP of 4 hidden layers of 10 '
    'units (413 parameters), cross-entropy, full-batch GD at h = 0.18 for 1300 steps (seed 0), the edge-of-'
    'stability diagnostics every 5 steps (Lanczos of depth 10, warm-started); then 60 more GD iterations from the '
    'final parameters in float64, at each of which the NGF, IGR flow and PF (continued branch, Arnoldi of depth '
    '30) run for time h by Euler steps of h/200, and the dense Hessian spectrum.'
  ),
  run=run_iris,
)


# ----------------------------------------------------------------------------
# eos-stability: Figures 3.15 and 3.17.
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StabilitySettings:
  """The eos-stability reproduction.

  Attributes:
    widths: the MLP's hidden widths.
    num_train: training examples kept (0: the whole training split).
    learning_rate: h.
    steps, log_period: training steps and the steps between evaluations.
    krylov_depth: the depth of the warm-started Lanczos (the trainer's and the flows').
    flow_time: how long the flip flow and the NGF run from the final parameters.
    euler_dt: their Euler step.
    refresh: Euler steps between refreshes of u_0 (and records of the loss and λ_0).
    seed: the run's seed.
  """

  widths: tuple[int, ...]
  num_train: int
  learning_rate: float
  steps: int
  log_period: int
  krylov_depth: int
  flow_time: float
  euler_dt: float
  refresh: int
  seed: int = 0


STABILITY_FULL = StabilitySettings(
  widths=(32, 32, 32),
  num_train=0,
  learning_rate=0.6,
  steps=90,
  log_period=1,
  krylov_depth=10,
  flow_time=0.5,
  euler_dt=1e-3,
  refresh=5,
)
STABILITY_QUICK = StabilitySettings(
  widths=(8,), num_train=100, learning_rate=0.5, steps=12, log_period=3, krylov_depth=4, flow_time=0.04,
  euler_dt=0.01, refresh=2,
)  # fmt: skip


def stability_config(out: Path | str, settings: StabilitySettings) -> supervised.FitConfig:
  """The gradient-descent run on the digits with the edge-of-stability diagnostics."""
  return common.fit_config(
    out,
    'digits',
    **_BASE,
    **{
      'seed': settings.seed,
      'steps': settings.steps,
      'log_period': settings.log_period,
      'data.name': 'digits',
      'data.num_train': settings.num_train,
      'model.widths': settings.widths,
      'optimizer.learning_rate': settings.learning_rate,
      'metrics.eos_krylov_depth': settings.krylov_depth,
    },
  )


def flip_and_ngf(trained: Trained, settings: StabilitySettings) -> dict[str, np.ndarray]:
  """Figure 3.17: the flip flow θ̇ = −g + 2(gᵀu_0)u_0 and the NGF θ̇ = −g from the run's final parameters.

  Both by Euler steps of `euler_dt` for `flow_time`, in one vmapped program (the flip's coefficient 0 or 1); every
  `refresh` steps u_0 (and λ_0) is refreshed by Lanczos of depth `krylov_depth` warm-started from the last u_0 (the
  first from a random vector, with three times the depth). Returns 'time' (K + 1,) and, per flow ('flip', 'ngf'),
  '<flow>/loss', '<flow>/lambda_0' and '<flow>/g_u0' at those times, (K + 1,).
  """
  loss = flow_loss(trained, jnp.float32)
  grad = jax.grad(loss)
  depth = settings.krylov_depth
  segments = max(1, round(settings.flow_time / (settings.euler_dt * settings.refresh)))
  dt = settings.euler_dt
  params = trained.params
  first = eigen.top_eigenpairs(loss, params, k=1, krylov_depth=min(3 * depth, _size(params)), key=jax.random.PRNGKey(0))
  u_start = jax.tree.map(lambda v: v[0], first.vectors)

  def measure(theta: Any, u: Any) -> tuple[Any, jax.Array, jax.Array]:
    pairs = eigen.top_eigenpairs(loss, theta, k=1, krylov_depth=min(depth, _size(theta)), init=u, g=grad(theta))
    u = jax.tree.map(lambda v, old: jnp.where(jnp.isfinite(pairs.values[0]), v[0], old), pairs.vectors, u)
    return u, pairs.values[0], products.tree_vdot(grad(theta), u)

  def flow(flip: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    def segment(carry, _):
      theta, u = carry
      u, lam, gu = measure(theta, u)
      record = (loss(theta), lam, gu)

      def euler(_, th):
        g = grad(th)
        coefficient = 2 * flip * products.tree_vdot(g, u)
        return jax.tree.map(lambda p, a, b: p - dt * (a - coefficient * b), th, g, u)

      return (jax.lax.fori_loop(0, settings.refresh, euler, theta), u), record

    (theta, u), records = jax.lax.scan(segment, (params, u_start), None, length=segments)
    u, lam, gu = measure(theta, u)
    last = (loss(theta), lam, gu)
    return tuple(jnp.concatenate([r, jnp.asarray(x)[None]]) for r, x in zip(records, last))

  losses, lambdas, projections = jax.jit(jax.vmap(flow))(jnp.asarray([1.0, 0.0]))
  out = {'time': np.arange(segments + 1) * settings.refresh * dt}
  for i, name in enumerate(('flip', 'ngf')):
    out[f'{name}/loss'] = np.asarray(losses[i])
    out[f'{name}/lambda_0'] = np.asarray(lambdas[i])
    out[f'{name}/g_u0'] = np.asarray(projections[i])
  return out


def _size(params: Any) -> int:
  return sum(int(np.size(x)) for x in jax.tree.leaves(params))


def stability_numbers(
  config: supervised.FitConfig, arrays: Mapping[str, np.ndarray], settings: StabilitySettings
) -> dict[str, Any]:
  """Loss increases against Re sc_0 over the run (its `metrics.jsonl`), and the flip flow against the NGF."""
  records = common.evals(config)
  two_over_h = 2 / settings.learning_rate
  flows = {}
  for name in ('flip', 'ngf'):
    loss, lam = arrays[f'{name}/loss'], arrays[f'{name}/lambda_0']
    flows[name] = {
      'loss_start': float(loss[0]),
      'loss_end': float(loss[-1]),
      'loss_max': float(loss.max()),
      'loss_change': float(loss[-1] - loss[0]),
      'lambda_0_start': float(lam[0]),
      'lambda_0_end': float(lam[-1]),
      'lambda_0_max': float(lam.max()),
      'lambda_0_change': float(lam[-1] - lam[0]),
      'lambda_0_late_median': float(np.median(lam[len(lam) // 2 :])),  # over the second half of the flow
    }
  lam = np.asarray([r['lambda_0'] for r in records])
  return {
    'two_over_h': two_over_h,
    'lambda_0_initial': float(lam[0]),
    'lambda_0_max': float(lam.max()),
    'lambda_0_final': float(lam[-1]),
    'above_two_over_h_fraction': float(np.mean(lam > two_over_h)),
    'final_train_loss': float(records[-1]['train_loss']),
    'final_test_accuracy': float(records[-1]['test_accuracy']),
    'loss_vs_sc0': increases_with_positive_sc0(records[1:]),
    'flows': flows,
    'flow_time': float(arrays['time'][-1]),
  }


def _stability_figure(
  config: supervised.FitConfig, arrays: Mapping[str, np.ndarray], numbers: Mapping[str, Any]
) -> Any:
  fig = Figure(figsize=(16, 8), layout='constrained')
  (ax_loss, ax_sc, ax_scatter), (ax_lam, ax_flow, ax_flow_lam) = fig.subplots(2, 3)
  records = common.evals(config)
  steps = [r['step'] for r in records]
  ax_loss.plot(steps, [r['train_loss'] for r in records], color='C3')
  for r in records:
    if r['next_loss_change'] > 0:
      ax_loss.axvline(r['step'], color='C3', alpha=0.15, lw=1)
  ax_loss.set_yscale('log')
  ax_loss.set(xlabel='step (shaded: the next step increases the loss)', ylabel='train loss', title='(a) loss')
  _sc0_panel(ax_sc, records)
  ax_sc.set_title('(b) sc_0 (Fig 3.15)')
  ax_scatter.scatter([r['sc0_real'] for r in records], [r['next_loss_change'] for r in records], s=6)
  ax_scatter.axhline(0, color='k', lw=0.6)
  ax_scatter.axvline(0, color='k', lw=0.6)
  ax_scatter.set_xscale('symlog', linthresh=1e-6)
  ax_scatter.set_yscale('symlog', linthresh=1e-6)
  share = numbers['loss_vs_sc0']['increases_with_positive_sc0']
  ax_scatter.set(
    xlabel='Re sc_0', ylabel='E(θ_{t+1}) − E(θ_t)', title=f'(c) loss increases have Re sc_0 > 0 ({100 * share:.0f}%)'
  )
  ax_lam.plot(steps, [r['lambda_0'] for r in records], label='λ_0')
  ax_lam.axhline(numbers['two_over_h'], color='k', ls='--', label='2/h')
  ax_lam.set(xlabel='step', ylabel='λ_0', title='(d) λ_0 during training')
  ax_lam.legend(fontsize=8)
  time = arrays['time']
  for name, label in (('flip', 'flip flow: −g + 2(gᵀu_0)u_0'), ('ngf', 'NGF: −g')):
    ax_flow.plot(time, arrays[f'{name}/loss'], label=label)
    ax_flow_lam.plot(time, arrays[f'{name}/lambda_0'], label=label)
  ax_flow.set_yscale('log')
  ax_flow.set(
    xlabel=f'flow time from step {config.steps}', ylabel='train loss', title='(e) loss along the flows (Fig 3.17a)'
  )
  ax_flow.legend(fontsize=8)
  ax_flow_lam.axhline(numbers['two_over_h'], color='k', ls='--', lw=0.8, label='2/h')
  ax_flow_lam.set(xlabel='flow time', ylabel='λ_0', title='(f) λ_0 along the flows (Fig 3.17b)')
  ax_flow_lam.legend(fontsize=8)
  fig.suptitle(
    f'Stability coefficients and one unstable direction: digits, tanh MLP {config.model.widths}, full-batch GD, '
    f'h = {config.optimizer.learning_rate:g} (small-scale proxy)'
  )
  return fig


def run_stability(out: Path | str, quick: bool = False) -> dict[str, Any]:
  """Trains the digits run into `out/runs/`, runs the flip flow and the NGF from its final parameters, writes
  `out/flows.npz`, `out/figure.png` and `out/result.json`."""
  out = Path(out)
  settings = STABILITY_QUICK if quick else STABILITY_FULL
  config = stability_config(out, settings)
  common.train([config])
  _write_arrays(out, flip_and_ngf(load_trained(config.out), settings))
  arrays = _read_arrays(out)
  numbers = stability_numbers(config, arrays, settings)
  return common.finish(out, EOS_STABILITY, _stability_figure(config, arrays, numbers), numbers, settings, quick)


EOS_STABILITY = common.Reproduction(
  name='eos-stability',
  figure='Figures 3.15, 3.17',
  claim=(
    'At the edge of stability the loss increases where Re sc_0 > 0 (sc_0 = α_PF(hλ_0)gᵀu_0); one eigendirection '
    'suffices for instability: from an edge-of-stability state, the flow that follows the NGF in every direction '
    'but u_0 and ascends along u_0 increases the loss and λ_0, while the NGF decreases the loss.'
  ),
  settings=(
    'Small-scale CPU proxy: the 8x8 digits (1347 train / 450 test), a tanh MLP (32, 32, 32), cross-entropy, full-batch '
    'GD at h = 0.6 for 90 steps (seed 0), the edge-of-stability diagnostics at every step (Lanczos of depth 10, '
    'warm-started); then from the final parameters (λ_0 > 2/h) the flip flow and the NGF by Euler steps of 1e-3 '
    'for time 0.5, u_0 refreshed every 5 steps.'
  ),
  run=run_stability,
)

REPRODUCTIONS = (EOS_IRIS, EOS_STABILITY)
