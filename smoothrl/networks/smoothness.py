"""Smoothness measures: of a network with respect to its inputs, in one place.

- An RL critic's smoothness on states (thesis Appendix E.2.2): `jacobian_norms`, `max_jacobian_norm`, and the
  gradient penalties the thesis compared Spectral Normalisation with (Appendix E.1.2), `gradient_penalty`.
- Geometric Complexity (Definition 8.2.1, Eq 8.1), the mean squared Frobenius norm of the Jacobian of the logits
  with respect to the inputs: exactly (`geometric_complexity`, from per-example Jacobians `input_jacobians`) or by
  random projections (`geometric_complexity_projected`).
- The product of the layers' spectral norms ∏_l σ_l (Section 6.2), an upper bound on the Lipschitz constant of a
  network whose activations are 1-Lipschitz: `spectral_norm_product`, per layer `layer_spectral_norms`. σ comes from
  `smoothrl.networks.spectral`.
- Local Lipschitz constants on a grid over a box of inputs (Appendix D.1, Figure 6.5): `local_lipschitz_grid`, with
  the cells' centres from `grid_cell_centres`.

Functions of inputs take a callable `f(x_batch) -> outputs` that maps a batch to a batch and treats the examples
of a batch independently (no batch statistics); close over the parameters to measure a model,
`lambda x: model.apply(params, state, x, False)[0]`. Everything here runs under `jax.jit` and is differentiable in
the parameters `f` closes over.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from smoothrl.networks import spectral
from smoothrl.networks.layers import LayerSpec


def jacobian_norms(q_fn: Callable[[jax.Array], jax.Array], states: jax.Array) -> jax.Array:
  """||dQ_i/ds||_2 (Frobenius norm over the state's entries) for every state and action: shape (batch, actions).

  `q_fn` maps a batch of states to a batch of action values.
  """

  def single(s):
    jac = jax.jacrev(lambda x: q_fn(x[None])[0])(s)  # (actions, *state_shape)
    return jnp.sqrt(jnp.sum(jnp.square(jac.reshape(jac.shape[0], -1)), axis=-1))

  return jax.vmap(single)(states.astype(jnp.float32))


def max_jacobian_norm(q_fn: Callable[[jax.Array], jax.Array], states: jax.Array) -> jax.Array:
  """max over states s and actions i of ||dQ_i/ds||_2: a lower bound on the critic's Lipschitz constant (Eq E.1)."""
  return jnp.max(jacobian_norms(q_fn, states))


PENALTIES = ('none', 'norm_of_sum', 'sum_of_norms', 'norm_of_max')


def gradient_penalty(q_fn: Callable[[jax.Array], jax.Array], states: jax.Array, kind: str) -> jax.Array:
  """The gradient penalties the thesis compared SN with (Appendix E.1.2), averaged over the batch of states.

  'norm_of_sum': ||sum_i dQ_i/ds||; 'sum_of_norms': sum_i ||dQ_i/ds||; 'norm_of_max': ||d max_i Q_i/ds||.
  `q_fn` must treat the states of a batch independently (true of the critics here without batch normalisation), so
  the gradient of a sum over the batch gives each state's gradient. Gradients flow into the parameters `q_fn`
  closes over, so the penalty can be added to a loss.
  """
  states = states.astype(jnp.float32)
  flat = lambda g: g.reshape(g.shape[0], -1)
  if kind == 'norm_of_sum':
    grads = jax.grad(lambda s: jnp.sum(q_fn(s)))(states)
    return jnp.mean(_norm(flat(grads)))
  if kind == 'norm_of_max':
    grads = jax.grad(lambda s: jnp.sum(jnp.max(q_fn(s), axis=-1)))(states)
    return jnp.mean(_norm(flat(grads)))
  if kind == 'sum_of_norms':
    q, vjp = jax.vjp(q_fn, states)
    per_action = jax.vmap(lambda e: vjp(jnp.broadcast_to(e, q.shape))[0])(jnp.eye(q.shape[-1], dtype=q.dtype))
    norms = _norm(per_action.reshape(per_action.shape[0], per_action.shape[1], -1))  # (actions, batch)
    return jnp.mean(jnp.sum(norms, axis=0))
  raise ValueError(f'unknown gradient penalty {kind!r}; valid: {", ".join(PENALTIES)}')


def _norm(x: jax.Array) -> jax.Array:
  """Euclidean norm over the last axis with a gradient that stays finite at zero."""
  squared = jnp.sum(jnp.square(x), axis=-1)
  safe = jnp.where(squared > 0, squared, 1.0)
  return jnp.where(squared > 0, jnp.sqrt(safe), 0.0)


# ----------------------------------------------------------------------------
# Geometric Complexity (thesis Chapter 8).
# ----------------------------------------------------------------------------

PROJECTIONS = ('rademacher', 'gaussian')


def _static_int(value: Any, name: str, minimum: int) -> int:
  if isinstance(value, bool):
    raise ValueError(f'{name} must be an int, got {value!r}')
  try:
    n = operator.index(value)
  except TypeError as e:
    raise ValueError(f'{name} must be a static Python int, got {value!r}') from e
  if n < minimum:
    raise ValueError(f'{name} must be >= {minimum}, got {n}')
  return n


def _batch_input(x: Any) -> jax.Array:
  """`x` as an array with a leading, non-empty batch axis; integer inputs become float32."""
  x = jnp.asarray(x)
  if x.ndim < 1 or x.shape[0] < 1:
    raise ValueError(f'inputs need a leading batch axis with at least one example, got shape {tuple(x.shape)}')
  if not jnp.issubdtype(x.dtype, jnp.floating):
    x = x.astype(jnp.float32)
  return x


def _batch_output_shape(f: Callable[[jax.Array], jax.Array], x: jax.Array) -> tuple[int, ...]:
  """The shape of `f(x)` without evaluating it, checked to be a batch of the same size as `x`."""
  out = jax.eval_shape(f, x)
  if not isinstance(out, jax.ShapeDtypeStruct):
    raise ValueError(f'f must return one array (the outputs of a batch), got {type(out).__name__}')
  if len(out.shape) < 1 or out.shape[0] != x.shape[0]:
    raise ValueError(
      f'f must map a batch to a batch: inputs of shape {tuple(x.shape)} gave outputs of shape {tuple(out.shape)}'
    )
  return tuple(out.shape)


def input_jacobians(f: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
  """The exact Jacobian df/dx of every example: shape (batch, *output_shape, *input_shape).

  Computed one example at a time under `jax.vmap`: `jax.jacrev` (one VJP per output) when an example has no more
  outputs than inputs, else `jax.jacfwd` (one JVP per input). `f` maps a batch to a batch and treats examples
  independently.
  """
  x = _batch_input(x)
  out_shape = _batch_output_shape(f, x)
  single = lambda xi: f(xi[None])[0]
  jac = jax.jacrev if math.prod(out_shape[1:]) <= math.prod(x.shape[1:]) else jax.jacfwd
  return jax.vmap(jac(single))(x)


def jacobian_sq_norms(f: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
  """‖df(x)/dx‖²_F, the squared Frobenius norm of each example's Jacobian: shape (batch,)."""
  jac = input_jacobians(f, x)
  return jnp.sum(jnp.square(jac.reshape(jac.shape[0], -1)), axis=-1)


def geometric_complexity(f: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
  """Geometric Complexity GC = (1/|D|) Σ_{x∈D} ‖df(x)/dx‖²_F (thesis Definition 8.2.1, Eq 8.1), exactly.

  Args:
    f: the logits (the network before its last activation, e.g. before the softmax), mapping a batch to a batch
      and treating examples independently.
    x: the data D (or a large batch of it), shape (batch, *input_shape).

  Returns:
    A scalar. For a deep linear network it is ‖W_n…W_1‖²_F whatever the data (Eq 8.5); for a ReLU network, the
    mean over the data of the squared norms of the linear pieces the examples fall in (Eq 8.6); it is at most
    min(I, O)·(∏_l σ_l)² for 1-Lipschitz activations (Remark 8.2.2, Eq 8.4).
  """
  return jnp.mean(jacobian_sq_norms(f, x))


def geometric_complexity_projected(
  f: Callable[[jax.Array], jax.Array],
  x: jax.Array,
  key: jax.Array,
  num_projections: int,
  distribution: str = 'rademacher',
) -> jax.Array:
  """An unbiased random-projection estimate of Geometric Complexity (Eq 8.1), for models with many outputs.

  For a random v with E[v vᵀ] = I, E_v ‖vᵀ J‖² = tr(Jᵀ E[v vᵀ] J) = ‖J‖²_F. Each example gets `num_projections`
  independent vectors v over its outputs, and the estimate is the mean over projections and examples of ‖vᵀ J‖²:
  `num_projections` vector-Jacobian products of the whole batch instead of one per output. Its variance per
  example and projection is Var(vᵀ M v) with M = J Jᵀ: 2 Σ_{i≠j} M_ij² for Rademacher v, 2‖M‖²_F for Gaussian v.

  Args:
    f: the logits, mapping a batch to a batch and treating examples independently.
    x: inputs, shape (batch, *input_shape).
    key: PRNG key for the projections.
    num_projections: a static, positive number of vectors per example.
    distribution: 'rademacher' (entries ±1; the smaller variance) or 'gaussian' (standard normal entries).

  Returns:
    A scalar whose expectation over `key` is `geometric_complexity(f, x)`.
  """
  n = _static_int(num_projections, 'num_projections', minimum=1)
  if distribution not in PROJECTIONS:
    raise ValueError(f'unknown projection distribution {distribution!r}; valid: {", ".join(PROJECTIONS)}')
  x = _batch_input(x)
  out, vjp = jax.vjp(f, x)
  if out.ndim < 1 or out.shape[0] != x.shape[0]:
    raise ValueError(
      f'f must map a batch to a batch: inputs of shape {tuple(x.shape)} gave outputs of shape {tuple(out.shape)}'
    )
  shape = (n, *out.shape)
  if distribution == 'rademacher':
    v = jax.random.rademacher(key, shape, out.dtype)
  else:
    v = jax.random.normal(key, shape, out.dtype)
  rows = jax.vmap(lambda vi: vjp(vi)[0])(v)  # (projections, batch, *input_shape): vᵀJ of each example
  return jnp.mean(jnp.sum(jnp.square(rows.reshape(n, x.shape[0], -1)), axis=-1))


# ----------------------------------------------------------------------------
# Product of spectral norms (thesis Section 6.2).
# ----------------------------------------------------------------------------


def layer_spectral_norms(
  params: Mapping[str, Any],
  specs: Sequence[LayerSpec],
  *,
  exact: bool = True,
  num_iterations: int = 20,
  key: jax.Array | None = None,
) -> dict[str, jax.Array]:
  """σ_l, the spectral norm of each layer's linear operator, by layer name.

  Args:
    params: haiku (or flax.linen) parameters holding each layer's weight (see `smoothrl.networks.spectral`).
    specs: the layers.
    exact: True: the largest singular value of the layer's operator matrix (`spectral.exact_sigma`; for a conv
      layer the matrix has prod(input_shape) columns, so keep it to small layers). False: `num_iterations` steps of
      power iteration from random vectors drawn from `key`, then σ = ‖A v‖ (`spectral.estimate`), a lower bound
      that approaches σ_l as the iterations grow.
    num_iterations: static number of power-iteration steps (exact=False only).
    key: PRNG key for the starting vectors (exact=False only).

  Returns:
    A dict from layer name to σ_l, differentiable in the weights (for the exact σ, d σ/dW = u vᵀ of the top
    singular pair when the top singular value is simple).
  """
  specs = tuple(specs)
  names = [s.name for s in specs]
  duplicates = sorted({n for n in names if names.count(n) > 1})
  if duplicates:
    raise ValueError(f'Duplicate layer names in specs: {duplicates}')
  if exact:
    return {s.name: spectral.exact_sigma(s, spectral._weight(params, s)) for s in specs}
  n = _static_int(num_iterations, 'num_iterations', minimum=1)
  if key is None:
    raise ValueError('power iteration (exact=False) needs a PRNG key for its starting vectors')
  if not specs:
    return {}
  sigmas, _ = spectral.estimate(specs, params, spectral.init_state(key, specs), n)
  return sigmas


def spectral_norm_product(
  params: Mapping[str, Any],
  specs: Sequence[LayerSpec],
  *,
  exact: bool = True,
  num_iterations: int = 20,
  key: jax.Array | None = None,
) -> jax.Array:
  """∏_l σ_l over the layers `specs`: an upper bound on the Lipschitz constant (l2 norms) of a network of these
  layers and 1-Lipschitz activations (thesis Section 6.2; Figure 6.6), and (∏σ_l)² bounds GC / min(I, O) (Eq 8.4).

  σ_l as in `layer_spectral_norms` (exact by default, or power iteration). 1.0 for no layers.
  """
  sigmas = layer_spectral_norms(params, specs, exact=exact, num_iterations=num_iterations, key=key)
  result = jnp.asarray(1.0, jnp.float32)
  for s in specs:
    result = result * sigmas[s.name]
  return result


# ----------------------------------------------------------------------------
# Local Lipschitz constants on a grid (thesis Appendix D.1).
# ----------------------------------------------------------------------------


def _box(low: Any, high: Any) -> tuple[jax.Array, jax.Array]:
  """The box's corners as floating vectors of one length, checked when they are concrete."""
  low, high = jnp.asarray(low), jnp.asarray(high)
  dtype = jnp.promote_types(jnp.result_type(low, high), jnp.float32)
  low, high = low.astype(dtype), high.astype(dtype)
  if low.ndim != 1 or high.shape != low.shape or low.shape[0] < 1:
    raise ValueError(
      f'low and high must be vectors of one length d >= 1 (the input dimension), got shapes '
      f'{tuple(low.shape)} and {tuple(high.shape)}'
    )
  if not isinstance(low, jax.core.Tracer) and not isinstance(high, jax.core.Tracer):
    lo, hi = np.asarray(low), np.asarray(high)
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
      raise ValueError(f'low and high must be finite, got low={lo}, high={hi}')
    if not np.all(hi > lo):
      raise ValueError(f'high must exceed low in every dimension, got low={lo}, high={hi}')
  return low, high


def grid_cell_centres(low: Any, high: Any, cells_per_dim: int) -> jax.Array:
  """The centres of the cells of `local_lipschitz_grid`: shape (cells_per_dim,)*d + (d,), entry [i_1, ..., i_d] the
  centre of the cell that is i_k-th from `low` along dimension k."""
  n = _static_int(cells_per_dim, 'cells_per_dim', minimum=1)
  low, high = _box(low, high)
  axes = [low[k] + (jnp.arange(n, dtype=low.dtype) + 0.5) * (high[k] - low[k]) / n for k in range(low.shape[0])]
  return jnp.stack(jnp.meshgrid(*axes, indexing='ij'), axis=-1)


def local_lipschitz_grid(
  f: Callable[[jax.Array], jax.Array],
  low: Any,
  high: Any,
  cells_per_dim: int,
  pairs_per_cell: int,
  key: jax.Array,
  *,
  cells_per_batch: int | None = None,
) -> jax.Array:
  """Local Lipschitz constants of `f` over a grid of cells (thesis Appendix D.1, Figure 6.5).

  The box [low, high] ⊂ R^d is split into cells_per_dim^d equal cells; in each, `pairs_per_cell` pairs (x, y) are
  drawn uniformly and the cell's value is max ‖f(x) − f(y)‖ / ‖x − y‖ (l2 norms, outputs flattened). Every value is
  a lower bound on the Lipschitz constant of `f` on its cell, approached as the pairs grow (the thesis used 2500
  cells of 2500 pairs on two moons).

  Args:
    f: maps a batch of inputs (batch, d) to a batch of outputs; examples independently.
    low, high: the box's corners, vectors of length d.
    cells_per_dim: static number of cells along each dimension.
    pairs_per_cell: static number of pairs per cell.
    key: PRNG key for the pairs.
    cells_per_batch: None evaluates every cell's pairs in one batch; an int evaluates that many cells at a time
      (`jax.lax.map`), to bound memory. The result does not depend on it.

  Returns:
    Shape (cells_per_dim,)*d: entry [i_1, ..., i_d] is the cell i_k-th from `low` along dimension k (its centre is
    `grid_cell_centres(low, high, cells_per_dim)[i_1, ..., i_d]`).
  """
  n = _static_int(cells_per_dim, 'cells_per_dim', minimum=1)
  pairs = _static_int(pairs_per_cell, 'pairs_per_cell', minimum=1)
  if cells_per_batch is not None:
    cells_per_batch = _static_int(cells_per_batch, 'cells_per_batch', minimum=1)
  low, high = _box(low, high)
  d = low.shape[0]
  num_cells = n**d
  width = (high - low) / n
  index = jnp.stack(jnp.unravel_index(jnp.arange(num_cells), (n,) * d), axis=-1).astype(low.dtype)  # row-major
  corners = low + index * width  # (cells, d)
  # Drawn at once (2·cells·pairs·d numbers), so that evaluating the cells in chunks sees the same pairs.
  unit = jax.random.uniform(key, (num_cells, 2, pairs, d), low.dtype)

  def cell(corner: jax.Array, u: jax.Array) -> jax.Array:
    points = corner + u * width  # (2, pairs, d)
    outputs = f(points.reshape(2 * pairs, d)).reshape(2, pairs, -1)
    numerator = jnp.sqrt(jnp.sum(jnp.square(outputs[0] - outputs[1]), axis=-1))
    denominator = jnp.sqrt(jnp.sum(jnp.square(points[0] - points[1]), axis=-1))
    ratio = jnp.where(denominator > 0, numerator / jnp.where(denominator > 0, denominator, 1.0), 0.0)
    return jnp.max(ratio)

  if cells_per_batch is None:
    values = jax.vmap(cell)(corners, unit)
  else:
    values = jax.lax.map(lambda args: cell(*args), (corners, unit), batch_size=cells_per_batch)
  return values.reshape((n,) * d)
