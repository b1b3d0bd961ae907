"""Spectral norms of linear layers by persistent power iteration.

This module is the single source of the spectral norm σ of a layer: SN layers,
DIVOUT, DIVGRAD, MULEPS and logging all obtain σ from here.

σ of a layer is the spectral norm of the layer's bias-free linear *operator* on
one example. For dense layers this is the largest singular value of `w`; for
convolutional layers it is the norm of the convolution at the layer's real
input shape, stride and padding (Gouk et al.), which in general differs from
the norm of the kernel reshaped into a matrix (what `hk.SpectralNorm` uses).

σ is estimated by power iteration on AᵀA with one vector per layer that is kept
between calls as explicit state (`SpectralState`). The iteration itself never
carries gradients; σ = ‖A v‖ with v held constant is differentiable in the
weights, so callers choose whether σ is a constant by wrapping it in
`jax.lax.stop_gradient`.

Parameters may be haiku's (`params[name]['w']`) or flax.linen's
(`params[name]['kernel']`, nested module names written 'Outer_0/Dense_0', and
the variables `{'params': ...}` of `Module.init` accepted as they are). Both
libraries store dense weights as (in, out) and conv kernels as HWIO, so one
spec describes the same operator in either.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from smoothrl.networks.layers import LayerSpec

SpectralState = dict[str, jax.Array]
Params = Mapping[str, Mapping[str, Any]]

_EPS = 1e-12
_CONV_DIMENSION_NUMBERS = ('NHWC', 'HWIO', 'NHWC')


# ----------------------------------------------------------------------------
# Validation helpers.
# ----------------------------------------------------------------------------


def _check_spec(spec: LayerSpec) -> None:
  """Raises if a spec cannot describe a dense or conv operator."""
  if spec.kind == 'dense':
    if len(spec.input_shape) != 1:
      raise ValueError(
        f'Layer {spec.name!r}: a dense layer needs input_shape of rank 1 (in,), got {tuple(spec.input_shape)}.'
      )
  elif spec.kind == 'conv':
    if len(spec.input_shape) != 3:
      raise ValueError(
        f'Layer {spec.name!r}: a conv layer needs input_shape of rank 3 (H, W, C_in), got {tuple(spec.input_shape)}.'
      )
    if not isinstance(spec.stride, (int, np.integer)) or spec.stride < 1:
      raise ValueError(f'Layer {spec.name!r}: stride must be a positive int, got {spec.stride!r}.')
    if str(spec.padding).upper() not in ('VALID', 'SAME'):
      raise ValueError(f'Layer {spec.name!r}: padding must be "VALID" or "SAME", got {spec.padding!r}.')
  else:
    raise ValueError(f'Layer {spec.name!r}: kind must be "dense" or "conv", got {spec.kind!r}.')
  if any(int(d) < 1 for d in spec.input_shape):
    raise ValueError(f'Layer {spec.name!r}: input_shape must have positive dimensions, got {tuple(spec.input_shape)}.')


def _check_weight(spec: LayerSpec, w: Any) -> None:
  """Raises if `w` does not fit `spec` (rank for the kind, input size)."""
  _check_spec(spec)
  shape = tuple(jnp.shape(w))
  if spec.kind == 'dense':
    if len(shape) != 2:
      raise ValueError(f'Layer {spec.name!r}: a dense weight must have rank 2 (in, out), got shape {shape}.')
    if shape[0] != spec.input_shape[0]:
      raise ValueError(
        f'Layer {spec.name!r}: dense weight of shape {shape} does not take inputs of shape {tuple(spec.input_shape)}.'
      )
  else:
    if len(shape) != 4:
      raise ValueError(f'Layer {spec.name!r}: a conv weight must have rank 4 (kh, kw, c_in, c_out), got shape {shape}.')
    if shape[2] != spec.input_shape[2]:
      raise ValueError(
        f'Layer {spec.name!r}: conv weight of shape {shape} expects '
        f'{shape[2]} input channels, input_shape is '
        f'{tuple(spec.input_shape)}.'
      )
    if str(spec.padding).upper() == 'VALID' and (shape[0] > spec.input_shape[0] or shape[1] > spec.input_shape[1]):
      raise ValueError(
        f'Layer {spec.name!r}: kernel {shape[:2]} is larger than the input '
        f'{tuple(spec.input_shape[:2])} with VALID padding.'
      )


def _check_vector(spec: LayerSpec, v: Any, what: str = 'vector') -> None:
  if tuple(jnp.shape(v)) != tuple(spec.input_shape):
    raise ValueError(
      f'Layer {spec.name!r}: {what} has shape {tuple(jnp.shape(v))}, expected input_shape {tuple(spec.input_shape)}.'
    )


def _check_iterations(num_iterations: Any, minimum: int) -> int:
  if isinstance(num_iterations, bool):
    raise TypeError(f'num_iterations must be an int, got {num_iterations!r}.')
  try:
    n = operator.index(num_iterations)
  except TypeError as e:
    raise TypeError(f'num_iterations must be a static Python int, got {num_iterations!r}.') from e
  if n < minimum:
    raise ValueError(f'num_iterations must be >= {minimum}, got {n}.')
  return n


def _check_specs(specs: Sequence[LayerSpec]) -> None:
  names = [s.name for s in specs]
  duplicates = sorted({n for n in names if names.count(n) > 1})
  if duplicates:
    raise ValueError(f'Duplicate layer names in specs: {duplicates}.')
  for spec in specs:
    _check_spec(spec)


# A layer's weight: haiku's `w`, or flax.linen's `kernel` (Dense (in, out), Conv HWIO, as haiku's).
WEIGHT_NAMES = ('w', 'kernel')


def _layer_params(params: Params, name: str) -> Mapping[str, Any]:
  """The parameters of layer `name`: `params[name]` (haiku's flat module names, or a top-level flax module), or the
  flax nesting `params['Block_0']['Dense_0']` for `name` 'Block_0/Dense_0'. Flax's variables
  `{'params': ...}` (what `Module.init` returns) are looked into when `name` is not at the top."""
  if name not in params and 'params' in params and isinstance(params['params'], Mapping):
    params = params['params']
  if name in params:
    return params[name]
  node: Any = params
  for part in name.split('/'):
    if not isinstance(node, Mapping) or part not in node:
      raise KeyError(f'Layer {name!r} not found in params; available modules: {sorted(params)}.')
    node = node[part]
  return node


def _weight(params: Params, spec: LayerSpec) -> Any:
  """Fetches and validates the weight of layer `spec.name`: `w` (haiku) or `kernel` (flax)."""
  layer = _layer_params(params, spec.name)
  found = [k for k in WEIGHT_NAMES if k in layer]
  if len(found) != 1:
    what = 'both "w" and "kernel"' if found else 'no weight "w" (haiku) or "kernel" (flax)'
    raise KeyError(f'Layer {spec.name!r} has {what} in params; it has {sorted(layer)}.')
  w = layer[found[0]]
  _check_weight(spec, w)
  return w


def _check_state(specs: Sequence[LayerSpec], state: Mapping[str, Any]) -> None:
  names = {s.name for s in specs}
  missing = sorted(names - set(state))
  extra = sorted(set(state) - names)
  if missing or extra:
    raise KeyError(
      f'Spectral state keys must match the spec names: missing vectors for {missing}, unexpected vectors for {extra}.'
    )
  for spec in specs:
    _check_vector(spec, state[spec.name], 'state vector')


def _sq_norm(x: jax.Array) -> jax.Array:
  return jnp.sum(jnp.square(x))


def _safe_norm(x: jax.Array) -> jax.Array:
  """Frobenius norm whose gradient at zero is zero rather than NaN."""
  sq = _sq_norm(x)
  positive = sq > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def _compute_dtype(w: Any, x: Any) -> Any:
  return jnp.result_type(w, x)


# ----------------------------------------------------------------------------
# Compiled kernels. They take a canonical, nameless spec as a static argument so
# that layers of the same geometry share compiled code, and skip validation.
# ----------------------------------------------------------------------------


def _kernel_spec(spec: LayerSpec) -> LayerSpec:
  """A hashable, name-free copy of a validated spec."""
  conv = spec.kind == 'conv'
  return dataclasses.replace(
    spec,
    name='',
    input_shape=tuple(int(d) for d in spec.input_shape),
    stride=int(spec.stride) if conv else 1,
    padding=str(spec.padding).upper() if conv else 'VALID',
  )


def _op(spec: LayerSpec, w: jax.Array, x: jax.Array) -> jax.Array:
  dtype = _compute_dtype(w, x)
  w = jnp.asarray(w, dtype)
  x = jnp.asarray(x, dtype)
  if spec.kind == 'dense':
    return x @ w
  out = jax.lax.conv_general_dilated(
    x[None],
    w,
    window_strides=(spec.stride, spec.stride),
    padding=spec.padding,
    dimension_numbers=_CONV_DIMENSION_NUMBERS,
  )
  return out[0]


def _op_t(spec: LayerSpec, w: jax.Array, y: jax.Array) -> jax.Array:
  dtype = _compute_dtype(w, y)
  w = jnp.asarray(w, dtype)
  primal = jax.ShapeDtypeStruct(spec.input_shape, dtype)
  (x,) = jax.linear_transpose(functools.partial(_op, spec, w), primal)(jnp.asarray(y, dtype))
  return x


def _power_step(spec: LayerSpec, w: jax.Array, v: jax.Array) -> jax.Array:
  """One step v ← Aᵀ(Av)/‖Aᵀ(Av)‖; keeps v when the result is degenerate."""
  u = _op(spec, w, v)
  u = u / jnp.maximum(jnp.sqrt(_sq_norm(u)), _EPS)
  z = _op_t(spec, w, u)
  z_norm = jnp.sqrt(_sq_norm(z))
  v_new = z / jnp.maximum(z_norm, _EPS)
  return jnp.where(z_norm > _EPS, v_new, v).astype(v.dtype)


_apply_jit = jax.jit(_op, static_argnums=0)
_transpose_jit = jax.jit(_op_t, static_argnums=0)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _power_jit(spec: LayerSpec, n: int, w: jax.Array, v: jax.Array) -> jax.Array:
  w = jax.lax.stop_gradient(w)
  v = jax.lax.stop_gradient(v)
  if n == 1:
    return _power_step(spec, w, v)
  return jax.lax.fori_loop(0, n, lambda _, v_: _power_step(spec, w, v_), v)


@functools.partial(jax.jit, static_argnums=0)
def _sigma_jit(spec: LayerSpec, w: jax.Array, v: jax.Array) -> jax.Array:
  return _safe_norm(_op(spec, w, jax.lax.stop_gradient(v)))


@functools.partial(jax.jit, static_argnums=(1, 2))
def _random_unit_jit(key: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
  v = jax.random.normal(key, shape, dtype)
  return v / jnp.maximum(jnp.sqrt(_sq_norm(v)), _EPS)


@functools.partial(jax.jit, static_argnums=0)
def _operator_matrix_jit(spec: LayerSpec, w: jax.Array) -> jax.Array:
  n_in = math.prod(spec.input_shape)
  basis = jnp.eye(n_in, dtype=jnp.result_type(w)).reshape((n_in, *spec.input_shape))
  outs = jax.vmap(functools.partial(_op, spec, w))(basis)
  return outs.reshape((n_in, -1)).T


@functools.partial(jax.jit, static_argnums=0)
def _exact_sigma_jit(spec: LayerSpec, w: jax.Array) -> jax.Array:
  return jnp.linalg.norm(_operator_matrix_jit(spec, w), ord=2)


# ----------------------------------------------------------------------------
# The linear operator of a layer.
# ----------------------------------------------------------------------------


def apply_operator(spec: LayerSpec, w: jax.Array, x: jax.Array) -> jax.Array:
  """Applies the bias-free linear operator of a layer to one example.

  Args:
    spec: the layer.
    w: its weight, (in, out) for dense or HWIO for conv.
    x: one input of shape `spec.input_shape` (no batch dimension).

  Returns:
    The layer's pre-bias output for `x`, without a batch dimension.
  """
  _check_weight(spec, w)
  _check_vector(spec, x, 'input')
  return _apply_jit(_kernel_spec(spec), w, x)


def apply_transpose(spec: LayerSpec, w: jax.Array, y: jax.Array) -> jax.Array:
  """Applies the adjoint Aᵀ of the layer operator to one output `y`.

  For conv layers this is the transposed convolution matching the layer's
  stride and padding. Returns an array of shape `spec.input_shape`.
  """
  expected = output_shape(spec, w)
  if tuple(jnp.shape(y)) != expected:
    raise ValueError(f'Layer {spec.name!r}: output has shape {tuple(jnp.shape(y))}, expected {expected}.')
  return _transpose_jit(_kernel_spec(spec), w, y)


def output_shape(spec: LayerSpec, w: jax.Array) -> tuple[int, ...]:
  """Shape of one example's output of the layer operator."""
  _check_weight(spec, w)
  dtype = jnp.result_type(w)
  out = jax.eval_shape(
    functools.partial(_op, _kernel_spec(spec)),
    jax.ShapeDtypeStruct(tuple(jnp.shape(w)), dtype),
    jax.ShapeDtypeStruct(tuple(spec.input_shape), dtype),
  )
  return tuple(out.shape)


# ----------------------------------------------------------------------------
# Power iteration.
# ----------------------------------------------------------------------------


def init_state(
  key: jax.Array,
  specs: Sequence[LayerSpec],
  dtype: Any = jnp.float32,
) -> SpectralState:
  """Random unit-norm right-singular-vector estimates, one per layer.

  Args:
    key: PRNG key; it is split once per layer, in the order of `specs`.
    specs: the layers to track.
    dtype: dtype of the vectors.

  Returns:
    A dict from layer name to a vector of shape `spec.input_shape` with unit
    Frobenius norm.
  """
  _check_specs(specs)
  if not specs:
    return {}
  keys = jax.random.split(key, len(specs))
  return {
    spec.name: _random_unit_jit(k, tuple(int(d) for d in spec.input_shape), jnp.dtype(dtype))
    for k, spec in zip(keys, specs)
  }


def power_iteration(
  spec: LayerSpec,
  w: jax.Array,
  v: jax.Array,
  num_iterations: int = 1,
) -> jax.Array:
  """Advances the right-singular-vector estimate `v` of a layer.

  Repeats v ← Aᵀ(Av)/‖Aᵀ(Av)‖ `num_iterations` times (0 returns `v`). If Aᵀ(Av)
  vanishes (e.g. zero weights), `v` is kept so that it stays a unit vector. No
  gradient flows to `w` or `v` through the iteration.

  Args:
    spec: the layer.
    w: its weight.
    v: current estimate of shape `spec.input_shape`.
    num_iterations: a static, non-negative number of steps.

  Returns:
    The new estimate, of the same shape and dtype as `v`.
  """
  n = _check_iterations(num_iterations, minimum=0)
  _check_weight(spec, w)
  _check_vector(spec, v, 'vector')
  if n == 0:
    return jax.lax.stop_gradient(jnp.asarray(v))
  return _power_jit(_kernel_spec(spec), n, w, v)


def sigma(spec: LayerSpec, w: jax.Array, v: jax.Array) -> jax.Array:
  """The estimate σ = ‖A v‖ of a layer's spectral norm, `v` held constant.

  Gradients flow into `w`: at a converged `v`, dσ/dw is the outer product of
  the top singular vectors. Wrap the result in `jax.lax.stop_gradient` to use
  σ as a constant.
  """
  _check_weight(spec, w)
  _check_vector(spec, v, 'vector')
  return _sigma_jit(_kernel_spec(spec), w, v)


def estimate(
  specs: Sequence[LayerSpec],
  params: Params,
  state: SpectralState,
  num_iterations: int = 1,
) -> tuple[dict[str, jax.Array], SpectralState]:
  """Advances every layer's vector on the current weights and returns σ's.

  Args:
    specs: the layers to estimate; each must have a weight in `params`
      (`params[name]['w']`, or flax's `['kernel']`). Other modules are ignored.
    params: haiku or flax.linen parameters (see the module docstring).
    state: the vectors, with keys exactly the names in `specs`.
    num_iterations: static number of power-iteration steps per layer (>= 0).

  Returns:
    `(sigmas, new_state)`: σ = ‖A v_new‖ per layer name (differentiable in the
    weights, see `sigma`) and the advanced vectors.
  """
  n = _check_iterations(num_iterations, minimum=0)
  _check_specs(specs)
  _check_state(specs, state)
  sigmas = {}
  new_state = {}
  for spec in specs:
    w = _weight(params, spec)
    v = power_iteration(spec, w, state[spec.name], n)
    new_state[spec.name] = v
    sigmas[spec.name] = sigma(spec, w, v)
  return sigmas, new_state


def sigmas_from_state(
  specs: Sequence[LayerSpec],
  params: Params,
  state: SpectralState,
) -> dict[str, jax.Array]:
  """σ per layer from the current vectors, without advancing them."""
  _check_specs(specs)
  _check_state(specs, state)
  return {spec.name: sigma(spec, _weight(params, spec), state[spec.name]) for spec in specs}


def rho(sigmas: Mapping[str, jax.Array], names: Sequence[str]) -> jax.Array:
  """ρ = ∏ σ over the named layers; 1.0 for an empty selection."""
  if isinstance(names, str):
    raise TypeError(f'names must be a sequence of layer names, got {names!r}.')
  missing = [n for n in names if n not in sigmas]
  if missing:
    raise KeyError(f'No σ for layers {missing}; available: {sorted(sigmas)}.')
  result = jnp.asarray(1.0, jnp.float32)
  for name in names:
    result = result * sigmas[name]
  return result


# ----------------------------------------------------------------------------
# Exact references.
# ----------------------------------------------------------------------------


def operator_matrix(spec: LayerSpec, w: jax.Array) -> jax.Array:
  """The explicit matrix of the layer operator, (prod(output), prod(input)).

  Column j is A applied to the j-th basis input (row-major flattening of
  `spec.input_shape`); row i is the i-th entry of the flattened output.
  """
  _check_weight(spec, w)
  return _operator_matrix_jit(_kernel_spec(spec), w)


def exact_sigma(spec: LayerSpec, w: jax.Array) -> jax.Array:
  """The exact spectral norm: the largest singular value of the operator."""
  _check_weight(spec, w)
  return _exact_sigma_jit(_kernel_spec(spec), w)


# ----------------------------------------------------------------------------
# A self-contained ρ source.
# ----------------------------------------------------------------------------


class RhoEstimator(NamedTuple):
  """Computes ρ = ∏ σ over selected layers from parameters alone.

  Attributes:
    init: `params -> state`, the initial power-iteration vectors.
    update: `(params, state) -> (rho, new_state)`; ρ is a constant (no
      gradient) computed after advancing the vectors.
  """

  init: Callable[[Params], SpectralState]
  update: Callable[[Params, SpectralState], tuple[jax.Array, SpectralState]]


def rho_estimator(
  specs: Sequence[LayerSpec],
  names: Sequence[str],
  key: jax.Array,
  num_iterations: int = 1,
) -> RhoEstimator:
  """Builds a `RhoEstimator` for the layers `names`, described by `specs`.

  Only the named layers get vectors and are estimated; other specs are
  ignored. With an empty selection ρ is always 1 and the state is empty.

  `init` and `update` take haiku or flax.linen parameters (a flax model's
  `variables['params']` or its whole `variables`); spec names are the module
  names, 'Outer_0/Dense_0' for nested flax modules.

  Args:
    specs: layer descriptions; must include every name in `names`.
    names: the selected layers whose σ's are multiplied.
    key: PRNG key for the initial vectors.
    num_iterations: static power-iteration steps per update (>= 1).

  Returns:
    The estimator; `update` is pure and can be jitted.
  """
  n = _check_iterations(num_iterations, minimum=1)
  _check_specs(specs)
  if isinstance(names, str):
    raise TypeError(f'names must be a sequence of layer names, got {names!r}.')
  names = tuple(names)
  by_name = {s.name: s for s in specs}
  unknown = [name for name in names if name not in by_name]
  if unknown:
    raise ValueError(f'Selected layers {unknown} are not in specs; known layers: {sorted(by_name)}.')
  selected = tuple(by_name[name] for name in dict.fromkeys(names))

  def init(params: Params) -> SpectralState:
    dtypes = [jnp.promote_types(jnp.result_type(_weight(params, s)), jnp.float32) for s in selected]
    state = init_state(key, selected)
    return {s.name: state[s.name].astype(d) for s, d in zip(selected, dtypes)}

  def update(params: Params, state: SpectralState) -> tuple[jax.Array, SpectralState]:
    sigmas, new_state = estimate(selected, params, state, n)
    return jax.lax.stop_gradient(rho(sigmas, names)), new_state

  return RhoEstimator(init=init, update=update)
