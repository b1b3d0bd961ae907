"""Optax transforms for Adam with explicit ε placement, DIVGRAD and MULEPS."""

from __future__ import annotations

from smoothrl.optimizers.adam import EPS_PLACEMENTS, AdamState, EpsPlacement, adam, scale_by_adam
from smoothrl.optimizers.spectral_scaling import (
  METHODS,
  InjectRhoState,
  RhoEstimatorLike,
  default_rho_power,
  divgrad,
  inject_rho,
  make_optimizer,
  muleps,
  rho_scaled_adam,
  scale_by_inverse_rho,
)

__all__ = (
  'EPS_PLACEMENTS',
  'METHODS',
  'AdamState',
  'EpsPlacement',
  'InjectRhoState',
  'RhoEstimatorLike',
  'adam',
  'default_rho_power',
  'divgrad',
  'inject_rho',
  'make_optimizer',
  'muleps',
  'rho_scaled_adam',
  'scale_by_adam',
  'scale_by_inverse_rho',
)
