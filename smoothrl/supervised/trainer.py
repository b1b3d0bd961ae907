"""One trainer for supervised runs: gradient descent (full batch or minibatch), heavy ball, Adam and the DAL family.

A trainer is a handful of pure functions over a `TrainState` (DESIGN principle 1): `init(key, learning_rate)`,
`train(state, steps)` (a `lax.scan` over steps, one compiled call per chunk), `evaluate(state)` (the metrics of
thesis Chapters 3 and 8) and `observe(state)` (the same metrics and the state with what an evaluation carries to the
next one: the warm start of the edge-of-stability diagnostics). The learning rate is part of the state, so
`jax.vmap` over learning rate × seed turns a learning-rate sweep of a small model into one program.

Edge-of-stability diagnostics (`MetricsConfig.edge_of_stability`, thesis Sections 3.4-3.5). At each evaluation,
with g = ∇E and (λ_0, u_0) the top eigenpair of H = ∇²E of the full-batch training loss, signed so that gᵀu_0 ≥ 0,
and h the rate of the next step:

| metric | what it is |
|---|---|
| `lambda_0`, `lambda_0_residual` | λ_0 by Lanczos warm-started from the last evaluation's u_0; ‖Hu_0 − λ_0u_0‖ (one HVP) |
| `two_over_h` | 2/h: GD on a quadratic diverges along u_0 when λ_0 > 2/h (Remark 3.3.4) |
| `g_u0` | gᵀu_0 |
| `sc0_real`, `sc0_imag` | the stability coefficient sc_0 = α_PF(hλ_0)gᵀu_0 (Definition 3.3.4); Re sc_0 > 0 iff λ_0 > 2/h |
| `next_g_u0` | g(θ_{t+1})ᵀu_0 after the next optimiser step on the full batch, u_0 held fixed (measured) |
| `next_g_u0_pf` | the PF's prediction (1 − hλ_0)gᵀu_0 (Remark 3.4.2; exact for GD on a quadratic) |
| `next_g_u0_ngf`, `next_g_u0_igr` | the NGF's e^{−hλ_0}gᵀu_0 and the IGR flow's e^{−hλ_0−h²λ_0²/2}gᵀu_0 (3.4.3–3.4.4) |
| `next_loss_change` | E(θ_{t+1}) − E(θ_t) of that step (positive: the loss increases) |

u_0 lives in `TrainState.top_vector` (a pytree like the parameters; the empty tuple when the diagnostics are off, so
the state and its checkpoints are what they were without them), so it survives checkpoints and `jax.vmap`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from smoothrl import optimizers
from smoothrl.curvature import eigen, products
from smoothrl.flows import coefficients
from smoothrl.networks import smoothness
from smoothrl.supervised import losses, regularisers
from smoothrl.supervised.data import Dataset
from smoothrl.supervised.models import Model

OPTIMIZERS = ('sgd', 'momentum', 'adam', 'dal', 'dal-p', 'momentum-dal')
CURVATURES = ('exact', 'fd')
DAL_OPTIMIZERS = ('dal', 'dal-p', 'momentum-dal')
EVAL_BATCH = 2048  # examples per pass when evaluating a whole split, to bound memory


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
  """The update rule (thesis Chapter 2 and Section 3.7).

  Attributes:
    name: 'sgd' (θ ← θ − h g: gradient descent on the full batch, SGD on minibatches), 'momentum' (heavy ball,
      Eq 2.16, β = `momentum`), 'adam' (Eqs 2.20–2.22, ε placed by `eps_placement`), 'dal' (h = 2/‖Hĝ‖, Eq 3.20),
      'dal-p' (h = 2/‖Hĝ‖^p, Eq 3.21) or 'momentum-dal' (Eqs 3.22–3.23, β = `momentum`).
    learning_rate: h of the fixed-rate rules; the DAL rules set their own rate and ignore it.
    momentum: β of heavy ball and momentum DAL.
    p: the power of DAL-p (and of momentum DAL).
    max_rate: the cap on a DAL rate (5 in the thesis).
    constant: the numerator of a DAL rate; 0 takes the printed one (2 for DAL and DAL-p, 1/2 for momentum DAL).
    curvature: how DAL gets Hg: 'exact' (one linearisation gives g and Hg) or 'fd' (the finite difference with
      ε = 0.01/‖g‖ of Appendix A.3).
    adam_b1, adam_b2, adam_eps, eps_placement: Adam's β₁, β₂, ε and where ε goes ('inside' the root: the thesis).
  """

  name: str = 'sgd'
  learning_rate: float = 0.1
  momentum: float = 0.9
  p: float = 0.5
  max_rate: float = 5.0
  constant: float = 0.0
  curvature: str = 'exact'
  adam_b1: float = 0.9
  adam_b2: float = 0.999
  adam_eps: float = 1e-8
  eps_placement: str = 'inside'


@dataclasses.dataclass(frozen=True)
class MetricsConfig:
  """What `evaluate` measures besides losses and accuracies.

  Attributes:
    gc: Geometric Complexity (Definition 8.2.1) on the first `gc_points` training examples.
    gc_points: examples GC is averaged over.
    top_eigenvalue: λ_0 of the training loss' Hessian by Lanczos on Hessian-vector products.
    lanczos_depth: Krylov depth of that Lanczos run.
    ngf_drift: the per-iteration drift of a gradient-descent step of the current rate h, measured:
      ‖θ_NGF(h; θ) − (θ − h∇E(θ))‖, the negative gradient flow θ̇ = −∇E run for time h from θ by `ngf_substeps`
      Euler steps (Theorem 3.7.1 estimates it by (h²/2)‖Hg‖, the `drift` metric).
    ngf_substeps: Euler steps of that flow.
    edge_of_stability: the edge-of-stability diagnostics of the module docstring (λ_0 by warm-started Lanczos, 2/h,
      gᵀu_0, sc_0, and the PF, NGF and IGR predictions of the next gᵀu_0 beside the measured one); they replace
      `top_eigenvalue`'s cold-started λ_0.
    eos_krylov_depth: the Krylov depth of the warm-started Lanczos run (at most the number of parameters).
  """

  gc: bool = True
  gc_points: int = 256
  top_eigenvalue: bool = False
  lanczos_depth: int = 20
  ngf_drift: bool = False
  ngf_substeps: int = 100
  edge_of_stability: bool = False
  eos_krylov_depth: int = 10


class TrainState(NamedTuple):
  """Everything a run carries from step to step; a pytree of arrays (checkpointable, vmappable).

  `top_vector` is the unit vector u_0 the edge-of-stability diagnostics warm-start Lanczos from (a pytree like
  `params`; at `init` a normal draw), or () when they are off.
  """

  params: Any
  model_state: Any
  opt_state: Any
  key: jax.Array
  learning_rate: jax.Array
  step: jax.Array
  top_vector: Any = ()


class Trainer(NamedTuple):
  """`init(key, learning_rate) -> TrainState`; `train(state, steps) -> TrainState` (`steps` static);
  `evaluate(state) -> {name: scalar}`; `observe(state) -> ({name: scalar}, state)`, the metrics of `evaluate` and
  the state carrying this evaluation's u_0 (unchanged without the edge-of-stability diagnostics). All four are pure
  and unjitted: jit and vmap them as needed."""

  init: Callable[[jax.Array, jax.Array], TrainState]
  train: Callable[[TrainState, int], TrainState]
  evaluate: Callable[[TrainState], dict[str, jax.Array]]
  observe: Callable[[TrainState], tuple[dict[str, jax.Array], TrainState]]


def validate(config: OptimizerConfig) -> list[str]:
  """The problems of an optimiser config, as messages."""
  problems = []
  if config.name not in OPTIMIZERS:
    problems.append(f'unknown optimizer {config.name!r}; valid: {", ".join(OPTIMIZERS)}')
  if not config.learning_rate > 0:
    problems.append(f'optimizer.learning_rate must be positive, got {config.learning_rate}')
  if not 0 <= config.momentum < 1:
    problems.append(f'optimizer.momentum must be in [0, 1), got {config.momentum}')
  if not config.p > 0:
    problems.append(f'optimizer.p must be positive, got {config.p}')
  if not config.max_rate > 0:
    problems.append(f'optimizer.max_rate must be positive, got {config.max_rate}')
  if not config.constant >= 0:
    problems.append(f'optimizer.constant must be non-negative (0: the printed one), got {config.constant}')
  if config.curvature not in CURVATURES:
    problems.append(f'unknown optimizer.curvature {config.curvature!r}; valid: {", ".join(CURVATURES)}')
  if not (0 <= config.adam_b1 < 1 and 0 <= config.adam_b2 < 1):
    problems.append(f'Adam betas must be in [0, 1), got {config.adam_b1}, {config.adam_b2}')
  if not config.adam_eps >= 0:
    problems.append(f'optimizer.adam_eps must be non-negative, got {config.adam_eps}')
  if config.eps_placement not in optimizers.EPS_PLACEMENTS:
    problems.append(
      f'unknown optimizer.eps_placement {config.eps_placement!r}; valid: {", ".join(optimizers.EPS_PLACEMENTS)}'
    )
  return problems


def make_optimizer(config: OptimizerConfig, learning_rate: jax.Array | float) -> optax.GradientTransformationExtraArgs:
  """The update rule of `config`; `learning_rate` may be traced (a member of a vmapped sweep)."""
  c = config
  if c.name == 'sgd':
    tx = optax.sgd(learning_rate)
  elif c.name == 'momentum':
    tx = optax.sgd(learning_rate, momentum=c.momentum)  # v ← βv + g, θ ← θ − hv: Eq 2.16 with v scaled by h
  elif c.name == 'adam':
    tx = optimizers.adam(learning_rate, c.adam_b1, c.adam_b2, c.adam_eps, eps_placement=c.eps_placement)
  elif c.name in ('dal', 'dal-p'):
    p = 1.0 if c.name == 'dal' else c.p
    tx = optimizers.dal(p=p, max_rate=c.max_rate, constant=c.constant or 2.0, curvature=c.curvature)
  elif c.name == 'momentum-dal':
    tx = optimizers.momentum_dal(
      beta=c.momentum, constant=c.constant or 0.5, p=1.0, max_rate=c.max_rate, curvature=c.curvature
    )
  else:
    raise ValueError(f'unknown optimizer {c.name!r}; valid: {", ".join(OPTIMIZERS)}')
  return optax.with_extra_args_support(tx)


def _rate(config: OptimizerConfig, opt_state: Any, learning_rate: jax.Array) -> jax.Array:
  """The rate of the last step: the DAL state's, or the fixed learning rate."""
  if config.name in DAL_OPTIMIZERS:
    return optax.tree_utils.tree_get(opt_state, 'rate')
  return learning_rate


def make_trainer(
  model: Model,
  dataset: Dataset,
  optimizer: OptimizerConfig,
  regulariser: regularisers.RegulariserConfig | None = None,
  batch_size: int = 0,
  metrics: MetricsConfig = MetricsConfig(),
) -> Trainer:
  """The trainer of `model` on `dataset` (held on the device as constants shared by every vmapped member).

  `batch_size` 0 trains on the full batch; otherwise each step takes the next `batch_size` examples of a
  permutation of the training set drawn anew every epoch.
  """
  regulariser = regulariser or regularisers.RegulariserConfig()
  x_train, y_train = jnp.asarray(dataset.x_train), jnp.asarray(dataset.y_train)
  x_test, y_test = jnp.asarray(dataset.x_test), jnp.asarray(dataset.y_test)
  n = x_train.shape[0]
  batch = n if batch_size in (0, None) or batch_size >= n else batch_size
  steps_per_epoch = n // batch
  data_loss_fn = losses.loss_for(dataset.task)
  classification = dataset.task == 'classification'
  dal = optimizer.name in DAL_OPTIMIZERS
  num_params = sum(
    int(np.prod(s.shape)) for s in jax.tree.leaves(jax.eval_shape(model.init, jax.random.PRNGKey(0), x_train[:1])[0])
  )
  eos_depth = min(metrics.eos_krylov_depth, num_params)

  def objective(params, model_state, x, y, key):
    """The regularised training loss on a batch, with the model state the forward pass leaves (aux)."""
    _, new_state = model.apply(params, model_state, x, True)
    data_loss = lambda p, xb, yb: data_loss_fn(model.apply(p, model_state, xb, True)[0], yb)
    f = lambda p, xb: model.apply(p, model_state, xb, False)[0]
    total, _ = regularisers.regularised_loss(regulariser, data_loss, f, model.specs)(params, x, y, key)
    return total, new_state

  def init(key: jax.Array, learning_rate: jax.Array) -> TrainState:
    init_key, run_key = jax.random.split(key)
    params, model_state = model.init(init_key, x_train[:1])
    learning_rate = jnp.asarray(learning_rate, jnp.float32)
    opt_state = make_optimizer(optimizer, learning_rate).init(params)
    top_vector = _random_unit(jax.random.fold_in(run_key, 3), params) if metrics.edge_of_stability else ()
    return TrainState(params, model_state, opt_state, run_key, learning_rate, jnp.zeros((), jnp.int32), top_vector)

  def minibatch(key: jax.Array, step: jax.Array) -> tuple[jax.Array, jax.Array]:
    if batch == n:
      return x_train, y_train
    epoch, position = step // steps_per_epoch, step % steps_per_epoch
    order = jax.random.permutation(jax.random.fold_in(key, epoch), n)
    rows = jax.lax.dynamic_slice_in_dim(order, position * batch, batch)
    return x_train[rows], y_train[rows]

  def step(state: TrainState, _) -> tuple[TrainState, None]:
    x, y = minibatch(jax.random.fold_in(state.key, 0), state.step)
    return update(state, x, y), None

  def update(state: TrainState, x: jax.Array, y: jax.Array) -> TrainState:
    """One optimiser step on the batch (x, y)."""
    reg_key = jax.random.fold_in(jax.random.fold_in(state.key, 1), state.step)
    tx = make_optimizer(optimizer, state.learning_rate)
    loss = lambda p: objective(p, state.model_state, x, y, reg_key)
    if dal and optimizer.curvature == 'exact':
      (_, model_state), g, hg = products.value_grad_and_hvp(loss, state.params, has_aux=True)
      updates, opt_state = tx.update(g, state.opt_state, state.params, hvp=hg)
    else:
      (_, model_state), g = jax.value_and_grad(loss, has_aux=True)(state.params)
      extra = {'obj_fn': lambda p: loss(p)[0]} if dal else {}
      updates, opt_state = tx.update(g, state.opt_state, state.params, **extra)
    params = optax.apply_updates(state.params, updates)
    return state._replace(params=params, model_state=model_state, opt_state=opt_state, step=state.step + 1)

  def train(state: TrainState, steps: int) -> TrainState:
    return jax.lax.scan(step, state, length=steps)[0]

  def split_metrics(params, model_state, x, y) -> dict[str, jax.Array]:
    """Mean loss (and accuracy) over a whole split, in passes of at most EVAL_BATCH examples."""
    size = min(EVAL_BATCH, x.shape[0])
    whole = x.shape[0] // size * size

    def chunk(xy):
      xb, yb = xy
      out = model.apply(params, model_state, xb, False)[0]
      acc = losses.accuracy(out, yb) if classification else jnp.zeros(())
      return data_loss_fn(out, yb) * xb.shape[0], acc * xb.shape[0]

    rows = lambda a: a[:whole].reshape(-1, size, *a.shape[1:])
    sums = jax.lax.map(chunk, (rows(x), rows(y)))
    totals = [jnp.sum(s) for s in sums]
    if whole < x.shape[0]:
      totals = [t + r for t, r in zip(totals, chunk((x[whole:], y[whole:])))]
    loss, acc = (t / x.shape[0] for t in totals)
    return {'loss': loss, 'accuracy': acc} if classification else {'loss': loss}

  def evaluate(state: TrainState) -> dict[str, jax.Array]:
    return observe(state)[0]

  def observe(state: TrainState) -> tuple[dict[str, jax.Array], TrainState]:
    params, model_state = state.params, state.model_state
    out = {f'train_{k}': v for k, v in split_metrics(params, model_state, x_train, y_train).items()}
    out |= {f'test_{k}': v for k, v in split_metrics(params, model_state, x_test, y_test).items()}
    full_loss = lambda p: data_loss_fn(model.apply(p, model_state, x_train, False)[0], y_train)
    g, hg = products.grad_and_hvp(full_loss, params)
    grad_norm, hg_norm = products.tree_norm(g), products.tree_norm(hg)
    rate = _rate(optimizer, state.opt_state, state.learning_rate)
    out |= {
      'grad_norm': grad_norm,
      'hg_norm': hg_norm,
      'rate': rate,
      'drift': rate**2 / 2 * hg_norm,  # the per-iteration drift (h²/2)‖Hg‖ (Theorem 3.7.1)
      'taylor_rate': grad_norm**2 / products.tree_vdot(g, hg),  # 1/(ĝᵀHĝ)
    }
    if dal:
      out['dal_rate'] = rate
    if metrics.gc:
      f = lambda xb: model.apply(params, model_state, xb, False)[0]
      out['gc'] = smoothness.geometric_complexity(f, x_train[: metrics.gc_points])
    if metrics.ngf_drift:
      # The flow's displacement δ from θ, integrated as such (δ ← δ − dt∇E(θ + δ)) so that rounding θ + δ does not
      # swamp a drift far smaller than θ; the drift is ‖δ − (−hg)‖.
      dt = rate / metrics.ngf_substeps
      shifted = lambda d: jax.tree.map(jnp.add, params, d)
      euler = lambda d, _: (jax.tree.map(lambda a, b: a - dt * b, d, jax.grad(full_loss)(shifted(d))), None)
      delta = jax.lax.scan(euler, jax.tree.map(jnp.zeros_like, params), length=metrics.ngf_substeps)[0]
      out['ngf_drift'] = products.tree_norm(jax.tree.map(lambda d, b: d + rate * b, delta, g))
    if metrics.edge_of_stability:
      eos, top_vector = edge_of_stability(state, full_loss, g)
      out |= eos
      state = state._replace(top_vector=top_vector)
    elif metrics.top_eigenvalue:
      pairs = eigen.top_eigenpairs(
        full_loss, params, k=1, krylov_depth=metrics.lanczos_depth, key=jax.random.fold_in(state.key, 2)
      )
      out['lambda_0'] = pairs.values[0]
    return out, state

  def edge_of_stability(
    state: TrainState, full_loss: Callable[[Any], jax.Array], g: Any
  ) -> tuple[dict[str, jax.Array], Any]:
    """The diagnostics of the module docstring at `state` (g = ∇E there), and the new u_0."""
    pairs = eigen.top_eigenpairs(full_loss, state.params, k=1, krylov_depth=eos_depth, init=state.top_vector, g=g)
    found = jnp.isfinite(pairs.values[0])
    lambda_0 = pairs.values[0]
    u0 = jax.tree.map(lambda v, old: jnp.where(found, v[0], old), pairs.vectors, state.top_vector)
    after = update(state, x_train, y_train)  # the next step, on the full batch; the state itself is kept
    h = _rate(optimizer, after.opt_state, state.learning_rate)
    next_loss = lambda p: data_loss_fn(model.apply(p, after.model_state, x_train, False)[0], y_train)
    x = products.tree_vdot(g, u0)  # real: gᵀu_0 ≥ 0 by `align_signs`
    next_x = products.tree_vdot(jax.grad(next_loss)(after.params), u0)
    z = h * lambda_0
    sc0 = coefficients.alpha_pf(z.astype(jnp.result_type(z, jnp.complex64))) * x  # the complex branch beyond hλ_0 = 1
    return {
      'lambda_0': lambda_0,
      'lambda_0_residual': products.tree_norm(
        jax.tree.map(lambda a, b: a - lambda_0 * b, products.hvp(full_loss, state.params, u0), u0)
      ),
      'two_over_h': 2 / h,
      'g_u0': x,
      'sc0_real': jnp.real(sc0),
      'sc0_imag': jnp.imag(sc0),
      'next_g_u0': next_x,
      'next_g_u0_pf': (1 - z) * x,  # Remark 3.4.2: one GD step on a quadratic
      'next_g_u0_ngf': jnp.exp(-z) * x,  # Remark 3.4.3
      'next_g_u0_igr': jnp.exp(-z - z**2 / 2) * x,  # Remark 3.4.4
      'next_loss_change': next_loss(after.params) - full_loss(state.params),
    }, u0

  return Trainer(init, train, evaluate, observe)


def _random_unit(key: jax.Array, params: Any) -> Any:
  """A unit vector like `params` (one normal draw of the flattened parameters, normalised): the first, cold start
  of Lanczos."""
  flat, unravel = ravel_pytree(params)
  draw = jax.random.normal(key, flat.shape, flat.dtype)
  return unravel(draw / jnp.linalg.norm(draw))


def member_metrics(metrics: Mapping[str, jax.Array], i: int) -> dict[str, float]:
  """Member `i`'s metrics of a vmapped `evaluate`, as floats."""
  return {k: float(v[i]) for k, v in metrics.items()}
