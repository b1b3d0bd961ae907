"""Spectral Normalisation of chosen layers, and DIVOUT's output scaling (thesis Section 7.3, Appendix E.2.1)."""

from __future__ import annotations

from typing import Mapping, Sequence

import haiku as hk
import jax
import jax.numpy as jnp


def normalise(params: hk.Params, sigmas: Mapping[str, jax.Array], names: Sequence[str],
              lipschitz: float = 1.0, always: bool = False) -> hk.Params:
  """Divides the weights of the named layers by max(sigma / K, 1), or by sigma / K when `always`.

  The thesis' RL variant (Section 7.3) normalises only when sigma > 1 (K = 1); Figure E.3 sweeps K. Biases are left
  as they are, as in Miyato et al. Whether gradients flow through sigma is the caller's choice (pass
  `jax.lax.stop_gradient(sigmas)` for the thesis' default).
  """
  out = dict(params)
  for name in names:
    scale = sigmas[name] / lipschitz
    if not always:
      scale = jnp.maximum(scale, 1.0)
    out[name] = dict(params[name], w=params[name]['w'] / scale)
  return out


def normalise_where(params: hk.Params, sigmas: Mapping[str, jax.Array], active: Mapping[str, jax.Array],
                    lipschitz: float = 1.0, always: bool = False) -> hk.Params:
  """`normalise` with a (possibly traced) bool per layer: layer l is normalised where `active[l]`, else unchanged.

  An inactive layer's weights are divided by an exact 1, so each choice of `active` gives `normalise`'s values on
  the layers it selects.
  """
  out = dict(params)
  for name, on in active.items():
    scale = sigmas[name] / lipschitz
    if not always:
      scale = jnp.maximum(scale, 1.0)
    out[name] = dict(params[name], w=params[name]['w'] / jnp.where(on, scale, 1.0))
  return out


def divout(output: jax.Array, rho: jax.Array) -> jax.Array:
  """DIVOUT (Eq 7.13): the unnormalised network's output over rho = prod(sigma), rho held constant."""
  return output / jax.lax.stop_gradient(rho)
