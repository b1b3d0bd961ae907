"""Integrating the flows of Chapter 3 and measuring how far they are from gradient descent.

A vector field is `field(params, *args) -> θ̇`, a pytree like params (`smoothrl.flows.fields` builds them; any
callable of that form works). Two integrators give a `Trajectory` of the flow from θ(0) = params:

- `integrate`: an explicit adaptive Runge–Kutta solver of diffrax (Tsit5 by default; Dopri5, Dopri8) under a PID
  step-size controller. A complex state (complex params, or a field that turns real params complex, as the
  principal flow does beyond hλ = 1) is integrated as a real pytree of (real, imaginary) parts and recombined,
  since diffrax's complex support is incomplete; its loss must be holomorphic (checked, see below).
- `euler`: the thesis' explicit Euler with a small fixed step (5e-5, Appendix A.3) in `lax` loops.

Against gradient descent θ_n = θ_{n−1} − h∇E(θ_{n−1}) (Eq 3.1, `gd`):

- `flow_iterates`: θ(nh) for n = 0..N from one start;
- `one_step_flows`: θ_flow(h; θ_{n−1}), the flow for time h from each GD iterate (vmapped over n);
- `per_iteration_error`: ‖θ_flow(h; θ_{n−1}) − θ_n‖ (Figures 3.4, 3.13a);
- `global_error`: ‖θ_flow(nh; θ_0) − θ_n‖ (Figures 3.9, A.7);
- `loss_error`: Re E(θ_flow(h; θ_{n−1})) − E(θ_n) (Figure 3.13b).

Complex states and holomorphy. Once θ is complex the field differentiates E at complex points, which means
something only when E is holomorphic there. The field does not carry its loss, so a complex state needs `loss=`
(the E the field is built on): it is checked with `holomorphic.check_holomorphic` at the complexified start,
which raises `NotHolomorphicError` naming the cause. The check runs eagerly, on concrete params and args; under
`jit` or `vmap` check once outside and pass `holomorphic=True` (the error measures here do that themselves).

Compilation. `integrate` compiles one diffrax solve per field object (and shapes, static options), `euler` and
`gd` one program per field or loss: reuse one field (e.g. `fields.igr(loss, h)`) across calls; a fresh lambda per
call compiles anew each time. Everything runs inside the caller's `jit` and `vmap` too (h, t1, dt, saveat, rtol
and atol may be traced), e.g. to batch over learning rates; vmapped adaptive solves step in lockstep until the last
one is done.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from smoothrl.flows import holomorphic as holomorphic_lib

Params = Any
VectorField = Callable[..., Params]
Loss = Callable[..., jax.Array]

EULER_DT = 5e-5  # the thesis' Euler step (Appendix A.3)
SOLVERS: dict[str, Callable[[], diffrax.AbstractSolver]] = {
  'tsit5': diffrax.Tsit5,
  'dopri5': diffrax.Dopri5,
  'dopri8': diffrax.Dopri8,
}
METHODS = ('diffrax', 'euler')
MAX_STEPS = 16_384


class Trajectory(NamedTuple):
  """A flow sampled at chosen times.

  Attributes:
    ts: (T,) the times.
    ys: θ at those times, a pytree like params with a leading axis T (complex for a complex state).
    num_steps: the solver steps taken: for `integrate` accepted plus rejected steps (an explicit Runge–Kutta
      step of s stages costs s − 1 field evaluations with first-same-as-last reuse: 6 for Tsit5 and Dopri5, 12
      for Dopri8, plus 1–2 at the start); for `euler` the Euler steps, one field evaluation each.
  """

  ts: jax.Array
  ys: Params
  num_steps: jax.Array


# ---------------------------------------------------------------------------------------------------------------
# Complex states and their checks


def _is_traced(tree: Any) -> bool:
  return any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(tree))


def _check_params(params: Params) -> None:
  leaves = jax.tree.leaves(params)
  if not leaves:
    raise ValueError('params must hold at least one array leaf.')
  for x in leaves:
    dtype = jnp.result_type(x)
    if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.complexfloating)):
      raise ValueError(f'every leaf of params must be real or complex floating point, got dtype {dtype}.')


def _state_is_complex(field: VectorField, params: Params, args: tuple[Any, ...]) -> bool:
  """Complex params, or a field whose output at params is complex (the PF beyond hλ = 1 from a real start)."""
  if any(jnp.iscomplexobj(x) for x in jax.tree.leaves(params)):
    return True
  out = jax.eval_shape(field, params, *args)
  if jax.tree.structure(out) != jax.tree.structure(params):
    raise ValueError(
      f'the field must return a pytree like params, got {jax.tree.structure(out)} for {jax.tree.structure(params)}.'
    )
  return any(jnp.issubdtype(x.dtype, jnp.complexfloating) for x in jax.tree.leaves(out))


def _check_holomorphic(loss: Loss | None, params: Params, args: tuple[Any, ...], holomorphic: bool) -> None:
  """Refuses a complex state whose loss is not known to be holomorphic at params (see the module docstring)."""
  if holomorphic:
    return
  if loss is None:
    raise ValueError(
      'the flow state is complex (complex params, or a field with complex values such as the principal flow '
      'beyond hλ = 1): pass loss=, the loss the field is built on, so that it can be checked to be holomorphic '
      '(or holomorphic=True once it has been checked).'
    )
  if _is_traced((params, args)):
    raise ValueError(
      'the holomorphy of the loss is checked on concrete params and args, got traced ones (under jit or vmap): '
      'check it once outside with holomorphic.check_holomorphic and pass holomorphic=True.'
    )
  holomorphic_lib.check_holomorphic(loss, params, *args)


def _prepare(
  field: VectorField, params: Params, args: tuple[Any, ...], loss: Loss | None, holomorphic: bool
) -> tuple[Params, bool]:
  """(the initial state, whether it is complex), with a complex state's loss checked."""
  _check_params(params)
  params = jax.tree.map(jnp.asarray, params)
  if not _state_is_complex(field, params, args):
    return params, False
  params = holomorphic_lib.complexify(params)
  _check_holomorphic(loss, params, args, holomorphic)
  return params, True


def _split(tree: Params) -> Params:
  """Each complex leaf x as the real array stack([Re x, Im x], axis=-1) (a trailing axis of 2)."""
  return jax.tree.map(lambda x: jnp.stack([jnp.real(x), jnp.imag(x)], axis=-1), tree)


def _join(tree: Params) -> Params:
  """The inverse of `_split`, also for saved states (a leading time axis)."""
  return jax.tree.map(lambda x: jax.lax.complex(x[..., 0], x[..., 1]), tree)


# ---------------------------------------------------------------------------------------------------------------
# Save times


def _time_dtype(params: Params) -> Any:
  """The real dtype of the state (float32 for float32 or complex64 params), which the times take."""
  _check_params(params)
  return jnp.finfo(jnp.result_type(*jax.tree.leaves(params))).dtype


def _save_times(t1: Any, saveat: Any, dtype: Any) -> jax.Array:
  """The save times as a (T,) array of `dtype`: (t1,) by default; checked (sorted, in [0, t1]) when concrete."""
  t1 = jnp.asarray(t1, dtype=dtype)
  if t1.ndim != 0:
    raise ValueError(f't1 must be a scalar, got shape {t1.shape}.')
  ts = t1[None] if saveat is None else jnp.asarray(saveat, dtype=t1.dtype)
  if ts.ndim != 1 or ts.shape[0] == 0:
    raise ValueError(f'saveat must be a non-empty 1-D sequence of times, got shape {ts.shape}.')
  if not _is_traced((t1, ts)):
    t1_, ts_ = float(t1), np.asarray(ts)
    if not (np.isfinite(t1_) and t1_ >= 0):
      raise ValueError(f't1 must be a finite time ≥ 0, got {t1_}.')
    if not np.all(np.isfinite(ts_)) or np.any(np.diff(ts_) < 0) or ts_[0] < 0 or ts_[-1] > t1_:
      raise ValueError(f'saveat must be non-decreasing times in [0, t1 = {t1_}], got {ts_}.')
  return ts


# ---------------------------------------------------------------------------------------------------------------
# Integrators


def _real_term(t, y, args):
  field, field_args = args
  return field(y, *field_args)


def _complex_term(t, y, args):
  field, field_args = args
  return _split(jax.tree.map(lambda x: x.astype(jnp.result_type(x, jnp.complex64)), field(_join(y), *field_args)))


def integrate(
  field: VectorField,
  params: Params,
  t1: float | jax.Array,
  *args: Any,
  solver: str = 'tsit5',
  rtol: float = 1e-7,
  atol: float = 1e-9,
  saveat: Any = None,
  max_steps: int = MAX_STEPS,
  dt0: float | None = None,
  loss: Loss | None = None,
  holomorphic: bool = False,
) -> Trajectory:
  """θ(t) of θ̇ = field(θ, *args) from θ(0) = params, by an adaptive explicit Runge–Kutta solver of diffrax.

  Args:
    field: `field(params, *args) -> θ̇`.
    params: θ(0), a pytree of real or complex floating arrays.
    t1: the end time (e.g. h for one GD step).
    *args: passed to the field (e.g. a batch).
    solver: 'tsit5', 'dopri5' or 'dopri8'.
    rtol, atol: the PID controller's tolerances (on the real and imaginary parts of a complex state); arrays
      traced under `jit` let one compilation serve every tolerance.
    saveat: the times to return, non-decreasing in [0, t1]; default (t1,).
    max_steps: the most solver steps; diffrax raises when a solve needs more.
    dt0: the first step; default: diffrax's heuristic.
    loss: the loss the field is built on: needed when the state is complex, to check it is holomorphic.
    holomorphic: skip that check (the caller has made it).

  Returns:
    A `Trajectory`; `ys` is complex when the state is.
  """
  if solver not in SOLVERS:
    raise ValueError(f'solver must be one of {tuple(SOLVERS)}, got {solver!r}.')
  if not _is_traced((rtol, atol)) and not (rtol > 0 and atol > 0):
    raise ValueError(f'rtol and atol must be positive, got rtol={rtol!r}, atol={atol!r}.')
  if not isinstance(max_steps, int) or max_steps < 1:
    raise ValueError(f'max_steps must be a positive int, got {max_steps!r}.')
  ts = _save_times(t1, saveat, _time_dtype(params))
  y0, is_complex = _prepare(field, params, args, loss, holomorphic)
  term = diffrax.ODETerm(_complex_term if is_complex else _real_term)
  solution = diffrax.diffeqsolve(
    term,
    SOLVERS[solver](),
    jnp.zeros((), ts.dtype),
    jnp.asarray(t1, ts.dtype),
    dt0,
    _split(y0) if is_complex else y0,
    args=(field, args),
    saveat=diffrax.SaveAt(ts=ts),
    stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
    max_steps=max_steps,
  )
  ys = _join(solution.ys) if is_complex else solution.ys
  return Trajectory(solution.ts, ys, jnp.asarray(solution.stats['num_steps']))


def euler(
  field: VectorField,
  params: Params,
  t1: float | jax.Array,
  *args: Any,
  dt: float | jax.Array = EULER_DT,
  saveat: Any = None,
  loss: Loss | None = None,
  holomorphic: bool = False,
) -> Trajectory:
  """θ(t) by explicit Euler θ ← θ + dt·field(θ) with a fixed step (the thesis' 5e-5, Appendix A.3).

  Each interval between save times [s_{k−1}, s_k] (s_{−1} = 0) takes ⌊(s_k − s_{k−1})/dt⌋ steps of dt and one
  last step of the remainder, so every save time is reached exactly whatever dt. The loops are `lax` loops
  (a trip count known only at run time: dt, t1 and saveat may be traced, e.g. vmapped); they run forward only
  (no reverse-mode differentiation through them). `loss` and `holomorphic` as in `integrate`.
  """
  ts = _save_times(t1, saveat, _time_dtype(params))
  dt = jnp.asarray(dt, ts.dtype)
  if dt.ndim != 0:
    raise ValueError(f'dt must be a scalar, got shape {dt.shape}.')
  if not _is_traced(dt) and not float(dt) > 0:
    raise ValueError(f'dt must be positive, got {float(dt)}.')
  y0, _ = _prepare(field, params, args, loss, holomorphic)
  ys, num_steps = _compiled(_euler_run, field)(field, y0, ts, dt, args)
  return Trajectory(ts, ys, num_steps)


def _compiled(run: Callable[..., Any], fun: Callable[..., Any]) -> Callable[..., Any]:
  """`run` jitted with its first argument (a field or loss) static, so that calls with one `fun` and the same
  shapes reuse one compilation; `run` itself when `fun` cannot be hashed."""
  try:
    hash(fun)
  except TypeError:
    return run
  return _JITTED[run]


def _euler_run(field: VectorField, y0: Params, ts: jax.Array, dt: jax.Array, args: tuple[Any, ...]):
  lengths = jnp.diff(ts, prepend=jnp.zeros((1,), ts.dtype))
  full = jnp.floor(lengths / dt).astype(jnp.int32)
  rest = lengths - full.astype(ts.dtype) * dt
  # A remainder at the rounding level of the interval is no step (t/dt within rounding of an integer).
  rest = jnp.where(rest > 8 * jnp.finfo(ts.dtype).eps * jnp.maximum(lengths, dt), rest, 0)

  def step(y, size):
    return jax.tree.map(lambda a, b: a + (size * b).astype(a.dtype), y, field(y, *args))

  def interval(y, xs):
    n, r = xs
    y = jax.lax.fori_loop(0, n, lambda _, y: step(y, dt), y)
    y = jax.lax.cond(r > 0, step, lambda y, r: y, y, r)  # no evaluation for a save time on the dt grid
    return y, y

  _, ys = jax.lax.scan(interval, y0, (full, rest))
  return ys, jnp.sum(full) + jnp.sum(rest > 0)


def _solve(field: VectorField, params: Params, ts: jax.Array, args: tuple[Any, ...], method: str, options: dict):
  if method == 'diffrax':
    return integrate(field, params, ts[-1], *args, saveat=ts, **options)
  return euler(field, params, ts[-1], *args, saveat=ts, **options)


def _check_method(method: str, options: dict) -> None:
  if method not in METHODS:
    raise ValueError(f'method must be one of {METHODS}, got {method!r}.')
  allowed = (
    {'solver', 'rtol', 'atol', 'max_steps', 'dt0', 'loss', 'holomorphic'}
    if method == 'diffrax'
    else {'dt', 'loss', 'holomorphic'}
  )
  unknown = set(options) - allowed
  if unknown:
    raise ValueError(f'options {sorted(unknown)} do not apply to method={method!r}; it takes {sorted(allowed)}.')


# ---------------------------------------------------------------------------------------------------------------
# Gradient descent and the errors of the flows against it


def gd(fun: Loss, params: Params, h: float | jax.Array, steps: int, *args: Any) -> Params:
  """Gradient descent θ_n = θ_{n−1} − h∇E(θ_{n−1}) (Eq 3.1): θ_0..θ_steps, a pytree with a leading axis steps + 1."""
  if not isinstance(steps, int) or steps < 0:
    raise ValueError(f'steps must be an int ≥ 0, got {steps!r}.')
  _check_params(params)
  if any(jnp.iscomplexobj(x) for x in jax.tree.leaves(params)):
    raise ValueError('gd takes real params: gradient descent on a real loss stays real.')
  return _compiled(_gd_run, fun)(fun, params, jnp.asarray(h), args, steps)


def _gd_run(fun: Loss, params: Params, h: jax.Array, args: tuple[Any, ...], steps: int) -> Params:
  grad = jax.grad(fun)

  def step(p, _):
    p = jax.tree.map(lambda x, g: x - (h * g).astype(x.dtype), p, grad(p, *args))
    return p, p

  _, later = jax.lax.scan(step, params, None, length=steps)
  return jax.tree.map(lambda x, xs: jnp.concatenate([jnp.asarray(x)[None], xs]), params, later)


_JITTED = {
  _euler_run: jax.jit(_euler_run, static_argnums=0),
  _gd_run: jax.jit(_gd_run, static_argnums=(0, 4)),
}


def flow_iterates(
  field: VectorField,
  params: Params,
  h: float | jax.Array,
  steps: int,
  *args: Any,
  method: str = 'diffrax',
  **options: Any,
) -> Trajectory:
  """θ(nh) for n = 0..steps from θ(0) = params (ys has a leading axis steps + 1), to set against `gd`'s iterates.

  method 'diffrax' (`integrate`) or 'euler' (`euler`); `options` go to it (solver, rtol, atol, max_steps, dt0 or
  dt; loss, holomorphic).
  """
  if not isinstance(steps, int) or steps < 0:
    raise ValueError(f'steps must be an int ≥ 0, got {steps!r}.')
  _check_method(method, options)
  ts = jnp.asarray(h, jnp.result_type(float)) * jnp.arange(steps + 1)
  return _solve(field, params, ts, args, method, options)


def _num_iterates(iterates: Params) -> int:
  sizes = {jnp.shape(x)[0] if jnp.ndim(x) else 0 for x in jax.tree.leaves(iterates)}
  if len(sizes) != 1 or min(sizes) < 2:
    raise ValueError(f'iterates must share one leading axis of at least 2 (θ_0, θ_1, …), got leading sizes {sizes}.')
  return sizes.pop()


def one_step_flows(
  field: VectorField, iterates: Params, h: float | jax.Array, *args: Any, method: str = 'diffrax', **options: Any
) -> Params:
  """θ_flow(h; θ_{n−1}) for n = 1..N: the flow for time h from each iterate but the last (leading axis N).

  `iterates` has a leading axis N + 1 (e.g. `gd`'s); the solves are vmapped over n. A complex state's loss is
  checked once, at θ_0.
  """
  _check_method(method, options)
  _num_iterates(iterates)
  starts = jax.tree.map(lambda x: x[:-1], iterates)
  first = jax.tree.map(lambda x: x[0], iterates)
  _, is_complex = _prepare(field, first, args, options.get('loss'), options.get('holomorphic', False))
  options = {**options, 'holomorphic': True} if is_complex else options
  if is_complex:
    starts = holomorphic_lib.complexify(starts)
  ts = jnp.asarray(h, jnp.result_type(float))[None]
  flow = lambda p: jax.tree.map(lambda y: y[0], _solve(field, p, ts, args, method, options).ys)
  return jax.vmap(flow)(starts)


def _distances(a: Params, b: Params) -> jax.Array:
  """‖a_n − b_n‖ over the leading axis of two pytrees of one structure (|·| for complex differences)."""
  squares = [
    jnp.sum(jnp.abs(x - y).reshape(x.shape[0], -1) ** 2, axis=1) for x, y in zip(*map(jax.tree.leaves, (a, b)))
  ]
  return jnp.sqrt(sum(squares))


def per_iteration_error(
  field: VectorField, iterates: Params, h: float | jax.Array, *args: Any, method: str = 'diffrax', **options: Any
) -> jax.Array:
  """‖θ_flow(h; θ_{n−1}) − θ_n‖ for n = 1..N, (N,): the local error of a flow against one GD step per iterate.

  The per-iteration drift of Figures 3.4 and 3.13a; `iterates` (leading axis N + 1) and options as in
  `one_step_flows`.
  """
  flows = one_step_flows(field, iterates, h, *args, method=method, **options)
  return _distances(flows, jax.tree.map(lambda x: x[1:], iterates))


def global_error(
  field: VectorField, iterates: Params, h: float | jax.Array, *args: Any, method: str = 'diffrax', **options: Any
) -> jax.Array:
  """‖θ_flow(nh; θ_0) − θ_n‖ for n = 1..N, (N,): one flow from θ_0 against the GD trajectory (Figures 3.9, A.7)."""
  steps = _num_iterates(iterates) - 1
  first = jax.tree.map(lambda x: x[0], iterates)
  flow = flow_iterates(field, first, h, steps, *args, method=method, **options)
  return _distances(jax.tree.map(lambda y: y[1:], flow.ys), jax.tree.map(lambda x: x[1:], iterates))


def loss_error(
  fun: Loss,
  field: VectorField,
  iterates: Params,
  h: float | jax.Array,
  *args: Any,
  method: str = 'diffrax',
  **options: Any,
) -> jax.Array:
  """Re E(θ_flow(h; θ_{n−1})) − E(θ_n) for n = 1..N, (N,): the loss prediction error of Figure 3.13b.

  `fun` is E; at a complex θ_flow it is evaluated there (it must be holomorphic, as checked) and its real part
  taken, as the thesis plots the PF's loss. Unless `loss=` is among the options, `fun` is the loss checked.
  """
  options = {'loss': fun, **options}
  flows = one_step_flows(field, iterates, h, *args, method=method, **options)
  predicted = jax.vmap(lambda p: jnp.real(fun(p, *args)))(flows)
  actual = jax.vmap(lambda p: jnp.real(fun(p, *args)))(jax.tree.map(lambda x: x[1:], iterates))
  return predicted - actual
