"""Dirac-GAN (Mescheder et al.; thesis Section 4.5.1, Appendix B.6): the game and its closed forms.

The generator G(z; θ) = θ models a Dirac at θ, the discriminator is D(x; φ) = φx, the data is a Dirac at 0, and

  E(φ, θ) = l(θφ) + l(0),   l(z) = −log(1 + e^{−z}),                                  (Eq 4.35)

a zero-sum game (E_φ = −E, E_θ = E) with f = ∇_φE = l′(θφ)θ and g = −∇_θE = −l′(θφ)φ (Eq 4.37), l′(z) = σ(−z),
l′(0) = 1/2. Its only equilibrium is φ = θ = 0. Closed forms (v_φ = v_θ = 1 unless a rate is given):

- the flow conserves θ² + φ² (Eq 4.38);
- one simultaneous Euler step multiplies θ² + φ² by exactly 1 + h²l′(θφ)²;
- along the modified flow of simultaneous steps, d(θ² + φ²)/dt = h l′(θφ)²(θ² + φ²) > 0 (Eq 4.39, B.217);
- at the equilibrium, the modified flows' Jacobians (Eqs B.222, B.224) and the discrete updates' linear maps.

With the regularisers E_φ = −E + γ‖∇_θE‖², E_θ = E + ζ‖∇_φE‖² (B.6.3) the modified flow of simultaneous steps has
the Jacobian [[(hv_φ/2 − 2γ)c², c], [−c, (hv_θ/2 − 2ζ)c²]], c = l′(0), up to O(h²) terms: the equilibrium is
asymptotically stable for γ > hv_φ/4 and ζ > hv_θ/4 (a centre at equality, where the interaction terms cancel).
The discrete simultaneous map has determinant (1 − a)(1 − b) + v_φv_θh²c², a = 2γv_φhc², b = 2ζv_θhc², its
eigenvalues' squared modulus when complex: at γ = hv/4, ζ = hv/4 with v_φ = v_θ = v that is 1 + v⁴h⁴c⁴/4, on the
unit circle up to O(h⁴); below, the iterates spiral out, above they converge.

With unequal rates the per-player thresholds decide the player clock's modified flow only: the discrete map is
stable to first order iff a + b > v_φv_θh²c², i.e. γv_φ + ζv_θ > hv_φv_θ/2, which is the trace condition of the
same-physical-time flow (Section 4.7), met with equality by its cancelling coefficients γ = hv_θ/4, ζ = hv_φ/4.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from smoothrl.games import regularisers
from smoothrl.games.drift import Clock, drift_coefficients
from smoothrl.games.game import Game, Regulariser, zero_sum

L_PRIME_0 = 0.5  # l′(0) = σ(0)


def loss_l(z: jax.Array) -> jax.Array:
  """l(z) = −log(1 + e^{−z}) = −softplus(−z), the l of Eq 4.35."""
  return -jax.nn.softplus(-z)


def l_prime(z: jax.Array) -> jax.Array:
  """l′(z) = e^{−z}/(1 + e^{−z}) = σ(−z)."""
  return jax.nn.sigmoid(-z)


def value(phi: jax.Array, theta: jax.Array) -> jax.Array:
  """E(φ, θ) = l(θφ) + l(0) (Eq 4.35) for scalar φ, θ (or arrays of one shape, summed)."""
  return jnp.sum(loss_l(theta * phi)) + loss_l(jnp.zeros(()))


def game(regulariser: Regulariser | None = None) -> Game:
  """The zero-sum Dirac-GAN, optionally with explicit regularisers (`smoothrl.games.regularisers`)."""
  return zero_sum(value, regulariser if regulariser is not None else Regulariser())


def regularised(gamma: Any, zeta: Any) -> Game:
  """The Dirac-GAN of B.6.3: E_φ = −E + γ‖∇_θE‖², E_θ = E + ζ‖∇_φE‖²."""
  return game(regularisers.explicit(gamma, zeta))


def fields(phi: jax.Array, theta: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(f, g) = (l′(θφ)θ, −l′(θφ)φ) (Eq 4.37)."""
  lp = l_prime(theta * phi)
  return lp * theta, -lp * phi


def euler_radius_factor(phi: jax.Array, theta: jax.Array, h: Any) -> jax.Array:
  """(θ₁² + φ₁²)/(θ² + φ²) = 1 + h²l′(θφ)² for one simultaneous Euler step at rate h for both players."""
  return 1 + h**2 * l_prime(theta * phi) ** 2


def modified_radius_rate(phi: jax.Array, theta: jax.Array, h: Any) -> jax.Array:
  """d(θ² + φ²)/dt = h l′(θφ)²(θ² + φ²) along the modified flow of simultaneous steps (Eq 4.39, B.217)."""
  return h * l_prime(theta * phi) ** 2 * (theta**2 + phi**2)


def stability_thresholds(h: Any, v_phi: Any = 1.0, v_theta: Any = 1.0) -> tuple[Any, Any]:
  """(hv_φ/4, hv_θ/4): the γ and ζ above which the regularised simultaneous Dirac-GAN converges (B.6.3)."""
  return h * v_phi / 4, h * v_theta / 4


def modified_jacobian(
  h: Any,
  *,
  scheme: str = 'simultaneous',
  clock: Clock = 'player',
  v_phi: Any = 1.0,
  v_theta: Any = 1.0,
  gamma: Any = 0.0,
  zeta: Any = 0.0,
) -> jax.Array:
  """The Jacobian at the equilibrium of the modified flow of `scheme` on `clock` (φ first):

    [[a_φ(−2γ)c² + h i_φ c², a_φ c], [−a_θ c, a_θ(−2ζ)c² + h i_θ c²]]

  with the coefficients of `drift.drift_coefficients`; exact without regularisers (Eq B.222 for simultaneous
  steps), to first order in γ, ζ with them (Eq B.224)."""
  co = drift_coefficients(scheme, v_phi=v_phi, v_theta=v_theta, clock=clock)
  c = L_PRIME_0
  return jnp.array(
    [
      [co.phi_rate * (-2 * gamma) * c**2 + h * co.phi_interaction * c**2, co.phi_rate * c],
      [-co.theta_rate * c, co.theta_rate * (-2 * zeta) * c**2 + h * co.theta_interaction * c**2],
    ]
  )


def linearised_update(
  h: Any,
  *,
  scheme: str = 'simultaneous',
  v_phi: Any = 1.0,
  v_theta: Any = 1.0,
  gamma: Any = 0.0,
  zeta: Any = 0.0,
) -> jax.Array:
  """The linear map (φ, θ) ↦ (φ₁, θ₁) of one gradient-descent update at the equilibrium (φ first), with the
  regularisers γ, ζ: simultaneous [[1 − a, v_φhc], [−v_θhc, 1 − b]]; alternating (φ first, then θ at the new φ)
  [[1 − a, v_φhc], [−v_θhc(1 − a), 1 − b − v_φv_θh²c²]]; a = 2γv_φhc², b = 2ζv_θhc²."""
  if scheme not in ('simultaneous', 'alternating'):
    raise ValueError(f'linearised_update takes scheme simultaneous or alternating, got {scheme!r}')
  c = L_PRIME_0
  a = 2 * gamma * v_phi * h * c**2
  b = 2 * zeta * v_theta * h * c**2
  if scheme == 'simultaneous':
    return jnp.array([[1 - a, v_phi * h * c], [-v_theta * h * c, 1 - b]])
  return jnp.array([[1 - a, v_phi * h * c], [-v_theta * h * c * (1 - a), 1 - b - v_phi * v_theta * h**2 * c**2]])
