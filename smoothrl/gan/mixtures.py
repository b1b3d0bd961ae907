"""Mixtures of isotropic Gaussians in 2-D: the ring of 8 and the grid of 25 of the unrolled-GAN and VEEGAN papers.

A mixture has K means μ_k and one standard deviation s; a sample picks k uniformly and adds s·N(0, I). The ring has
8 modes on a circle of radius 2 with s = 0.02 (Metz et al.; Srivastava et al.); the grid has 25 modes at
{−4, −2, 0, 2, 4}² with s = 0.05 (Srivastava et al.).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Mixture(NamedTuple):
  """K equally weighted isotropic Gaussians: `means` (K, D) and one standard deviation `std`."""

  means: np.ndarray
  std: float
  name: str = 'mixture'

  @property
  def num_modes(self) -> int:
    return int(self.means.shape[0])

  def sample(self, key: jax.Array, n: int) -> jax.Array:
    """n samples (n, D): a uniformly drawn mode plus std·N(0, I)."""
    return sample(self, key, n)


def mixture(means: np.ndarray, std: float, name: str = 'mixture') -> Mixture:
  """A mixture of the Gaussians N(μ_k, std² I), refusing a bad mean array or a std ≤ 0."""
  means = np.asarray(means, np.float32)
  if means.ndim != 2 or means.shape[0] < 1 or means.shape[1] < 1:
    raise ValueError(f'means must be a (K, D) array with K, D >= 1, got shape {means.shape}')
  if not np.all(np.isfinite(means)):
    raise ValueError('means must be finite')
  if isinstance(std, bool) or not isinstance(std, (int, float, np.floating)) or not math.isfinite(std) or std <= 0:
    raise ValueError(f'std must be a finite number > 0, got {std!r}')
  return Mixture(means, float(std), name)


def ring(num_modes: int = 8, radius: float = 2.0, std: float = 0.02) -> Mixture:
  """`num_modes` Gaussians at angles 2πk/K on a circle of `radius` (8, 2, 0.02: the ring of 8)."""
  if isinstance(num_modes, bool) or not isinstance(num_modes, int) or num_modes < 1:
    raise ValueError(f'num_modes must be an int >= 1, got {num_modes!r}')
  if not radius > 0:
    raise ValueError(f'radius must be > 0, got {radius!r}')
  angles = 2 * np.pi * np.arange(num_modes) / num_modes
  return mixture(radius * np.stack([np.cos(angles), np.sin(angles)], axis=1), std, f'ring{num_modes}')


def grid(side: int = 5, spacing: float = 2.0, std: float = 0.05) -> Mixture:
  """side² Gaussians on a square grid centred at 0 with `spacing` between neighbours (5, 2, 0.05: the grid of 25)."""
  if isinstance(side, bool) or not isinstance(side, int) or side < 1:
    raise ValueError(f'side must be an int >= 1, got {side!r}')
  if not spacing > 0:
    raise ValueError(f'spacing must be > 0, got {spacing!r}')
  ticks = spacing * (np.arange(side) - (side - 1) / 2)
  xs, ys = np.meshgrid(ticks, ticks, indexing='ij')
  return mixture(np.stack([xs.ravel(), ys.ravel()], axis=1), std, f'grid{side * side}')


def sample(mixture: Mixture, key: jax.Array, n: int) -> jax.Array:
  """n samples of `mixture` (n, D), float32; jittable, with `n` static."""
  mode_key, noise_key = jax.random.split(key)
  means = jnp.asarray(mixture.means)
  modes = jax.random.randint(mode_key, (n,), 0, means.shape[0])
  return means[modes] + mixture.std * jax.random.normal(noise_key, (n, means.shape[1]), jnp.float32)
