"""Two-player differentiable games (thesis Chapter 4): the players' losses, their vector fields, the drift terms
of BEA computed with JVPs, and explicit regularisation on those terms.

The first player φ (a GAN's discriminator) minimises E_φ(φ, θ), the second player θ (the generator) minimises
E_θ(φ, θ); their vector fields are f = −∇_φE_φ and g = −∇_θE_θ (Section 4.2). A zero-sum game has E_φ = −E and
E_θ = E (so f = ∇_φE, g = −∇_θE); a common-payoff game has E_φ = E_θ = E.

The first-order drift of every scheme of the chapter is built from four products of the Jacobian of (f, g) with
(f, g) itself (Theorems 4.2.1, 4.2.2):

  self terms:         f_φ f = (df/dφ) f,   g_θ g = (dg/dθ) g;
  interaction terms:  f_θ g = (df/dθ) g,   g_φ f = (dg/dφ) f.

`drift_terms` computes the four with one linearisation of (f, g) at (φ, θ) applied to the tangents (f, 0) and
(0, g): two JVPs, no Jacobian matrix.

Explicit regularisation (Section 4.6.3, Table 4.2) adds, to each player's loss, a coefficient times each of the two
gradient norms of a zero-sum game:

  E_φ + c_φ,self ‖∇_φE‖² + c_φ,int ‖∇_θE‖²,    E_θ + c_θ,int ‖∇_φE‖² + c_θ,self ‖∇_θE‖².

In a zero-sum game ∇_φ‖∇_φE‖² = 2 f_φ f, ∇_φ‖∇_θE‖² = −2 f_θ g, ∇_θ‖∇_φE‖² = −2 g_φ f and
∇_θ‖∇_θE‖² = 2 g_θ g (Eqs B.95–B.98), so the regularised gradients are

  ∇_φE_φ + 2c_φ,self f_φ f − 2c_φ,int f_θ g,    ∇_θE_θ − 2c_θ,int g_φ f + 2c_θ,self g_θ g.

`Game.gradients` applies these forms to any game, with f and g the players' unregularised fields: in a zero-sum
game they are exactly the gradients of the norms above, in any game a coefficient c on a term moves the player's
update by 2c times that drift term, which is how Table 4.2's coefficients cancel or strengthen the drift whatever
the game. The players' losses of a regularised game are left as they were.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

Params = Any
Loss = Callable[..., jax.Array]  # loss(phi, theta, *args) -> scalar
Field = Callable[..., tuple[Params, Params]]  # field(phi, theta, *args) -> (phi_dot, theta_dot)


class Regulariser(NamedTuple):
  """Coefficients of the explicit regularisers of Table 4.2 on the two gradient norms of each player.

  Attributes:
    phi_self: c_φ,self, on ‖∇_φE‖² in the first player's loss (the self term f_φ f).
    phi_interaction: c_φ,int, on ‖∇_θE‖² in the first player's loss (the interaction term f_θ g).
    theta_interaction: c_θ,int, on ‖∇_φE‖² in the second player's loss (the interaction term g_φ f).
    theta_self: c_θ,self, on ‖∇_θE‖² in the second player's loss (the self term g_θ g).
  """

  phi_self: Any = 0.0
  phi_interaction: Any = 0.0
  theta_interaction: Any = 0.0
  theta_self: Any = 0.0

  def plus(self, other: Regulariser) -> Regulariser:
    """The coefficients of both regularisers added (e.g. cancelling the interaction terms and strengthening the
    self terms)."""
    return Regulariser(*(a + b for a, b in zip(self, other)))

  def is_zero(self) -> bool:
    """True when every coefficient is a Python or concrete zero (a traced coefficient counts as nonzero)."""
    for c in self:
      try:
        if bool(jnp.any(jnp.asarray(c) != 0)):
          return False
      except jax.errors.ConcretizationTypeError:  # a traced coefficient, e.g. under vmap over coefficients
        return False
    return True


NO_REGULARISER = Regulariser()


class DriftTerms(NamedTuple):
  """The players' fields and the four Jacobian-field products of the first-order drift (Theorems 4.2.1, 4.2.2).

  Attributes:
    f: −∇_φE_φ.
    g: −∇_θE_θ.
    f_phi_f: (df/dφ) f, the first player's self term.
    f_theta_g: (df/dθ) g, the first player's interaction term.
    g_phi_f: (dg/dφ) f, the second player's interaction term.
    g_theta_g: (dg/dθ) g, the second player's self term.
  """

  f: Params
  g: Params
  f_phi_f: Params
  f_theta_g: Params
  g_phi_f: Params
  g_theta_g: Params


def _check_loss(name: str, loss: Any) -> None:
  if not callable(loss):
    raise ValueError(f'{name} must be a callable loss(phi, theta, *args) -> scalar, got {loss!r}')


@dataclasses.dataclass(frozen=True)
class Game:
  """A two-player differentiable game given by the players' losses over two parameter pytrees, φ first.

  Attributes:
    loss_phi: E_φ(φ, θ, *args), minimised by the first player (the discriminator).
    loss_theta: E_θ(φ, θ, *args), minimised by the second player (the generator).
    regulariser: the explicit regularisers of Table 4.2 added to the players' gradients (see the module
      docstring); none by default.
    value: E for a zero-sum game (E_φ = −E, E_θ = E), else None.
  """

  loss_phi: Loss
  loss_theta: Loss
  regulariser: Regulariser = NO_REGULARISER
  value: Loss | None = None

  def __post_init__(self):
    _check_loss('loss_phi', self.loss_phi)
    _check_loss('loss_theta', self.loss_theta)
    if not isinstance(self.regulariser, Regulariser):
      raise ValueError(f'regulariser must be a games.Regulariser, got {self.regulariser!r}')

  def loss_gradients(self, phi: Params, theta: Params, *args: Any) -> tuple[Params, Params]:
    """(∇_φE_φ, ∇_θE_θ) of the players' own losses, without the regulariser."""
    return jax.grad(self.loss_phi, 0)(phi, theta, *args), jax.grad(self.loss_theta, 1)(phi, theta, *args)

  def unregularised_fields(self, phi: Params, theta: Params, *args: Any) -> tuple[Params, Params]:
    """(f, g) = (−∇_φE_φ, −∇_θE_θ) of the players' own losses."""
    return _negate(self.loss_gradients(phi, theta, *args))

  def gradients(self, phi: Params, theta: Params, *args: Any) -> tuple[Params, Params]:
    """The gradients each player descends: its loss's gradient plus the regulariser's terms (module docstring)."""
    if self.regulariser.is_zero():
      return self.loss_gradients(phi, theta, *args)
    d = drift_terms(self.unregularised_fields, phi, theta, *args)
    c = self.regulariser
    grad_phi = _combine((-1.0, d.f), (2 * c.phi_self, d.f_phi_f), (-2 * c.phi_interaction, d.f_theta_g))
    grad_theta = _combine((-1.0, d.g), (-2 * c.theta_interaction, d.g_phi_f), (2 * c.theta_self, d.g_theta_g))
    return grad_phi, grad_theta

  def fields(self, phi: Params, theta: Params, *args: Any) -> tuple[Params, Params]:
    """(f, g): minus the gradients each player descends (`gradients`), the vector fields of Eqs 4.9–4.10."""
    return _negate(self.gradients(phi, theta, *args))

  def with_regulariser(self, regulariser: Regulariser) -> Game:
    """This game with `regulariser` in place of its own."""
    return dataclasses.replace(self, regulariser=regulariser)


def zero_sum(value: Loss, regulariser: Regulariser = NO_REGULARISER) -> Game:
  """The zero-sum game of E(φ, θ, *args): φ maximises E (E_φ = −E), θ minimises it (E_θ = E), as in Eq 4.3."""
  _check_loss('value', value)
  return Game(lambda p, t, *a: -value(p, t, *a), value, regulariser, value)


def common_payoff(loss: Loss, regulariser: Regulariser = NO_REGULARISER) -> Game:
  """The common-payoff game E_φ = E_θ = E (Section 4.4)."""
  _check_loss('loss', loss)
  return Game(loss, loss, regulariser)


def drift_terms(field: Field, phi: Params, theta: Params, *args: Any) -> DriftTerms:
  """f, g and the four products f_φ f, f_θ g, g_φ f, g_θ g of `field(phi, theta, *args) -> (f, g)` at (φ, θ).

  One `jax.linearize` of (f, g) evaluates the fields once; its JVP along (f, 0) gives (f_φ f, g_φ f) and along
  (0, g) gives (f_θ g, g_θ g).
  """
  (f, g), jvp = jax.linearize(lambda p, t: field(p, t, *args), phi, theta)
  f_phi_f, g_phi_f = jvp(f, _zeros(theta))
  f_theta_g, g_theta_g = jvp(_zeros(phi), g)
  return DriftTerms(f, g, f_phi_f, f_theta_g, g_phi_f, g_theta_g)


def _zeros(tree: Params) -> Params:
  return jax.tree.map(jnp.zeros_like, tree)


def _negate(pair: tuple[Params, Params]) -> tuple[Params, Params]:
  return tuple(jax.tree.map(jnp.negative, x) for x in pair)


def _combine(*terms: tuple[Any, Params]) -> Params:
  """Σ c_i x_i over pytrees of one structure; terms whose coefficient is a Python zero are left out."""
  kept = [(c, x) for c, x in terms if not (isinstance(c, (int, float)) and c == 0)]
  if not kept:
    return _zeros(terms[0][1])
  return jax.tree.map(lambda *xs: sum(c * x for (c, _), x in zip(kept, xs)), *(x for _, x in kept))
