"""Spectral Normalisation of chosen layers, and DIVOUT's output scaling (thesis Section 7.3, Appendix E.2.1)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import haiku as hk
import jax
import jax.numpy as jnp


def scale(sigma: jax.Array, lipschitz: float | jax.Array = 1.0, always: bool = False) -> jax.Array:
  """SN's divisor of a layer's weights: max(sigma / K, 1), or sigma / K when `always`.

  The thesis' RL variant (Section 7.3) normalises only when sigma > 1 (K = 1); Figure E.3 sweeps K; `always` is
  Miyato et al.'s W / (sigma / K).
  """
  ratio = sigma / lipschitz
  return ratio if always else jnp.maximum(ratio, 1.0)


def scales(
  sigmas: Mapping[str, jax.Array], names: Sequence[str], lipschitz: float | jax.Array = 1.0, always: bool = False
) -> dict[str, jax.Array]:
  """`scale` of each named layer: what the critic divides their outputs before the bias by (`critics.Linear`)."""
  return {name: scale(sigmas[name], lipschitz, always) for name in names}


def scales_where(
  sigmas: Mapping[str, jax.Array],
  active: Mapping[str, jax.Array],
  lipschitz: float | jax.Array = 1.0,
  always: bool = False,
) -> dict[str, jax.Array]:
  """`scales` with a (possibly traced) bool per layer: `scale` where `active[l]`, else an exact 1, so each choice
  of `active` gives the values of `scales` on the layers it selects."""
  return {name: jnp.where(on, scale(sigmas[name], lipschitz, always), 1.0) for name, on in active.items()}


def normalise(
  params: hk.Params,
  sigmas: Mapping[str, jax.Array],
  names: Sequence[str],
  lipschitz: float | jax.Array = 1.0,
  always: bool = False,
) -> hk.Params:
  """The named layers' weights divided by their `scale` (biases are left as they are, as in Miyato et al.).

  A network on these weights computes what the critic computes by dividing the layers' outputs instead. Whether
  gradients flow through sigma is the caller's choice (pass `jax.lax.stop_gradient(sigmas)` for the thesis'
  default).
  """
  out = dict(params)
  for name, s in scales(sigmas, names, lipschitz, always).items():
    out[name] = dict(params[name], w=params[name]['w'] / s)
  return out


def divout(output: jax.Array, rho: jax.Array) -> jax.Array:
  """DIVOUT (Eq 7.13): the unnormalised network's output over rho = prod(sigma), rho held constant."""
  return output / jax.lax.stop_gradient(rho)
