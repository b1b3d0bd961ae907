"""DQN (thesis Eq 7.7) as pure functions over an explicit state.

`init`, `act` and `learner_step` are pure and jittable; the same functions run in a Python loop over any
environment and can be traced into `jax.lax.scan` or `jax.vmap`. The target network is refreshed inside
`learner_step` every `target_update_period / update_period` updates.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Literal, NamedTuple

import haiku as hk
import jax
import jax.numpy as jnp
import optax

from smoothrl import optimizers
from smoothrl.agents.replay import Transitions
from smoothrl.networks import method as method_lib
from smoothrl.networks import smoothness, spectral


@dataclasses.dataclass(frozen=True)
class DQNConfig:
  """DQN hyperparameters; defaults are thesis Table E.1 (MinAtar).

  `epsilon_decay_steps` counts from the start of training, warm-up included: epsilon is epsilon_end once that many
  environment steps are taken, as in the thesis' code (snrl); Dopamine counts it from the end of warm-up. See
  `epsilon_schedule`.
  """

  gamma: float = 0.99
  update_period: int = 4
  target_update_period: int = 4_000
  epsilon_start: float = 1.0
  epsilon_end: float = 0.01
  epsilon_decay_steps: int = 250_000
  warmup_steps: int = 5_000
  replay_capacity: int = 100_000
  batch_size: int = 32
  loss: Literal['mse', 'huber'] = 'mse'
  learning_rate: float = 0.00025
  adam_eps: float = 0.0003125
  adam_b1: float = 0.9
  adam_b2: float = 0.999
  eps_placement: Literal['outside', 'inside'] = 'outside'


class DQNState(NamedTuple):
  params: hk.Params
  target_params: hk.Params
  net_state: hk.State
  target_net_state: hk.State
  spectral: spectral.SpectralState
  target_spectral: spectral.SpectralState
  opt_state: optax.OptState
  updates: jax.Array  # number of learner updates so far


class ActorState(NamedTuple):
  """What acting reads: the online critic's parameters, haiku state and spectral vectors."""

  params: hk.Params
  net_state: hk.State
  spectral: spectral.SpectralState


def actor_state(state: DQNState) -> ActorState:
  return ActorState(state.params, state.net_state, state.spectral)


class DQN(NamedTuple):
  """The agent's pure functions.

  init(key, obs) -> DQNState
  act(actor, key, obs, epsilon) -> action: epsilon-greedy on one observation (`actor` is a DQNState or the
    smaller ActorState, which is cheaper to pass to a jitted call).
  learner_step(state, transitions) -> (state, metrics)
  q_values(actor, obs) -> Q(obs, .) for a batch, as acting sees them.
  """

  init: Callable[[jax.Array, jax.Array], DQNState]
  act: Callable[[DQNState | ActorState, jax.Array, jax.Array, jax.Array], jax.Array]
  learner_step: Callable[[DQNState, Transitions], tuple[DQNState, dict[str, jax.Array]]]
  q_values: Callable[[DQNState | ActorState, jax.Array], jax.Array]
  critic: method_lib.Critic


def epsilon_schedule(config: DQNConfig) -> optax.Schedule:
  """The linear exploration schedule of thesis Table E.1 (epsilon 1.0 -> 0.01 over 250,000 steps, warm-up 5,000).

  epsilon(t), with t the environment steps taken before the action (0 at the first), is epsilon_start up to
  t = warmup_steps, falls linearly, and is epsilon_end from t = epsilon_decay_steps on:

    epsilon(t) = start + (end - start) * clip((t - warmup_steps) / (epsilon_decay_steps - warmup_steps), 0, 1).

  The decay steps count from the start of training, warm-up included, as in the thesis' code (snrl's
  `linear_schedule(1.0, 0.01, 250000, 5000)`, which reaches 0.01 one action earlier); Dopamine counts them from the
  end of warm-up instead. With epsilon_decay_steps <= warmup_steps, epsilon drops to epsilon_end one step after
  warm-up. `launch.run.host.epsilon_at` is the same schedule in host arithmetic.
  """
  transition = max(config.epsilon_decay_steps - config.warmup_steps, 1)
  return optax.linear_schedule(
    config.epsilon_start, config.epsilon_end, transition, transition_begin=config.warmup_steps
  )


def td_targets(rewards: jax.Array, discounts: jax.Array, next_q: jax.Array, gamma: float) -> jax.Array:
  """r + gamma * discount * max_a' Q_target(s', a') (Eq 7.7); discount is 0 at termination."""
  return rewards + gamma * discounts * jnp.max(next_q, axis=-1)


def td_loss(q_taken: jax.Array, targets: jax.Array, kind: str) -> jax.Array:
  """Mean of (q - y)^2 ('mse', PyTorch's MSELoss) or of the Huber loss with delta 1 ('huber', SmoothL1Loss)."""
  errors = q_taken - jax.lax.stop_gradient(targets)
  if kind == 'mse':
    return jnp.mean(jnp.square(errors))
  if kind == 'huber':
    return jnp.mean(optax.losses.huber_loss(errors, delta=1.0))
  raise ValueError(f'unknown loss {kind!r}; valid: mse, huber')


LossFn = Callable[..., tuple[jax.Array, tuple[method_lib.CriticOutput, jax.Array]]]
# The optimiser's extra arguments as a function of the critic's rho.
RhoArgs = Callable[[jax.Array], dict[str, jax.Array]]


def _rho_arg(rho: jax.Array) -> dict[str, jax.Array]:
  return {'rho': rho}


def make_optimizer(
  config: DQNConfig,
  method: str | method_lib.DynamicMethod,
  learning_rate: float | jax.Array | None = None,
  adam_eps: float | jax.Array | None = None,
) -> tuple[optax.GradientTransformationExtraArgs, RhoArgs]:
  """The optimiser of `method` and the extra arguments it takes, given the critic's rho. `learning_rate` and
  `adam_eps` (values that may be traced) replace the config's when given.

  A method name gets `optimizers.make_optimizer` (plain Adam, DIVGRAD or MULEPS) with `rho=rho`. A `DynamicMethod`
  gets `optimizers.rho_scaled_adam`, one chain for every method, with grad_rho = where(DIVGRAD, rho, 1) (Eq 7.28)
  and eps_rho = where(MULEPS, rho, 1) (Eq 7.31): the static optimiser's updates for each method.
  """
  learning_rate = config.learning_rate if learning_rate is None else learning_rate
  adam_eps = config.adam_eps if adam_eps is None else adam_eps
  if not isinstance(method, method_lib.DynamicMethod):
    return optimizers.make_optimizer(
      method, learning_rate, config.adam_b1, config.adam_b2, adam_eps, config.eps_placement
    ), _rho_arg
  optimizer = optimizers.rho_scaled_adam(learning_rate, config.adam_b1, config.adam_b2, adam_eps, config.eps_placement)
  is_divgrad, is_muleps = method.is_method('divgrad'), method.is_method('muleps')

  def rho_args(rho: jax.Array) -> dict[str, jax.Array]:
    return {'grad_rho': jnp.where(is_divgrad, rho, 1.0), 'eps_rho': jnp.where(is_muleps, rho, 1.0)}

  return optimizer, rho_args


def acting_passes(config: DQNConfig, critic: method_lib.Critic) -> tuple[int, int]:
  """The acting steps whose power iteration the agent replays: (per learner update, in `init`).

  (0, 0) unless `critic.power_iteration_on_acting`. Otherwise: the `update_period` acting steps between two
  updates, and the acting steps before the first update other than its own `update_period`. Both runners update
  after the environment steps t with t > warmup_steps and t % update_period == 0, so the first update follows
  (warmup_steps // update_period + 1) * update_period acting steps, all on the initial weights.
  """
  if not critic.power_iteration_on_acting:
    return 0, 0
  return config.update_period, (config.warmup_steps // config.update_period) * config.update_period


def make_learner_step(
  critic: method_lib.Critic,
  optimizer: optax.GradientTransformationExtraArgs,
  loss_fn: LossFn,
  target_every: int,
  rho_args: RhoArgs = _rho_arg,
  passes: int = 1,
) -> Callable[[DQNState, Transitions], tuple[DQNState, dict[str, jax.Array]]]:
  """The value-based learner step shared by DQN and C51.

  Advances the power iteration of the selected layers by `passes` forward passes (`critic.advance`: the update's
  own, and those of the acting steps it replays, see `acting_passes`), takes one optimiser step on
  `loss_fn(params, state, spectral_state, batch) -> (loss, (critic_output, q_taken))` with `rho_args(rho)` (by
  default `rho=rho`) passed to the optimiser, and refreshes the target network (parameters, haiku state, spectral
  vectors) every `target_every` updates.
  """

  def learner_step(state: DQNState, batch: Transitions) -> tuple[DQNState, dict[str, jax.Array]]:
    spectral_state = critic.advance(state.params, state.spectral, passes)
    (loss, (out, q_taken)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params, state, spectral_state, batch
    )
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params, **rho_args(out.rho))
    params = optax.apply_updates(state.params, updates)
    count = state.updates + 1
    refresh = count % target_every == 0
    pick = lambda new, old: jax.tree.map(lambda n, o: jnp.where(refresh, n, o), new, old)
    new_state = DQNState(
      params=params,
      target_params=pick(params, state.target_params),
      net_state=out.net_state,
      target_net_state=pick(out.net_state, state.target_net_state),
      spectral=spectral_state,
      target_spectral=pick(spectral_state, state.target_spectral),
      opt_state=opt_state,
      updates=count,
    )
    metrics = {'loss': loss, 'q_mean': jnp.mean(q_taken), 'rho': out.rho, 'grad_norm': optax.tree.norm(grads)}
    return new_state, metrics

  return learner_step


def make_dqn(
  config: DQNConfig,
  critic: method_lib.Critic,
  method: str | method_lib.DynamicMethod,
  num_actions: int,
  regulariser: method_lib.RegulariserConfig = method_lib.RegulariserConfig(),
  learning_rate: float | jax.Array | None = None,
  adam_eps: float | jax.Array | None = None,
) -> DQN:
  """Builds DQN's functions for `critic`; `method` picks the optimiser (DIVGRAD and MULEPS use rho).

  `learning_rate` and `adam_eps` (values that may be traced) replace the config's when given.

  `method` is a method name, or the `DynamicMethod` the (dynamic) critic was built with (see `make_optimizer`). A
  gradient penalty in `regulariser` is added to the TD loss with coefficient `penalty_coef`.

  With `critic.power_iteration_on_acting`, acting stays pure (`act` returns an action only) and the power
  iteration of the acting steps is replayed where their weights are still current: the weights change only in a
  learner step, so the `update_period` acting steps before update k + 1 all see theta_k, the parameters that
  update's learner step starts from, and running their steps there, before the update's own (`acting_passes`),
  takes the same power-iteration steps on the same weights in the same order, so the vectors, sigma, rho, loss,
  gradients and target copy are those of advancing on every acting pass (PyTorch's training-mode forward). `init`
  replays the warm-up's acting steps on the initial weights. Only sigma as acting itself sees it differs: acting
  uses the vectors of the last update, up to `update_period` passes behind. (snrl's acting calls its network only
  on greedy steps, so it advances on about 1 - epsilon of them, and its target network, also in training mode,
  advances its own vectors on the frozen target weights; here they stay as copied at the refresh.)
  """
  optimizer, rho_args = make_optimizer(config, method, learning_rate, adam_eps)
  target_every = config.target_update_period // config.update_period
  per_update, at_init = acting_passes(config, critic)

  def init(key: jax.Array, obs: jax.Array) -> DQNState:
    params, net_state, spectral_state = critic.init(key, obs)
    spectral_state = critic.advance(params, spectral_state, at_init)
    return DQNState(
      params,
      params,
      net_state,
      net_state,
      spectral_state,
      spectral_state,
      optimizer.init(params),
      jnp.zeros((), jnp.int32),
    )

  def q_values(actor: DQNState | ActorState, obs: jax.Array) -> jax.Array:
    return critic.apply(actor.params, actor.net_state, actor.spectral, obs, False).q

  def act(actor: DQNState | ActorState, key: jax.Array, obs: jax.Array, epsilon: jax.Array) -> jax.Array:
    """Epsilon-greedy: with probability epsilon a uniform action (the greedy one included), so the greedy action has
    probability 1 - epsilon + epsilon / |A| and every other epsilon / |A|, as in snrl's and Dopamine's acting (thesis
    Eq 7.6 writes 1 - epsilon and epsilon / (|A| - 1))."""
    greedy = jnp.argmax(q_values(actor, obs[None])[0])
    explore_key, action_key = jax.random.split(key)
    random_action = jax.random.randint(action_key, (), 0, num_actions)
    return jnp.where(jax.random.uniform(explore_key) < epsilon, random_action, greedy)

  def loss_fn(params, state: DQNState, spectral_state, batch: Transitions):
    out = critic.apply(params, state.net_state, spectral_state, batch.obs, True)
    next_q = critic.apply(state.target_params, state.target_net_state, state.target_spectral, batch.next_obs, False).q
    q_taken = jnp.take_along_axis(out.q, batch.action[:, None].astype(jnp.int32), axis=-1)[:, 0]
    targets = td_targets(batch.reward, batch.discount, next_q, config.gamma)
    loss = td_loss(q_taken, targets, config.loss)
    if regulariser.gradient_penalty != 'none':
      q_fn = lambda obs: critic.apply(params, state.net_state, spectral_state, obs, True).q
      loss += regulariser.penalty_coef * smoothness.gradient_penalty(q_fn, batch.obs, regulariser.gradient_penalty)
    return loss, (out, q_taken)

  learner_step = make_learner_step(critic, optimizer, loss_fn, target_every, rho_args, 1 + per_update)

  return DQN(init, act, learner_step, q_values, critic)
