"""Optax transforms: Adam with explicit ε placement, DIVGRAD and MULEPS, drift-adjusted learning rates (DAL,
DAL-p, momentum DAL) and ε schedules for Adam."""

from __future__ import annotations

from smoothrl.optimizers.adam import EPS_PLACEMENTS, AdamState, EpsPlacement, adam, scale_by_adam
from smoothrl.optimizers.dal import CURVATURES, Curvature, DALState, MomentumDALState, dal, dal_p, momentum_dal
from smoothrl.optimizers.schedules import exponential_eps_schedule, linear_eps_schedule, scheduled_eps_adam
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
  'CURVATURES',
  'EPS_PLACEMENTS',
  'METHODS',
  'AdamState',
  'Curvature',
  'DALState',
  'EpsPlacement',
  'InjectRhoState',
  'MomentumDALState',
  'RhoEstimatorLike',
  'adam',
  'dal',
  'dal_p',
  'default_rho_power',
  'divgrad',
  'exponential_eps_schedule',
  'inject_rho',
  'linear_eps_schedule',
  'make_optimizer',
  'momentum_dal',
  'muleps',
  'rho_scaled_adam',
  'scale_by_adam',
  'scale_by_inverse_rho',
  'scheduled_eps_adam',
)
