"""Optax transforms for Adam with explicit ε placement, DIVGRAD and MULEPS."""

from __future__ import annotations

from smoothrl.optimizers.adam import EPS_PLACEMENTS
from smoothrl.optimizers.adam import AdamState
from smoothrl.optimizers.adam import EpsPlacement
from smoothrl.optimizers.adam import adam
from smoothrl.optimizers.adam import scale_by_adam
from smoothrl.optimizers.spectral_scaling import METHODS
from smoothrl.optimizers.spectral_scaling import InjectRhoState
from smoothrl.optimizers.spectral_scaling import RhoEstimatorLike
from smoothrl.optimizers.spectral_scaling import default_rho_power
from smoothrl.optimizers.spectral_scaling import divgrad
from smoothrl.optimizers.spectral_scaling import inject_rho
from smoothrl.optimizers.spectral_scaling import make_optimizer
from smoothrl.optimizers.spectral_scaling import muleps
from smoothrl.optimizers.spectral_scaling import rho_scaled_adam
from smoothrl.optimizers.spectral_scaling import scale_by_inverse_rho

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
