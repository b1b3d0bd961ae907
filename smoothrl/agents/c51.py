"""C51, categorical DQN (Bellemare et al. 2017), as pure functions over DQN's explicit state.

The critic's output of width `num_actions * num_atoms` is read as logits l(s, a, .) of a categorical distribution
over the fixed support z_j = v_min + j * (v_max - v_min) / (num_atoms - 1), j = 0 .. num_atoms - 1:

  p_j(s, a) = softmax(l(s, a, .))_j,    Q(s, a) = sum_j p_j(s, a) z_j.

Acting is epsilon-greedy on Q. The loss (Bellemare et al. 2017, Algorithm 1) is the cross-entropy between the
online distribution of the taken action and the target distribution projected onto the support (their Eq 7),

  (Phi T Z)_i = sum_j [1 - |clip(r + gamma * discount * z_j, v_min, v_max) - z_i| / dz]_0^1 p_j(s', a*),

with a* = argmax_a' Q_target(s', a') and p_j(s', a*) from the target network, averaged over the batch.

Smoothness methods act on the critic exactly as for DQN. For DIVOUT (thesis Eq 7.13) the critic divides its raw
output o by rho, and for C51 that output is the logits, so the agent's distributions are

  p(s, a) = softmax(o(s, a, .) / rho),

i.e. rho acts as a softmax temperature on each action's atom distribution (rho > 1 flattens it, rho < 1 sharpens
it); it does not divide Q(s, a) by rho, and the support stays fixed. SN of the output layer does the same to the
weight term of the logits (W h / sigma; the bias is not scaled). DIVGRAD and MULEPS use rho in the optimiser and
leave the critic as it is.
"""

from __future__ import annotations

import dataclasses

import haiku as hk
import jax
import jax.numpy as jnp
import rlax

from smoothrl.agents import dqn
from smoothrl.agents.replay import Transitions
from smoothrl.networks import method as method_lib
from smoothrl.networks import smoothness, spectral


@dataclasses.dataclass(frozen=True)
class C51Config(dqn.DQNConfig):
  """C51 hyperparameters: DQN's (thesis Table E.1 defaults) and the categorical support.

  `loss` is unused: C51's loss is the categorical cross-entropy.

  Attributes:
    num_atoms: the number of atoms N of the support.
    v_min: the smallest atom z_0.
    v_max: the largest atom z_{N-1}.
  """

  num_atoms: int = 51
  v_min: float = -10.0
  v_max: float = 10.0

  def __post_init__(self):
    if self.num_atoms < 2:
      raise ValueError(f'C51 needs at least 2 atoms, got num_atoms={self.num_atoms}')
    if not self.v_min < self.v_max:
      raise ValueError(f'C51 needs v_min < v_max, got v_min={self.v_min}, v_max={self.v_max}')


@dataclasses.dataclass(frozen=True)
class SupportConfig:
  """The categorical support of C51: `num_atoms` atoms evenly spaced on [v_min, v_max] (Bellemare et al. 2017)."""

  num_atoms: int = 51
  v_min: float = -10.0
  v_max: float = 10.0


def c51_config(dqn_config: dqn.DQNConfig, support: SupportConfig) -> C51Config:
  """C51's config from DQN's hyperparameters and a support."""
  fields = {f.name: getattr(dqn_config, f.name) for f in dataclasses.fields(dqn.DQNConfig)}
  return C51Config(**fields, num_atoms=support.num_atoms, v_min=support.v_min, v_max=support.v_max)


def atoms(config: C51Config) -> jax.Array:
  """The fixed support z = linspace(v_min, v_max, num_atoms)."""
  return jnp.linspace(config.v_min, config.v_max, config.num_atoms, dtype=jnp.float32)


def split_logits(output: jax.Array, num_actions: int, num_atoms: int) -> jax.Array:
  """Reshapes a critic output of width num_actions * num_atoms to logits of shape (..., num_actions, num_atoms)."""
  if output.shape[-1] != num_actions * num_atoms:
    raise ValueError(
      f'a C51 critic needs output width num_actions * num_atoms = {num_actions} * {num_atoms} = '
      f'{num_actions * num_atoms}, got {output.shape[-1]}'
    )
  return output.reshape(*output.shape[:-1], num_actions, num_atoms)


def expected_q(logits: jax.Array, support: jax.Array) -> jax.Array:
  """Q(s, a) = sum_j softmax(l(s, a, .))_j z_j over the last axis of `logits`."""
  return jnp.sum(jax.nn.softmax(logits, axis=-1) * support, axis=-1)


def categorical_loss(
  logits: jax.Array,
  actions: jax.Array,
  rewards: jax.Array,
  discounts: jax.Array,
  target_logits: jax.Array,
  support: jax.Array,
) -> jax.Array:
  """Mean over the batch of the C51 cross-entropy (Bellemare et al. 2017, Eq 7 and Algorithm 1).

  Args:
    logits: online logits at s, shape (B, A, N).
    actions: the actions taken at s, shape (B,).
    rewards: r, shape (B,).
    discounts: gamma * discount per transition (0 at termination), shape (B,).
    target_logits: target-network logits at s', shape (B, A, N); the greedy action a* maximises their expected
      value, and its distribution, shifted to r + discounts * z, is projected onto z.
    support: the atoms z, shape (N,).

  Returns:
    The scalar loss; no gradient flows through the projected target.
  """
  per_transition = jax.vmap(rlax.categorical_q_learning, in_axes=(None, 0, 0, 0, 0, None, 0))(
    support,
    logits,
    actions.astype(jnp.int32),
    rewards.astype(jnp.float32),
    discounts.astype(jnp.float32),
    support,
    target_logits,
  )
  return jnp.mean(per_transition)


def expected_q_critic(critic: method_lib.Critic, num_actions: int, support: jax.Array) -> method_lib.Critic:
  """The same critic with `apply(...).q` giving the expected values Q(s, a), shape (B, num_actions)."""
  num_atoms = support.shape[0]

  def apply(
    params: hk.Params,
    net_state: hk.State,
    spectral_state: spectral.SpectralState,
    obs: jax.Array,
    is_training: bool = False,
  ) -> method_lib.CriticOutput:
    out = critic.apply(params, net_state, spectral_state, obs, is_training)
    return out._replace(q=expected_q(split_logits(out.q, num_actions, num_atoms), support))

  return critic._replace(apply=apply)


def make_c51(
  config: C51Config,
  critic: method_lib.Critic,
  method: str | method_lib.DynamicMethod,
  num_actions: int,
  regulariser: method_lib.RegulariserConfig = method_lib.RegulariserConfig(),
  learning_rate: float | jax.Array | None = None,
  adam_eps: float | jax.Array | None = None,
) -> dqn.DQN:
  """Builds C51's functions for `critic`, whose output width must be num_actions * config.num_atoms.

  `init`, `act` and `q_values` are DQN's on the expected values Q(s, a); `learner_step` minimises
  `categorical_loss` with the target network refreshed every `target_update_period / update_period` updates, as in
  DQN. A gradient penalty in `regulariser` acts on the expected values. `method` picks the optimiser (DIVGRAD and
  MULEPS use rho): a name, or the `DynamicMethod` of a dynamic critic (`dqn.make_optimizer`). The returned `critic`
  is `critic` itself (its output is the logits).
  """
  support = atoms(config)
  num_atoms = config.num_atoms
  optimizer, rho_args = dqn.make_optimizer(config, method, learning_rate, adam_eps)
  target_every = config.target_update_period // config.update_period
  q_critic = expected_q_critic(critic, num_actions, support)
  q_agent = dqn.make_dqn(config, q_critic, method, num_actions, regulariser, learning_rate, adam_eps)

  def init(key: jax.Array, obs: jax.Array) -> dqn.DQNState:
    state = q_agent.init(key, obs)
    # Traces the critic once to refuse a wrong output width here rather than at the first update.
    jax.eval_shape(q_critic.apply, state.params, state.net_state, state.spectral, obs[None])
    return state

  def loss_fn(params, state: dqn.DQNState, spectral_state, batch: Transitions):
    out = critic.apply(params, state.net_state, spectral_state, batch.obs, True)
    logits = split_logits(out.q, num_actions, num_atoms)
    target_logits = split_logits(
      critic.apply(state.target_params, state.target_net_state, state.target_spectral, batch.next_obs, False).q,
      num_actions,
      num_atoms,
    )
    discounts = config.gamma * jnp.asarray(batch.discount, jnp.float32)
    loss = categorical_loss(logits, batch.action, batch.reward, discounts, target_logits, support)
    if regulariser.gradient_penalty != 'none':
      q_fn = lambda obs: q_critic.apply(params, state.net_state, spectral_state, obs, True).q
      loss += regulariser.penalty_coef * smoothness.gradient_penalty(q_fn, batch.obs, regulariser.gradient_penalty)
    q_taken = jnp.take_along_axis(expected_q(logits, support), batch.action[:, None].astype(jnp.int32), axis=-1)
    return loss, (out, q_taken[:, 0])

  per_update, _ = dqn.acting_passes(config, critic)  # `q_agent.init` replays the warm-up's acting steps
  learner_step = dqn.make_learner_step(critic, optimizer, loss_fn, target_every, rho_args, 1 + per_update)

  return dqn.DQN(init, q_agent.act, learner_step, q_agent.q_values, critic)
