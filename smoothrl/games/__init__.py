"""Two-player differentiable games and their discretisation drift (thesis Chapter 4, Appendix B).

- `game`: a game as the players' losses over two parameter pytrees (φ first, the discriminator; then θ), zero-sum
  and common-payoff games, the vector fields f = −∇_φE_φ, g = −∇_θE_θ, the drift terms f_φ f, f_θ g, g_φ f, g_θ g
  by JVPs, and explicit regularisation on those terms.
- `updates`: simultaneous and alternating updates (m steps of φ, then k of θ) with any optax optimiser per player
  and per-player rates v_φh, v_θh; RK4 for games; `rollout` in one `lax.scan`.
- `drift`: the modified flows of Theorems 4.2.1, 4.2.2 (each player's clock) and 4.7.1, 4.7.2 (the same physical
  time), RK4's drift, the modified losses of Corollaries 4.4.1, 4.5.1, 4.5.2, 4.7.1, 4.7.2, a fine RK4
  integrator and one-step errors, dense Jacobians for stability analysis.
- `regularisers`: Table 4.2 (cancelling the interaction terms, strengthening the self terms, SGA, consensus
  optimisation, locally-stable GAN, ODE-GAN) and the minibatch penalties with the unbiased two-half estimator.
- `pf`: the game principal flow (1/h) log(I − hH) H⁻¹(−u) and its stability test |1 − hλ| < 1 (Section 4.8).
- `dirac`: Dirac-GAN and its closed forms (Section 4.5.1, B.6).

Everything is a pure function of parameter pytrees; it runs under `jax.jit` and `jax.vmap`. This package depends on
jax, optax, `smoothrl.curvature` and `smoothrl.flows.coefficients` only.
"""

from __future__ import annotations

from smoothrl.games import dirac, drift, game, pf, regularisers, updates
from smoothrl.games.drift import (
  CLOCKS,
  DriftCoefficients,
  OneStep,
  drift_coefficients,
  flow_field,
  integrate,
  jacobian,
  modified_field,
  modified_loss_coefficients,
  modified_losses,
  one_step,
  one_step_error,
)
from smoothrl.games.game import (
  NO_REGULARISER,
  DriftTerms,
  Game,
  Regulariser,
  common_payoff,
  drift_terms,
  zero_sum,
)
from smoothrl.games.pf import PFMatrix, PFStability, negative_jacobian, pf_matrix, pf_stability, principal_field
from smoothrl.games.regularisers import (
  cancel_interaction,
  consensus,
  explicit,
  locally_stable,
  ode_gan,
  sga,
  split_halves,
  strengthen_self,
  unbiased_squared_norm,
  zero_sum_penalties,
)
from smoothrl.games.updates import SCHEMES, GameState, GameUpdate, Trajectory, make_update, rollout

__all__ = (
  'CLOCKS',
  'NO_REGULARISER',
  'SCHEMES',
  'DriftCoefficients',
  'DriftTerms',
  'Game',
  'GameState',
  'GameUpdate',
  'OneStep',
  'PFMatrix',
  'PFStability',
  'Regulariser',
  'Trajectory',
  'cancel_interaction',
  'common_payoff',
  'consensus',
  'dirac',
  'drift',
  'drift_coefficients',
  'drift_terms',
  'explicit',
  'flow_field',
  'game',
  'integrate',
  'jacobian',
  'locally_stable',
  'make_update',
  'modified_field',
  'modified_loss_coefficients',
  'modified_losses',
  'negative_jacobian',
  'ode_gan',
  'one_step',
  'one_step_error',
  'pf',
  'pf_matrix',
  'pf_stability',
  'principal_field',
  'regularisers',
  'rollout',
  'sga',
  'split_halves',
  'strengthen_self',
  'unbiased_squared_norm',
  'updates',
  'zero_sum',
  'zero_sum_penalties',
)
