"""Hessian-vector products and the third-order contraction of a loss E(θ) over a parameter pytree.

Every function takes the loss as `fun(params, *args)` (a scalar) and is pure, so it runs under `jit` and `vmap`.
Notation as in the thesis (Chapter 3): g = ∇E, H = ∇²E, T[g, g]_k = Σ_ij g_i ∂³E/∂θ_i∂θ_k∂θ_j g_j.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

Params = Any
Loss = Callable[..., jax.Array]

FD_SCALE = 0.01  # ε = FD_SCALE / ‖g‖ for the finite-difference Hg (thesis Appendix A.3)


def tree_vdot(a: Params, b: Params) -> jax.Array:
  """⟨a, b⟩ summed over the leaves of two pytrees of one structure."""
  return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def tree_norm(a: Params) -> jax.Array:
  """The Euclidean norm of a pytree flattened into one vector."""
  return jnp.sqrt(sum(jnp.sum(jnp.abs(x) ** 2) for x in jax.tree.leaves(a)))


def tree_scale(c: jax.Array, a: Params) -> Params:
  return jax.tree.map(lambda x: c * x, a)


def hvp(fun: Loss, params: Params, v: Params, *args: Any) -> Params:
  """H(θ)v by forward-over-reverse differentiation: the JVP of ∇E at θ in the direction v."""
  return jax.jvp(lambda p: jax.grad(fun)(p, *args), (params,), (v,))[1]


def grad_and_hvp(fun: Loss, params: Params, *args: Any) -> tuple[Params, Params]:
  """(g, Hg) with g = ∇E(θ): one linearisation of ∇E at θ, applied to its own output.

  `jax.linearize` evaluates the gradient once and keeps what its JVP needs, so Hg costs one JVP and no second
  forward or backward pass.
  """
  g, jvp = jax.linearize(lambda p: jax.grad(fun)(p, *args), params)
  return g, jvp(g)


def value_grad_and_hvp(fun: Loss, params: Params, *args: Any, has_aux: bool = False) -> tuple[Any, Params, Params]:
  """(E, g, Hg) from one linearisation of (E, ∇E) at θ (see `grad_and_hvp`).

  With `has_aux`, `fun` returns (E, aux) and the first result is (E, aux), as in `jax.value_and_grad`.
  """
  value_and_grad = jax.value_and_grad(fun, has_aux=has_aux)
  if has_aux:
    ((value, g), jvp, aux) = jax.linearize(lambda p: _split_aux(value_and_grad(p, *args)), params, has_aux=True)
    return (value, aux), g, jvp(g)[1]
  (value, g), jvp = jax.linearize(lambda p: value_and_grad(p, *args), params)
  return value, g, jvp(g)[1]


def _split_aux(result: tuple[tuple[jax.Array, Any], Params]) -> tuple[tuple[jax.Array, Params], Any]:
  (value, aux), g = result
  return (value, g), aux


def fd_hvp(fun: Loss, params: Params, v: Params, eps: jax.Array | float, *args: Any) -> Params:
  """The forward difference [∇E(θ + εv) − ∇E(θ)]/ε ≈ H(θ)v."""
  grad = jax.grad(fun)
  shifted = jax.tree.map(lambda p, d: p + eps * d, params, v)
  return jax.tree.map(lambda a, b: (a - b) / eps, grad(shifted, *args), grad(params, *args))


def fd_grad_and_hvp(fun: Loss, params: Params, *args: Any, scale: float = FD_SCALE) -> tuple[Params, Params]:
  """(g, Hg) with Hg by the finite difference of thesis Appendix A.3: ε = scale/‖g‖, two gradient evaluations."""
  grad = jax.grad(fun)
  g = grad(params, *args)
  eps = scale / jnp.maximum(tree_norm(g), jnp.finfo(jnp.result_type(*jax.tree.leaves(g))).tiny)
  shifted = jax.tree.map(lambda p, d: p + eps * d, params, g)
  return g, jax.tree.map(lambda a, b: (a - b) / eps, grad(shifted, *args), g)


def third_order(fun: Loss, params: Params, g: Params | None = None, *args: Any) -> Params:
  """T[g, g]: the JVP of θ ↦ H(θ)g, with g held fixed, in the direction g (g = ∇E(θ) when not given)."""
  if g is None:
    g = jax.grad(fun)(params, *args)
  g = jax.lax.stop_gradient(g)
  return jax.jvp(lambda p: hvp(fun, p, g, *args), (params,), (g,))[1]
