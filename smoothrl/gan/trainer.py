"""The GAN training step: pure functions over a `GanState`, both players' losses and gradients from one function.

The discriminator φ (the first player) and the generator θ (the second) each minimise their loss of
`smoothrl.gan.losses` with their own optax optimiser. Updates are 'simultaneous' (both gradients at (φ_t, θ_t), one
batch of latents) or 'alternating' (the discriminator first: φ_{t+1} from the gradient at (φ_t, θ_t), then θ_{t+1}
from the gradient at (φ_{t+1}, θ_t) on fresh latents), the two schemes of thesis Section 4.6.

The smoothness method acts on every discriminator layer (thesis Section 7.4; the set S of Section 7.3 is the whole
discriminator), with σ_l from `smoothrl.networks.spectral` (conv layers: the operator norm) and ρ = ∏_l σ_l of the
unnormalised weights:

  'none'     the plain discriminator.
  'sn'       every layer's weights divided by σ_l (Miyato et al.; by max(σ_l/K, 1) without `sn_always`), σ_l from a
             power-iteration vector per layer advanced `power_iterations` times per step on the current weights and
             evaluated as ‖W_l v_l‖ at the weights each gradient is taken at; gradients flow through σ_l unless
             `sn_grad_through_sigma` is off (the RL variant of Appendix E.2.1).
  'divout'   the logits divided by ρ, held constant (Eq 7.13); with scope 'discriminator' only the discriminator's
             loss sees D_L/ρ and the generator's loss the raw logits; with scope 'both' the generator's loss sees
             D_L/ρ too, so the scaling reaches the generator's update (Figures 7.12-7.13).
  'divgrad'  the discriminator's optimiser divides its gradients by ρ (Eq 7.28); with scope 'both' the generator's
  'muleps'   optimiser gets the same ρ (MULEPS: Adam's ε·ρ, Eq 7.31): the generator's gradient passes backwards
             through the discriminator, so SN of the discriminator rescales it too (Section 7.4).

ρ reaches the optimisers as optax's extra argument `rho` (1 where the method does not apply), so build them with
`player_optimizer` or with `smoothrl.optimizers.make_optimizer(method, ...)`; `scheduled_eps_adam` anneals Adam's ε
(Figure 7.15). Each step logs both losses, the binned-output entropies of D on data and samples, σ of every
discriminator layer, ρ and, for Adam optimisers, each player's fraction of parameters in the low-curvature regime
(`smoothrl.gan.diagnostics`).

Drift regularisers (thesis Sections 4.6.3 and B.8.1, Table 4.2; `smoothrl.games.regularisers`): `regulariser`
adds to each player's loss a coefficient times each of the two squared gradient norms of the zero-sum value E of
Eq 4.4 (`losses.zero_sum_value`, on the logits as that player's loss sees them under the method),

  L_φ + c_φ,self ‖∇_φE‖² + c_φ,int ‖∇_θE‖²,    L_θ + c_θ,int ‖∇_φE‖² + c_θ,self ‖∇_θE‖²,

with the coefficients of `regulariser_coefficients`: 'cancel_interaction' and 'strengthen_self' from the drift of
the update scheme at the learning rates `drift_rates` = (v_φh, v_θh) (Table 4.2: e.g. c_φ,int = v_φh/4 and
c_θ,int = v_θh/4 for simultaneous updates, c_θ,int = −(2v_φ − v_θ)h/4 for alternating ones); 'sga', 'consensus',
'locally_stable' and 'ode_gan' from ζ = `regulariser_coefficient`. With the saturating loss these are Table 4.2's
modified zero-sum losses; with the non-saturating one the same penalties on E are added to L_θ of Eq 4.44. The norms
come from two independent halves of the batch (data and latents), ‖∇E‖² ≈ ∇E(x₁)ᵀ∇E(x₂), whose gradient 2(∂∇E(x₁))ᵀ
∇E(x₂) is unbiased (Eq B.245; `regularisers.unbiased_squared_norm`), or, without `regulariser_halves`, from the
whole batch (exact for a full batch, biased for a minibatch). The penalties are computed where each player's
gradient is (the alternating generator's at φ_{t+1} on its own latents); the losses logged stay L_φ and L_θ, and a
regularised step also logs the penalties' values (estimates with halves) as 'd_penalty' and 'g_penalty'.

`losses_and_grads` is the seam for other update rules: it returns both players' losses and (regularised)
gradients at one point.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

from smoothrl import optimizers
from smoothrl.curvature.products import tree_vdot
from smoothrl.games import regularisers
from smoothrl.games.drift import CLOCKS
from smoothrl.games.game import NO_REGULARISER, Regulariser
from smoothrl.gan import diagnostics, losses
from smoothrl.gan.networks import Networks, initial_vectors
from smoothrl.networks import spectral, spectral_norm
from smoothrl.optimizers.spectral_scaling import METHODS

UPDATES: tuple[str, ...] = ('simultaneous', 'alternating')
SCOPES: tuple[str, ...] = ('discriminator', 'both')
REGULARISERS: tuple[str, ...] = (
  'none', 'cancel_interaction', 'strengthen_self', 'sga', 'consensus', 'locally_stable', 'ode_gan'
)  # fmt: skip
DRIFT_REGULARISERS: tuple[str, ...] = ('cancel_interaction', 'strengthen_self')  # coefficients from drift_rates
ZETA_REGULARISERS: tuple[str, ...] = ('sga', 'consensus', 'locally_stable', 'ode_gan')  # from regulariser_coefficient
REGULARISED_PLAYERS: tuple[str, ...] = ('both', 'discriminator', 'generator')
Sampler = Callable[[jax.Array, int], jax.Array]


@dataclasses.dataclass(frozen=True)
class GanConfig:
  """One GAN training run's rules.

  Attributes:
    loss: the generator's loss, 'saturating' (Eq 4.4) or 'non_saturating' (Eq 4.44); the discriminator's is −E.
    update: 'simultaneous' or 'alternating' (the discriminator first).
    method: 'none', 'sn', 'divout', 'divgrad' or 'muleps' on every discriminator layer (module docstring).
    scope: whom 'divout', 'divgrad' and 'muleps' act on: 'discriminator' or 'both' players.
    batch_size: examples of data and of samples per step.
    power_iterations: power-iteration steps per training step on every discriminator layer.
    lipschitz: K of SN.
    sn_always: divide by σ/K always (Miyato et al.), else by max(σ/K, 1).
    sn_grad_through_sigma: backpropagate through σ under SN (Miyato et al.).
    adam_betas: (β₁, β₂) of the players' Adam, used by `player_optimizer` and read by the low-curvature measure;
      β₁ = 0.5 as in the thesis' GANs. None: no low-curvature measure.
    low_curvature_threshold: τ of Eq 7.36.
    entropy_bins: bins of the output histogram (Section 7.4.1).
    eval_batch_size: examples of data and of samples that `evaluate` uses.
    regulariser: 'none' or a drift regulariser of `smoothrl.games.regularisers` (module docstring):
      'cancel_interaction', 'strengthen_self', 'sga', 'consensus', 'locally_stable' or 'ode_gan'.
    regulariser_players: whose losses get the penalties: 'both', 'discriminator' or 'generator' (Section 4.6.3:
      with alternating updates cancel only the discriminator's interaction term).
    drift_rates: (v_φh, v_θh), the discriminator's and generator's learning rates whose drift 'cancel_interaction'
      and 'strengthen_self' act on (the rates of their SGD, for Table 4.2); required by those two.
    drift_clock: the clock of the drift those two act on: 'player' (Table 4.2) or 'shared' (Section 4.7).
    regulariser_coefficient: ζ of 'sga' ((ζ/2)‖∇E‖² on the other player's norm; 1 is Balduzzi et al.'s),
      'consensus', 'locally_stable' and 'ode_gan'; required > 0 by those.
    regulariser_halves: the norms from two halves of the batch (unbiased, Eq B.245; an even batch_size), else from
      the whole batch.
  """

  loss: Literal['saturating', 'non_saturating'] = 'non_saturating'
  update: Literal['simultaneous', 'alternating'] = 'alternating'
  method: Literal['none', 'sn', 'divout', 'divgrad', 'muleps'] = 'sn'
  scope: Literal['discriminator', 'both'] = 'both'
  batch_size: int = 64
  power_iterations: int = 1
  lipschitz: float = 1.0
  sn_always: bool = True
  sn_grad_through_sigma: bool = True
  adam_betas: tuple[float, float] | None = (0.5, 0.999)
  low_curvature_threshold: float = diagnostics.LOW_CURVATURE_THRESHOLD
  entropy_bins: int = diagnostics.ENTROPY_BINS
  eval_batch_size: int = 512
  regulariser: Literal[
    'none', 'cancel_interaction', 'strengthen_self', 'sga', 'consensus', 'locally_stable', 'ode_gan'
  ] = 'none'  # fmt: skip
  regulariser_players: Literal['both', 'discriminator', 'generator'] = 'both'
  drift_rates: tuple[float, float] | None = None
  drift_clock: Literal['player', 'shared'] = 'player'
  regulariser_coefficient: float = 0.0
  regulariser_halves: bool = True


def _number(value: object) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _positive_int(value: object) -> bool:
  return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def validate(config: GanConfig) -> list[str]:
  """The problems of `config`, each a sentence naming the field."""
  problems = []
  if config.loss not in losses.LOSSES:
    problems.append(f'gan.loss {config.loss!r} is unknown; valid: {", ".join(losses.LOSSES)}')
  if config.update not in UPDATES:
    problems.append(f'gan.update {config.update!r} is unknown; valid: {", ".join(UPDATES)}')
  if config.method not in METHODS:
    problems.append(f'gan.method {config.method!r} is unknown; valid: {", ".join(METHODS)}')
  if config.scope not in SCOPES:
    problems.append(f'gan.scope {config.scope!r} is unknown; valid: {", ".join(SCOPES)}')
  for field in ('batch_size', 'power_iterations', 'entropy_bins', 'eval_batch_size'):
    if not _positive_int(getattr(config, field)):
      problems.append(f'gan.{field} must be an int >= 1, got {getattr(config, field)!r}')
  if not (isinstance(config.lipschitz, (int, float)) and config.lipschitz > 0):
    problems.append(f'gan.lipschitz must be a number > 0, got {config.lipschitz!r}')
  if config.adam_betas is not None and not (
    isinstance(config.adam_betas, tuple) and len(config.adam_betas) == 2 and all(0 <= b < 1 for b in config.adam_betas)
  ):
    problems.append(f'gan.adam_betas must be None or (β₁, β₂) in [0, 1), got {config.adam_betas!r}')
  if not config.low_curvature_threshold > 0:
    problems.append(f'gan.low_curvature_threshold must be > 0, got {config.low_curvature_threshold!r}')
  problems += _regulariser_problems(config)
  return problems


def _regulariser_problems(config: GanConfig) -> list[str]:
  problems = []
  name = config.regulariser
  if name not in REGULARISERS:
    return [f'gan.regulariser {name!r} is unknown; valid: {", ".join(REGULARISERS)}']
  if config.regulariser_players not in REGULARISED_PLAYERS:
    problems.append(
      f'gan.regulariser_players {config.regulariser_players!r} is unknown; valid: {", ".join(REGULARISED_PLAYERS)}'
    )
  if config.drift_clock not in CLOCKS:
    problems.append(f'gan.drift_clock {config.drift_clock!r} is unknown; valid: {", ".join(CLOCKS)}')
  rates = config.drift_rates
  if rates is not None and not (
    isinstance(rates, tuple) and len(rates) == 2 and all(_number(r) and r > 0 for r in rates)
  ):
    problems.append(f'gan.drift_rates must be None or two learning rates > 0 (v_φh, v_θh), got {rates!r}')
  elif rates is None and name in DRIFT_REGULARISERS:
    problems.append(f"gan.regulariser {name!r} needs gan.drift_rates: the players' learning rates (v_φh, v_θh)")
  zeta = config.regulariser_coefficient
  if not _number(zeta):
    problems.append(f'gan.regulariser_coefficient must be a finite number, got {zeta!r}')
  elif name in ZETA_REGULARISERS and not zeta > 0:
    problems.append(f'gan.regulariser {name!r} needs gan.regulariser_coefficient ζ > 0, got {zeta!r}')
  if not isinstance(config.regulariser_halves, bool):
    problems.append(f'gan.regulariser_halves must be a bool, got {config.regulariser_halves!r}')
  elif name != 'none' and config.regulariser_halves and _positive_int(config.batch_size) and config.batch_size % 2:
    problems.append(f'gan.batch_size must be even to split it into halves for a regulariser, got {config.batch_size}')
  if name != 'none' and not problems and config.update in UPDATES and regulariser_coefficients(config).is_zero():
    problems.append(
      f'gan.regulariser {name!r} with gan.regulariser_players {config.regulariser_players!r} adds no penalty'
    )
  return problems


def regulariser_coefficients(config: GanConfig) -> Regulariser:
  """(c_φ,self, c_φ,int, c_θ,int, c_θ,self) of `config.regulariser` (module docstring; all zero for 'none'), as
  Python floats; those of the player that `regulariser_players` leaves out are zero."""
  name = config.regulariser
  if name == 'none':
    return NO_REGULARISER
  if name in DRIFT_REGULARISERS:
    v_phi, v_theta = config.drift_rates
    drift = dict(scheme=config.update, v_phi=v_phi, v_theta=v_theta, clock=config.drift_clock)
    if name == 'cancel_interaction':
      players = {'both': 'both', 'discriminator': 'phi', 'generator': 'theta'}[config.regulariser_players]
      c = regularisers.cancel_interaction(1.0, players=players, **drift)
    else:
      c = regularisers.strengthen_self(1.0, **drift)
  else:
    c = getattr(regularisers, name)(config.regulariser_coefficient)
  c = Regulariser(*(float(x) for x in c))
  if config.regulariser_players == 'discriminator':
    c = c._replace(theta_interaction=0.0, theta_self=0.0)
  elif config.regulariser_players == 'generator':
    c = c._replace(phi_self=0.0, phi_interaction=0.0)
  return c


def _optimiser_method(config: GanConfig, player: str) -> str:
  """The method as the `player`'s optimiser sees it: DIVGRAD and MULEPS reach the generator with scope 'both'."""
  if player == 'discriminator' or config.scope == 'both':
    return config.method
  return 'none'


def player_optimizer(
  config: GanConfig,
  player: Literal['discriminator', 'generator'],
  learning_rate: optax.ScalarOrSchedule,
  eps: float = 1e-8,
  eps_schedule: optax.Schedule | None = None,
  eps_placement: optimizers.EpsPlacement = 'outside',
) -> optax.GradientTransformationExtraArgs:
  """Adam for one player under `config.method`, β's from `config.adam_betas` ((0.9, 0.999) when it is None).

  DIVGRAD or MULEPS (Eqs 7.28, 7.31) for the discriminator, and for the generator with scope 'both'; plain Adam
  otherwise. `eps_schedule` (e.g. `optimizers.exponential_eps_schedule(1e-8, 1e-2, n)`) anneals ε (Figure 7.15)
  and replaces `eps`; it is plain Adam's, so it refuses DIVGRAD and MULEPS.
  """
  if player not in ('discriminator', 'generator'):
    raise ValueError(f"player must be 'discriminator' or 'generator', got {player!r}")
  problems = validate(config)
  if problems:
    raise ValueError('invalid GAN config: ' + '; '.join(problems))
  b1, b2 = config.adam_betas or (0.9, 0.999)
  method = _optimiser_method(config, player)
  if eps_schedule is not None:
    if method in ('divgrad', 'muleps'):
      raise ValueError(f'an eps_schedule anneals plain Adam; the {player} uses {method!r}, which sets ε itself')
    return optimizers.scheduled_eps_adam(learning_rate, eps_schedule, b1, b2, eps_placement)
  return optimizers.make_optimizer(method, learning_rate, b1, b2, eps, eps_placement)


class GanState(NamedTuple):
  """Everything a run carries between steps (a pytree of arrays: checkpointable, scannable, vmappable)."""

  g_params: Any
  d_params: Any
  g_opt_state: Any
  d_opt_state: Any
  spectral_state: spectral.SpectralState  # a power-iteration vector per discriminator layer
  key: jax.Array
  step: jax.Array


class DiscriminatorView(NamedTuple):
  """The discriminator's logits as one player's loss sees them, with σ of every layer and ρ (held constant)."""

  logits: jax.Array
  sigmas: dict[str, jax.Array]
  rho: jax.Array


class PlayerLosses(NamedTuple):
  """Both players' losses and gradients at one point (φ, θ), and the logits the discriminator's loss saw.

  The gradients include the regulariser's penalties, whose values (estimates, with `regulariser_halves`) are
  `d_penalty` and `g_penalty` (0 without a regulariser); `d_loss` and `g_loss` are the unregularised losses.
  """

  d_loss: jax.Array
  g_loss: jax.Array
  d_grads: Any
  g_grads: Any
  real_logits: jax.Array
  fake_logits: jax.Array
  sigmas: dict[str, jax.Array]
  rho: jax.Array
  d_penalty: Any = 0.0
  g_penalty: Any = 0.0


class GanTrainer(NamedTuple):
  """Pure, unjitted functions (jit, scan and vmap them as needed).

  init(key) -> GanState
  step(state) -> (state, metrics): one update of both players on a fresh batch of data and latents.
  update(state, real, z_d, z_g) -> (state, metrics): the update on a given batch (z_g: the generator's latents
    when alternating; simultaneous updates use z_d for both players).
  train(state, steps) -> (state, metrics stacked over steps), a `lax.scan`; `steps` static.
  evaluate(state, key) -> metrics on `eval_batch_size` fresh examples and samples (no update, vectors kept).
  losses_and_grads(g_params, d_params, spectral_state, real, z) -> PlayerLosses (gradients with the regulariser's).
  sample(state, key, n) -> n generator samples.
  """

  init: Callable[[jax.Array], GanState]
  step: Callable[[GanState], tuple[GanState, dict[str, jax.Array]]]
  update: Callable[..., tuple[GanState, dict[str, jax.Array]]]
  train: Callable[[GanState, int], tuple[GanState, dict[str, jax.Array]]]
  evaluate: Callable[[GanState, jax.Array], dict[str, jax.Array]]
  losses_and_grads: Callable[..., PlayerLosses]
  sample: Callable[[GanState, jax.Array, int], jax.Array]


def make_trainer(
  networks: Networks,
  data: Sampler,
  d_optimizer: optax.GradientTransformation,
  g_optimizer: optax.GradientTransformation,
  config: GanConfig = GanConfig(),
) -> GanTrainer:
  """The trainer of `networks` on `data` (`data(key, n)` -> n real examples, e.g. `mixtures.sample` or
  `data.array_sampler`), each player with its own optimiser.

  Raises:
    ValueError: every problem of `validate(config)`, or a sampler whose examples do not fit the discriminator.
  """
  problems = validate(config)
  if problems:
    raise ValueError('invalid GAN config: ' + '; '.join(problems))
  generator, discriminator = networks.generator, networks.discriminator
  specs, names = discriminator.specs, discriminator.names
  data_shape = tuple(networks.config.data_shape)
  example = jax.eval_shape(lambda key: data(key, 3), jax.random.PRNGKey(0))
  if tuple(example.shape) != (3, *data_shape):
    raise ValueError(f'data(key, n) must return (n, {", ".join(map(str, data_shape))}); it returns {example.shape}')
  d_tx = optax.with_extra_args_support(d_optimizer)
  g_tx = optax.with_extra_args_support(g_optimizer)
  method, batch = config.method, config.batch_size

  def view(d_params, spectral_state, x, player: str) -> DiscriminatorView:
    """D_L(x) as `player`'s loss sees it under the method, with σ at the weights `d_params`."""
    sigmas = spectral.sigmas_from_state(specs, d_params, spectral_state)
    held = jax.lax.stop_gradient(sigmas)
    rho = spectral.rho(held, names)
    if method == 'sn':
      used = sigmas if config.sn_grad_through_sigma else held
      scales = spectral_norm.scales(used, names, config.lipschitz, config.sn_always)
      logits = discriminator.apply(d_params, x, scales)
    else:
      logits = discriminator.apply(d_params, x)
      if method == 'divout' and (player == 'discriminator' or config.scope == 'both'):
        logits = spectral_norm.divout(logits, rho)
    return DiscriminatorView(logits, held, rho)

  def d_objective(d_params, spectral_state, real, fake):
    out = view(d_params, spectral_state, jnp.concatenate([real, fake]), 'discriminator')
    real_logits, fake_logits = out.logits[: real.shape[0]], out.logits[real.shape[0] :]
    return losses.discriminator_loss(real_logits, fake_logits), (real_logits, fake_logits, out)

  def g_objective(g_params, d_params, spectral_state, real, z):
    fake = generator.apply(g_params, z)
    if config.loss == 'saturating':  # the value E needs D on data; that term has no gradient in θ
      out = view(d_params, spectral_state, jnp.concatenate([real, fake]), 'generator')
      real_logits, fake_logits = out.logits[: real.shape[0]], out.logits[real.shape[0] :]
    else:
      out = view(d_params, spectral_state, fake, 'generator')
      real_logits, fake_logits = None, out.logits
    return losses.generator_loss(fake_logits, real_logits, config.loss), out.rho

  d_value_and_grad = jax.value_and_grad(d_objective, has_aux=True)
  g_value_and_grad = jax.value_and_grad(g_objective, has_aux=True)

  coefficients = regulariser_coefficients(config)

  def zero_sum(d_params, g_params, spectral_state, real, z, player: str) -> jax.Array:
    """E of Eq 4.4 at (φ, θ) on the logits as `player`'s loss sees them."""
    out = view(d_params, spectral_state, jnp.concatenate([real, generator.apply(g_params, z)]), player)
    return losses.zero_sum_value(out.logits[: real.shape[0]], out.logits[real.shape[0] :])

  def penalty(player: str, d_params, g_params, spectral_state, real, z) -> tuple[jax.Array, Any] | None:
    """(R, ∇R in the player's own parameters) for R = c_self ‖∇_own E‖² + c_int ‖∇_other E‖²; None for no R."""
    c = coefficients
    if player == 'discriminator':
      weights = (c.phi_self, c.phi_interaction)  # on (‖∇_φE‖², ‖∇_θE‖²)
    else:
      weights = (c.theta_interaction, c.theta_self)
    argnums = tuple(i for i, w in enumerate(weights) if w != 0)
    if not argnums:
      return None
    grad_e = jax.grad(zero_sum, argnums)

    def value(d_params, g_params):
      if config.regulariser_halves:
        first, second = regularisers.split_halves((real, z))
        a = grad_e(d_params, g_params, spectral_state, *first, player)
        b = grad_e(d_params, g_params, spectral_state, *second, player)
        norms = [regularisers.unbiased_squared_norm(x, y) for x, y in zip(a, b)]
      else:
        norms = [tree_vdot(x, x) for x in grad_e(d_params, g_params, spectral_state, real, z, player)]
      return sum(weights[i] * n for i, n in zip(argnums, norms))

    own = 0 if player == 'discriminator' else 1
    return jax.value_and_grad(value, own)(d_params, g_params)

  def regularised(grads, player: str, d_params, g_params, spectral_state, real, z) -> tuple[Any, jax.Array]:
    """(the player's gradients plus its penalty's, the penalty's value; 0 without one)."""
    out = penalty(player, d_params, g_params, spectral_state, real, z)
    if out is None:
      return grads, jnp.zeros((), jnp.float32)
    value, extra = out
    return jax.tree.map(jnp.add, grads, extra), value

  def losses_and_grads(g_params, d_params, spectral_state, real, z) -> PlayerLosses:
    """Both losses and gradients at (φ, θ): L_φ and ∇_φ(L_φ + R_φ), L_θ and ∇_θ(L_θ + R_θ), on data `real` and
    latents `z` (R: the regulariser's penalties, module docstring)."""
    fake = jax.lax.stop_gradient(generator.apply(g_params, z))
    (d_loss, (real_logits, fake_logits, out)), d_grads = d_value_and_grad(d_params, spectral_state, real, fake)
    (g_loss, _), g_grads = g_value_and_grad(g_params, d_params, spectral_state, real, z)
    d_grads, d_penalty = regularised(d_grads, 'discriminator', d_params, g_params, spectral_state, real, z)
    g_grads, g_penalty = regularised(g_grads, 'generator', d_params, g_params, spectral_state, real, z)
    return PlayerLosses(
      d_loss, g_loss, d_grads, g_grads, real_logits, fake_logits, out.sigmas, out.rho, d_penalty, g_penalty
    )

  def optimiser_rhos(rho: jax.Array, player: str) -> tuple[jax.Array, jax.Array]:
    """(ρ for the optimiser, what Adam's gradient is divided by): ρ where DIVGRAD / MULEPS apply, else 1."""
    one = jnp.ones((), jnp.float32)
    scaled = _optimiser_method(config, player)
    rho_opt = rho if scaled in ('divgrad', 'muleps') else one
    return rho_opt, (rho if scaled == 'divgrad' else one)

  def low_curvature(grads, opt_state, grad_rho) -> jax.Array | None:
    adam_state = diagnostics.find_adam_state(opt_state)
    if adam_state is None or config.adam_betas is None:
      return None
    seen = jax.tree.map(lambda g: g / grad_rho.astype(g.dtype), grads)
    b1, b2 = config.adam_betas
    return diagnostics.low_curvature_fraction(seen, adam_state, b1, b2, config.low_curvature_threshold)

  def output_metrics(real_logits, fake_logits) -> dict[str, jax.Array]:
    d_real, d_fake = jax.nn.sigmoid(real_logits), jax.nn.sigmoid(fake_logits)
    return {
      'entropy_data': diagnostics.binned_entropy(d_real, config.entropy_bins),
      'entropy_samples': diagnostics.binned_entropy(d_fake, config.entropy_bins),
      'd_data': jnp.mean(d_real),
      'd_samples': jnp.mean(d_fake),
    }

  def init(key: jax.Array) -> GanState:
    g_key, d_key, v_key, run_key = jax.random.split(key, 4)
    g_params, d_params = generator.init(g_key), discriminator.init(d_key)
    return GanState(
      g_params=g_params,
      d_params=d_params,
      g_opt_state=g_tx.init(g_params),
      d_opt_state=d_tx.init(d_params),
      spectral_state=initial_vectors(v_key, specs),
      key=run_key,
      step=jnp.zeros((), jnp.int32),
    )

  def update(state: GanState, real: jax.Array, z_d: jax.Array, z_g: jax.Array) -> tuple[GanState, dict[str, jax.Array]]:
    """One update of both players on data `real`: the discriminator's samples from latents `z_d`, the generator's
    from `z_g` when alternating (simultaneous updates use `z_d` for both)."""
    _, vectors = spectral.estimate(specs, state.d_params, state.spectral_state, config.power_iterations)
    fake = jax.lax.stop_gradient(generator.apply(state.g_params, z_d))
    (d_loss, (real_logits, fake_logits, d_out)), d_grads = d_value_and_grad(state.d_params, vectors, real, fake)
    d_grads, d_penalty = regularised(d_grads, 'discriminator', state.d_params, state.g_params, vectors, real, z_d)
    d_rho, d_grad_rho = optimiser_rhos(d_out.rho, 'discriminator')
    metrics = {'d_loss': d_loss, 'rho': d_out.rho, **output_metrics(real_logits, fake_logits)}
    if config.regulariser != 'none':
      metrics['d_penalty'] = d_penalty
    metrics |= {f'sigma/{name}': d_out.sigmas[name] for name in names}
    lc = low_curvature(d_grads, state.d_opt_state, d_grad_rho)
    if lc is not None:
      metrics['low_curvature_d'] = lc
    d_updates, d_opt_state = d_tx.update(d_grads, state.d_opt_state, state.d_params, rho=d_rho)
    d_params = optax.apply_updates(state.d_params, d_updates)

    g_at, z = (state.d_params, z_d) if config.update == 'simultaneous' else (d_params, z_g)
    (g_loss, g_view_rho), g_grads = g_value_and_grad(state.g_params, g_at, vectors, real, z)
    g_grads, g_penalty = regularised(g_grads, 'generator', g_at, state.g_params, vectors, real, z)
    if config.regulariser != 'none':
      metrics['g_penalty'] = g_penalty
    g_rho, g_grad_rho = optimiser_rhos(g_view_rho, 'generator')
    lc = low_curvature(g_grads, state.g_opt_state, g_grad_rho)
    if lc is not None:
      metrics['low_curvature_g'] = lc
    g_updates, g_opt_state = g_tx.update(g_grads, state.g_opt_state, state.g_params, rho=g_rho)
    g_params = optax.apply_updates(state.g_params, g_updates)
    metrics['g_loss'] = g_loss
    return GanState(g_params, d_params, g_opt_state, d_opt_state, vectors, state.key, state.step + 1), metrics

  def step(state: GanState) -> tuple[GanState, dict[str, jax.Array]]:
    key, data_key, z_key = jax.random.split(state.key, 3)
    z = generator.latent(z_key, 2 * batch)
    new_state, metrics = update(state, data(data_key, batch), z[:batch], z[batch:])
    return new_state._replace(key=key), metrics

  def train(state: GanState, steps: int) -> tuple[GanState, dict[str, jax.Array]]:
    return jax.lax.scan(lambda s, _: step(s), state, length=steps)

  def evaluate(state: GanState, key: jax.Array) -> dict[str, jax.Array]:
    data_key, z_key = jax.random.split(key)
    n = config.eval_batch_size
    real, z = data(data_key, n), generator.latent(z_key, n)
    fake = generator.apply(state.g_params, z)
    d_loss, (real_logits, fake_logits, out) = d_objective(state.d_params, state.spectral_state, real, fake)
    g_loss, _ = g_objective(state.g_params, state.d_params, state.spectral_state, real, z)
    metrics = {'d_loss': d_loss, 'g_loss': g_loss, 'rho': out.rho, **output_metrics(real_logits, fake_logits)}
    return metrics | {f'sigma/{name}': out.sigmas[name] for name in names}

  def sample(state: GanState, key: jax.Array, n: int) -> jax.Array:
    return generator.sample(state.g_params, key, n)

  return GanTrainer(init, step, update, train, evaluate, losses_and_grads, sample)
