"""A finished RL run's agent: the final parameters it keeps, and how to load them and act.

    policy = policy.load('runs/quickstart')
    action = policy.act(jax.random.PRNGKey(0), observation)          # greedy; epsilon=... to explore
    q = policy.q_values(observations)                                 # a batch of observations

The run directory's `final/` holds the online critic's parameters, haiku state and spectral vectors in the safe
format of `checkpoint.save_model` (no pickle), with the run's config and the observation shape and action count
that rebuild the agent around them.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from smoothrl.agents import dqn, factory
from smoothrl.launch.run import checkpoint
from smoothrl.launch.run import config as config_lib


def model_record(
  config: config_lib.TrainConfig, state: dqn.DQNState | dqn.ActorState, obs_shape: tuple[int, ...], num_actions: int
) -> dict[str, Any]:
  """What a finished run keeps of its agent (`Recorder.finish`): the acting state's arrays, and its config,
  observation shape and action count."""
  actor = dqn.ActorState(state.params, state.net_state, state.spectral)
  return {
    'arrays': actor,
    'meta': {'config': config.to_dict(), 'obs_shape': [int(n) for n in obs_shape], 'num_actions': int(num_actions)},
  }


class Policy(NamedTuple):
  """A trained agent ready to act: `act(key, obs, epsilon=0.0)` on one observation, `q_values(obs)` on a batch."""

  agent: dqn.DQN
  actor: dqn.ActorState
  config: config_lib.TrainConfig

  def act(self, key: jax.Array, obs: jax.Array, epsilon: float = 0.0) -> jax.Array:
    return self.agent.act(self.actor, key, jnp.asarray(obs), jnp.float32(epsilon))

  def q_values(self, obs: jax.Array) -> jax.Array:
    return self.agent.q_values(self.actor, jnp.asarray(obs))


def load(run_dir: str | os.PathLike) -> Policy:
  """The agent of a finished run in `run_dir`, with its final parameters.

  Raises:
    ConfigError: `run_dir` holds no final parameters (the run has not finished), or ones that do not fit the agent
      its config builds.
  """
  meta, leaves = checkpoint.load_model(run_dir)
  config = config_lib.TrainConfig.from_dict(meta['config'])
  obs_shape = tuple(meta['obs_shape'])
  agent = factory.make_agent(config, obs_shape, meta['num_actions'])
  template = dqn.actor_state(
    jax.eval_shape(agent.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct(obs_shape, jnp.float32))
  )
  actor = checkpoint.restore(leaves, template, run_dir)
  return Policy(agent, jax.tree.map(jnp.asarray, actor), config)
