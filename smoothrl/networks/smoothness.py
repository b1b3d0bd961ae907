"""Smoothness of a critic measured on states (thesis Appendix E.2.2)."""

from __future__ import annotations

from typing import Callable

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
