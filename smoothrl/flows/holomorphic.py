"""Holomorphic losses: what the complex flows of thesis Section 3.3 need, and a check that a loss is one.

Once hλ_0 > 1 the principal flow (Eq 3.9) leaves the reals (Figure 3.6, Remark 3.4.1), and its vector field is
then evaluated at complex θ. There g = ∇E and H = ∇²E mean complex derivatives, which exist only where E is
holomorphic (the Cauchy–Riemann equations hold): E's complex extension is then determined by its real values, and
H is complex symmetric, Hᵀ = H, not Hermitian. The fields take g = `jax.grad(fun, holomorphic=True)` and HVPs as
its JVPs there, so `fun` must return a complex scalar at complex parameters.

Holomorphic (away from the branch cuts of log and sqrt): polynomials, squared error (y − f)² (not |y − f|²),
exp, log, tanh, `jax.nn.sigmoid`, `jax.nn.silu`, `jax.nn.gelu` (its tanh form), `jax.nn.softplus` (its pieces are
branches of log(1 + eˣ)), `jax.nn.log_softmax` and `jax.nn.logsumexp` (their max sits under `stop_gradient`), so
softmax cross-entropy written as −Σ y log_softmax(f). optax's losses reject complex inputs.

Not holomorphic: |·| (`jnp.abs`, norms, L1 and Huber losses), ReLU, leaky ReLU and ELU (piecewise: they compare
values), max/min, max-pooling, clipping, the hinge loss, sorting, real and imaginary parts and conjugates
(|z|² as z·conj(z)), and Hermitian decompositions (eigh, svd, cholesky, qr).

`check_holomorphic` tests a loss in two ways: statically, it traces `fun` at complex parameters and looks for the
operations above on values that depend on the parameters and reach the loss other than through `stop_gradient`
(a piecewise function such as ReLU satisfies the Cauchy–Riemann equations inside each piece, so only its
operations give it away); numerically, it compares the JVPs of E and of ∇E in a direction i·v with i times those
in v at the parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.extend.core as jex
import jax.numpy as jnp
import numpy as np

Params = Any
Loss = Callable[..., jax.Array]


class NotHolomorphicError(ValueError):
  """The loss is not holomorphic at the parameters, so complex flows have no complex derivatives to follow."""


_MAXMIN = 'max/min (ReLU, jnp.maximum/minimum, clipping, max-pooling, the hinge loss)'
_PARTS = (
  'real/imaginary parts or conjugates (jnp.real, jnp.imag, jnp.conj, |z|² as z·conj(z), or comparisons on complex '
  'values such as x > 0 in ReLU, leaky ReLU, ELU or jnp.where)'
)
_COMPARE = 'a comparison (x > 0 in ELU, leaky ReLU, the hinge loss or jnp.where(x > 0, ...))'
_ROUND = 'rounding or sign (jnp.sign, floor, ceil, round)'
_HERMITIAN = 'a Hermitian decomposition (eigh, svd, cholesky, qr conjugate their input)'

# Primitives that are not holomorphic on complex values (or that make a function piecewise), with a likely cause.
NON_HOLOMORPHIC: dict[str, str] = {
  'abs': '|·| (jnp.abs, norms, L1 or Huber losses)',
  'max': _MAXMIN,
  'min': _MAXMIN,
  'reduce_max': _MAXMIN,
  'reduce_min': _MAXMIN,
  'argmax': _MAXMIN,
  'argmin': _MAXMIN,
  'clamp': _MAXMIN,
  'cummax': _MAXMIN,
  'cummin': _MAXMIN,
  'real': _PARTS,
  'imag': _PARTS,
  'conj': _PARTS,
  'lt': _COMPARE,
  'le': _COMPARE,
  'gt': _COMPARE,
  'ge': _COMPARE,
  'sign': _ROUND,
  'floor': _ROUND,
  'ceil': _ROUND,
  'round': _ROUND,
  'rem': 'a remainder (jnp.mod, %)',
  'sort': 'sorting (jnp.sort, jax.lax.top_k, medians)',
  'top_k': 'sorting (jnp.sort, jax.lax.top_k, medians)',
  'eigh': _HERMITIAN,
  'svd': _HERMITIAN,
  'cholesky': _HERMITIAN,
  'qr': _HERMITIAN,
  'householder_product': _HERMITIAN,
}

# custom_jvp functions whose piecewise definition only picks a branch of one analytic function, and whose JVP rule
# is that function's complex derivative: logaddexp (jax.nn.softplus, jnp.logaddexp) is log(eˣ + eʸ).
HOLOMORPHIC_CUSTOM_JVPS = frozenset({'logaddexp'})

# Calls whose sub-jaxpr takes the call's operands and gives its results, one for one.
_CALLS = frozenset(
  {'jit', 'pjit', 'closed_call', 'core_call', 'remat', 'checkpoint', 'custom_jvp_call', 'custom_vjp_call'}
)


def is_complex(params: Params, name: str = 'params') -> bool:
  """True when every leaf of `params` is complex, False when every leaf is real floating point.

  Raises ValueError for no leaves, a leaf that is not floating point or complex, or a mix of real and complex
  leaves (`complexify` makes them all complex).
  """
  leaves = jax.tree.leaves(params)
  if not leaves:
    raise ValueError(f'{name} must hold at least one array, got {params!r}.')
  dtypes = [jnp.result_type(x) for x in leaves]
  bad = [d for d in dtypes if not jnp.issubdtype(d, jnp.inexact)]
  if bad:
    raise ValueError(f'{name} must be floating point or complex, got a leaf of dtype {bad[0]}.')
  kinds = {bool(jnp.issubdtype(d, jnp.complexfloating)) for d in dtypes}
  if len(kinds) > 1:
    raise ValueError(
      f'{name} mixes real and complex leaves ({sorted(map(str, set(dtypes)))}); pass complexify({name}).'
    )
  return kinds.pop()


def complexify(params: Params) -> Params:
  """Every leaf as a complex array (float32 → complex64, float64 → complex128); complex leaves are kept."""

  def cast(x: Any) -> jax.Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
      raise ValueError(f'params must be floating point or complex, got a leaf of dtype {x.dtype}.')
    return x.astype(jnp.result_type(x.dtype, jnp.complex64))

  return jax.tree.map(cast, params)


def _var(v: Any) -> bool:
  return not isinstance(v, jex.Literal)


def _aligned_call(eqn: jex.JaxprEqn) -> jex.Jaxpr | None:
  """The sub-jaxpr of a call whose operands and results are the call's own, one for one; else None."""
  if eqn.primitive.name not in _CALLS:
    return None
  subs = list(jex.jaxprs_in_params(eqn.params))
  if len(subs) != 1 or len(subs[0].invars) != len(eqn.invars) or len(subs[0].outvars) != len(eqn.outvars):
    return None
  return subs[0]


def _forward(jaxpr: jex.Jaxpr, tainted_in: Sequence[bool]) -> set[Any]:
  """The variables of `jaxpr` that depend on a tainted input other than through stop_gradient."""
  tainted = {v for v, t in zip(jaxpr.invars, tainted_in) if t}
  for eqn in jaxpr.eqns:
    ins = [_var(v) and v in tainted for v in eqn.invars]
    if not any(ins) or eqn.primitive.name == 'stop_gradient':
      continue
    sub = _aligned_call(eqn)
    if sub is not None and not _safe_custom(eqn):
      inner = _forward(sub, ins)
      tainted.update(o for o, s in zip(eqn.outvars, sub.outvars) if _var(s) and s in inner)
    else:
      tainted.update(eqn.outvars)
  return tainted


def _safe_custom(eqn: jex.JaxprEqn) -> bool:
  if eqn.primitive.name != 'custom_jvp_call':
    return False
  call = eqn.params.get('call_jaxpr')
  info = getattr(getattr(call, 'jaxpr', call), 'debug_info', None)
  return getattr(info, 'func_name', None) in HOLOMORPHIC_CUSTOM_JVPS


def _findings(jaxpr: jex.Jaxpr, tainted_in: Sequence[bool], live_out: Sequence[bool]) -> tuple[list[bool], list[str]]:
  """(which inputs reach a live output, the non-holomorphic primitives on tainted values that reach one)."""
  tainted = _forward(jaxpr, tainted_in)
  live = {v for v, keep in zip(jaxpr.outvars, live_out) if keep and _var(v)}
  found: list[str] = []
  for eqn in reversed(jaxpr.eqns):
    outs = [_var(v) and v in live for v in eqn.outvars]
    if not any(outs) or eqn.primitive.name == 'stop_gradient':
      continue
    ins = [_var(v) and v in tainted for v in eqn.invars]
    if not any(ins):
      continue  # a constant of the parameters: nothing to differentiate
    sub = _aligned_call(eqn)
    if _safe_custom(eqn):
      reach = [True] * len(eqn.invars)
    elif sub is not None:
      reach, inner = _findings(sub, ins, outs)
      found += inner
    else:
      if eqn.primitive.name in NON_HOLOMORPHIC:
        found.append(eqn.primitive.name)
      for sub_jaxpr in jex.jaxprs_in_params(eqn.params):  # cond branches, loop bodies: every value counts
        found += _findings(sub_jaxpr, [True] * len(sub_jaxpr.invars), [True] * len(sub_jaxpr.outvars))[1]
      reach = [True] * len(eqn.invars)
    live.update(v for v, r in zip(eqn.invars, reach) if r and _var(v))
  return [_var(v) and v in live for v in jaxpr.invars], found


def _describe(found: Sequence[str]) -> str:
  names = sorted(set(found))
  causes = sorted({NON_HOLOMORPHIC[n] for n in names})
  return f'it applies {", ".join(names)} to values that depend on params; likely cause: {"; ".join(causes)}'


def _norm(tree: Params) -> jax.Array:
  return jnp.sqrt(sum(jnp.sum(jnp.abs(x) ** 2) for x in jax.tree.leaves(tree)))


def _direction(z: Params, key: jax.Array | None) -> Params:
  """A complex standard normal pytree like z, drawn on the host (numpy) from the bits of `key`."""
  if key is None:
    entropy = 0
  else:
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    entropy = [int(b) for b in np.asarray(data).ravel()]
  rng = np.random.default_rng(entropy)
  return jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape) + 1j * rng.normal(size=x.shape), x.dtype), z)


def _cr_residuals(fun: Loss, z: Params, v: Params, *args: Any) -> tuple[jax.Array, jax.Array]:
  """‖J(iv) − iJ(v)‖ / (‖J(v)‖ + ‖J(iv)‖) for the JVPs J of E and of ∇E at z (the gap itself when both vanish)."""
  both = jax.value_and_grad(lambda p: fun(p, *args), holomorphic=True)
  jv = jax.jvp(both, (z,), (v,))[1]
  jiv = jax.jvp(both, (z,), (jax.tree.map(lambda x: 1j * x, v),))[1]

  def residual(a, b):
    gap = _norm(jax.tree.map(lambda x, y: x - 1j * y, a, b))
    scale = _norm(a) + _norm(b)
    return jnp.where(scale > 0, gap / jnp.where(scale > 0, scale, 1), gap)

  return residual(jiv[0], jv[0]), residual(jiv[1], jv[1])


def check_holomorphic(
  fun: Loss,
  params: Params,
  *args: Any,
  key: jax.Array | None = None,
  rtol: float | None = None,
) -> None:
  """Raises `NotHolomorphicError`, naming the likely cause, when `fun` is not holomorphic at (complexified) params.

  Checks in turn that `fun` runs on complex parameters, returns a complex scalar there, applies none of
  `NON_HOLOMORPHIC`'s primitives to values that depend on the parameters and reach the loss (other than under
  `stop_gradient`), and satisfies the Cauchy–Riemann equations J(iv) = iJ(v) for the JVPs of E and of
  ∇E = `jax.grad(fun, holomorphic=True)` at params in a random complex direction v (drawn from the bits of
  `key`; a fixed draw when None) to relative tolerance `rtol` (default √eps of the complex dtype). Call it outside
  `jit`: it raises on concrete values.
  """
  z = complexify(params)
  is_complex(z)
  try:
    closed = jax.make_jaxpr(lambda p: fun(p, *args))(z)
  except Exception as error:  # any failure on complex input is the answer
    raise NotHolomorphicError(
      f'fun fails on complex parameters ({type(error).__name__}: {error}); the complex flows need a loss that '
      'accepts them (optax losses, jnp.clip and others reject complex values).'
    ) from error
  if len(closed.out_avals) != 1 or closed.out_avals[0].shape != ():
    raise ValueError(f'fun must return one scalar, got {[a.str_short() for a in closed.out_avals]}.')
  out = closed.out_avals[0]
  if not jnp.issubdtype(out.dtype, jnp.complexfloating):
    raise NotHolomorphicError(
      f'fun returns a real value ({out.dtype}) at complex parameters, so it is not holomorphic: a real function '
      'of complex parameters (|·|, real parts, z·conj(z)) has no complex derivative.'
    )
  _, found = _findings(closed.jaxpr, [True] * len(closed.jaxpr.invars), [True])
  if found:
    raise NotHolomorphicError(f'fun is not holomorphic: {_describe(found)}.')
  tol = float(jnp.sqrt(jnp.finfo(out.dtype).eps)) if rtol is None else rtol
  residuals = jax.jit(_cr_residuals, static_argnums=0)(fun, z, _direction(z, key), *args)
  for what, residual in zip(('E', 'the gradient'), map(float, residuals)):
    if not residual <= tol:  # NaN fails too
      raise NotHolomorphicError(
        f'fun is not holomorphic at params: the JVP of {what} in direction i·v differs from i times the JVP in v '
        f'by {residual:.3g} (relative; tolerance {tol:.3g}), so the Cauchy–Riemann equations fail there.'
      )
