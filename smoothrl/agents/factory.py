"""The one config -> agent factory, and the per-run values that runs of one compiled program may differ in.

`make_agent` reads an agent's sections of a run config (any object with the fields `agent`, `network`, `method`,
`regulariser`, `dqn` and `c51`, such as `smoothrl.launch.run.config.TrainConfig`). Values that may be traced, and
so differ between the members of one vmapped program, travel beside the config in `HParams`, never inside it.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import jax
import jax.numpy as jnp

from smoothrl.agents import c51, dqn
from smoothrl.networks import critics
from smoothrl.networks import method as method_lib

AGENTS = ('dqn', 'c51')


class AgentConfig(Protocol):
  """The sections of a run config that describe its agent."""

  agent: str
  network: critics.NetworkConfig
  method: method_lib.MethodConfig
  regulariser: method_lib.RegulariserConfig
  dqn: dqn.DQNConfig
  c51: c51.SupportConfig


class HParams(NamedTuple):
  """The hyperparameters that may differ between members of one compiled program, as (possibly traced) arrays.

  `method` (method id and layer mask) is None for a static program, whose critic fixes the method and layers.
  """

  learning_rate: jax.Array
  adam_eps: jax.Array
  lipschitz: jax.Array
  method: method_lib.DynamicMethod | None = None

  @classmethod
  def of(cls, config: AgentConfig, dynamic: bool = False) -> HParams:
    """`config`'s values; with `dynamic`, its method and layers as a `DynamicMethod` too."""
    method = method_lib.dynamic_method(config.method, config.network) if dynamic else None
    return cls(
      jnp.float32(config.dqn.learning_rate),
      jnp.float32(config.dqn.adam_eps),
      jnp.float32(config.method.lipschitz),
      method,
    )


def make_agent(
  config: AgentConfig, obs_shape: tuple[int, ...], num_actions: int, hparams: HParams | None = None
) -> dqn.DQN:
  """The agent of `config` for observations of `obs_shape` and `num_actions` actions.

  With `hparams`, its learning rate, Adam eps and K replace the config's, and its `method`, when set, gives the
  method and layer selection (a dynamic critic), so that runs differing in them can share one compiled program.
  """
  if config.agent not in AGENTS:
    raise ValueError(f'unknown agent {config.agent!r}; valid: {", ".join(AGENTS)}')
  hp = HParams.of(config) if hparams is None else hparams
  method = config.method.method if hp.method is None else hp.method
  width = num_actions * (config.c51.num_atoms if config.agent == 'c51' else 1)
  critic = method_lib.make_critic(
    config.network,
    config.method,
    obs_shape,
    width,
    batch_norm=config.regulariser.batch_norm,
    dynamic=hp.method,
    lipschitz=hp.lipschitz,
  )
  if config.agent == 'c51':
    return c51.make_c51(
      c51.c51_config(config.dqn, config.c51),
      critic,
      method,
      num_actions,
      config.regulariser,
      learning_rate=hp.learning_rate,
      adam_eps=hp.adam_eps,
    )
  return dqn.make_dqn(
    config.dqn, critic, method, num_actions, config.regulariser, learning_rate=hp.learning_rate, adam_eps=hp.adam_eps
  )
