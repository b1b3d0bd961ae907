"""The explicit regularisers of thesis Table 4.2 as coefficients on the drift terms, and the same penalties as
extra losses for minibatch training (Sections 4.6.3, B.5, B.8.1).

Each constructor returns a `games.Regulariser` (c_φ,self, c_φ,int, c_θ,int, c_θ,self): the coefficients of
‖∇_φE‖² and ‖∇_θE‖² added to each player's loss in a zero-sum game E_φ = −E, E_θ = E,

| regulariser | first player φ | second player θ |
|---|---|---|
| cancel interaction terms, simultaneous | (v_φh/4)‖∇_θE‖² | (v_θh/4)‖∇_φE‖² |
| cancel interaction terms, alternating | (v_φh/4)‖∇_θE‖² | −((2v_φ − v_θ)h/4)‖∇_φE‖² |
| strengthen self terms | (v_φh/4)‖∇_φE‖² | (v_θh/4)‖∇_θE‖² |
| SGA (Eq B.198 with ζ < 0 written as ζ > 0) | (ζ/2)‖∇_θE‖² | (ζ/2)‖∇_φE‖² |
| consensus optimisation | ζ(‖∇_φE‖² + ‖∇_θE‖²) | ζ(‖∇_φE‖² + ‖∇_θE‖²) |
| locally-stable GAN | – | ζ‖∇_φE‖² |
| ODE-GAN style | ζ‖∇_θE‖² | – |

A coefficient c on a term moves the player's update by 2c times that drift term (`smoothrl.games.game`), so the
drift's own coefficients give the ones that cancel it: the interaction drift −h i f_θ g of a flow with field
factor a (`drift.drift_coefficients`) is cancelled by c = h i/(2a), which is the table's first two rows on the
player clock and Table 4.1's v_θh/4 (φ) and v_φh/4 or −v_φh/4 (θ; simultaneous, alternating) on the shared clock.
Strengthening the self terms adds the drift's own self coefficient, c = h s/(2a) (v h/4 for simultaneous updates,
v_φh/4m and v_θh/4k for alternating ones).

For minibatches, ‖∇L‖² of a mean loss needs two independent halves of the batch: with a = ∇L(x₁), b = ∇L(x₂),
aᵀb is an unbiased estimate of the value. Its gradient through a alone, ∇(aᵀ stop_grad(b)), has expectation
(∂∇L)ᵀ∇L, half of ∇‖∇L‖²; `unbiased_squared_norm` returns 2aᵀ stop_grad(b) − stop_grad(aᵀb), whose value is aᵀb
and whose gradient 2(∂a)ᵀb is unbiased for ∇‖∇L‖² (Eq B.245's estimator), with one second-order pass.
"""

from __future__ import annotations

from typing import Any, Literal

import jax
import jax.numpy as jnp

from smoothrl.curvature.products import tree_norm, tree_vdot
from smoothrl.games.drift import Clock, drift_coefficients
from smoothrl.games.game import Loss, Params, Regulariser

PLAYERS: tuple[str, ...] = ('both', 'phi', 'theta')
Players = Literal['both', 'phi', 'theta']


def _check_players(players: str) -> None:
  if players not in PLAYERS:
    raise ValueError(f'unknown players {players!r}; valid: {", ".join(PLAYERS)}')


def cancel_interaction(
  h: Any,
  *,
  scheme: str = 'simultaneous',
  v_phi: Any = 1.0,
  v_theta: Any = 1.0,
  clock: Clock = 'player',
  players: Players = 'both',
) -> Regulariser:
  """The coefficients that cancel the interaction terms of the drift of `scheme` (Table 4.2 rows 1–2 on the
  player clock, Table 4.1 on the shared clock); `players` 'phi' cancels only the first player's (the
  discriminator's) term, as Section 4.6.3 recommends for alternating updates."""
  _check_players(players)
  c = drift_coefficients(scheme, v_phi=v_phi, v_theta=v_theta, clock=clock)
  phi = h * c.phi_interaction / (2 * c.phi_rate) if players in ('both', 'phi') else 0.0
  theta = h * c.theta_interaction / (2 * c.theta_rate) if players in ('both', 'theta') else 0.0
  return Regulariser(phi_interaction=phi, theta_interaction=theta)


def strengthen_self(
  h: Any,
  *,
  scheme: str = 'simultaneous',
  v_phi: Any = 1.0,
  v_theta: Any = 1.0,
  m: int = 1,
  k: int = 1,
  clock: Clock = 'player',
) -> Regulariser:
  """Coefficients equal to the drift's own self terms, doubling them (Section 4.6.3: s_φ = v_φh/4, s_θ = v_θh/4
  for simultaneous updates)."""
  c = drift_coefficients(scheme, v_phi=v_phi, v_theta=v_theta, m=m, k=k, clock=clock)
  return Regulariser(phi_self=h * c.phi_self / (2 * c.phi_rate), theta_self=h * c.theta_self / (2 * c.theta_rate))


def sga(zeta: Any = 1.0) -> Regulariser:
  """Symplectic gradient adjustment without alignment as losses (Eqs B.199–B.200): (ζ/2)‖∇_θE‖² on φ and
  (ζ/2)‖∇_φE‖² on θ (the thesis' ζ < 0 of Eq B.198 is −ζ here)."""
  return Regulariser(phi_interaction=zeta / 2, theta_interaction=zeta / 2)


def consensus(zeta: Any) -> Regulariser:
  """Consensus optimisation (Eqs 4.42–4.43 with s = c = ζ): ζ(‖∇_φE‖² + ‖∇_θE‖²) on both players."""
  return Regulariser(zeta, zeta, zeta, zeta)


def locally_stable(zeta: Any) -> Regulariser:
  """Locally-stable GAN: ζ‖∇_φE‖² on the second player (the generator) only."""
  return Regulariser(theta_interaction=zeta)


def ode_gan(zeta: Any) -> Regulariser:
  """ODE-GAN style: ζ‖∇_θE‖² on the first player (the discriminator) only."""
  return Regulariser(phi_interaction=zeta)


def explicit(gamma: Any, zeta: Any) -> Regulariser:
  """Eqs 4.40–4.41 (and B.6.3): E_φ = −E + γ‖∇_θE‖², E_θ = E + ζ‖∇_φE‖²."""
  return Regulariser(phi_interaction=gamma, theta_interaction=zeta)


def unbiased_squared_norm(a: Params, b: Params) -> jax.Array:
  """2aᵀ stop_grad(b) − stop_grad(aᵀb) for the gradients a = ∇L(x₁), b = ∇L(x₂) of two independent halves of a
  batch: the value aᵀb is unbiased for ‖∇L‖², and the gradient 2(∂a)ᵀb for ∇‖∇L‖² (module docstring)."""
  b = jax.lax.stop_gradient(b)
  dot = jnp.real(tree_vdot(a, b))
  return 2 * dot - jax.lax.stop_gradient(dot)


def split_halves(batch: Params) -> tuple[Params, Params]:
  """The two halves of a batch along the leading axis of every leaf (an even size)."""
  sizes = {x.shape[0] if getattr(x, 'ndim', 0) else None for x in jax.tree.leaves(batch)}
  if len(sizes) != 1 or None in sizes or next(iter(sizes)) % 2:
    raise ValueError(
      f'split_halves needs leaves with one even leading size, got leading sizes {sorted(map(str, sizes))}'
    )
  n = next(iter(sizes)) // 2
  return jax.tree.map(lambda x: x[:n], batch), jax.tree.map(lambda x: x[n:], batch)


def zero_sum_penalties(value: Loss, regulariser: Regulariser, *, halves: bool = False) -> tuple[Loss, Loss]:
  """The regulariser's penalties of the zero-sum game of E as extra losses (R_φ, R_θ), each
  `(phi, theta, batch, *rest) -> scalar`:

    R_φ = c_φ,self ‖∇_φE‖² + c_φ,int ‖∇_θE‖²,   R_θ = c_θ,int ‖∇_φE‖² + c_θ,self ‖∇_θE‖²,

  add R_φ to the first player's loss (−E) and R_θ to the second's (E). With `halves`, E's gradients come from the
  two halves of `batch` (`split_halves`) and each norm is `unbiased_squared_norm`; without, from the whole batch
  (exact for a full batch, biased for a minibatch)."""
  if not isinstance(regulariser, Regulariser):
    raise ValueError(f'regulariser must be a games.Regulariser, got {regulariser!r}')
  grads = jax.grad(value, (0, 1))

  def norms(phi, theta, *args):
    if not halves:
      g_phi, g_theta = grads(phi, theta, *args)
      return tree_norm(g_phi) ** 2, tree_norm(g_theta) ** 2
    if not args:
      raise ValueError('zero_sum_penalties with halves=True needs a batch: R(phi, theta, batch, *rest)')
    first, second = split_halves(args[0])
    a = grads(phi, theta, first, *args[1:])
    b = grads(phi, theta, second, *args[1:])
    return unbiased_squared_norm(a[0], b[0]), unbiased_squared_norm(a[1], b[1])

  c = regulariser

  def penalty_phi(phi, theta, *args):
    n_phi, n_theta = norms(phi, theta, *args)
    return c.phi_self * n_phi + c.phi_interaction * n_theta

  def penalty_theta(phi, theta, *args):
    n_phi, n_theta = norms(phi, theta, *args)
    return c.theta_interaction * n_phi + c.theta_self * n_theta

  return penalty_phi, penalty_theta
