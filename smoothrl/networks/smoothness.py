"""Smoothness of a critic measured on states (thesis Appendix E.2.2)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp


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
