"""Grouping runs into compiled programs: which runs can share one program, and how many fit on the device."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from smoothrl.launch.run import config as config_lib
from smoothrl.networks import method as method_lib

MEMORY_SHARE = 0.5  # of the device's memory that members' carries may fill: room for XLA's temporaries and a copy


def structure_key(config: config_lib.TrainConfig) -> str:
  """Configs with equal keys compile to the same program and can share one vmapped run.

  They may differ in seed, learning rate, Adam eps, K, method and layers (`HParams`).
  """
  neutral = config_lib.TrainConfig()
  same = config_lib.replace(
    config,
    seed=0,
    out='',
    **{
      'dqn.learning_rate': neutral.dqn.learning_rate,
      'dqn.adam_eps': neutral.dqn.adam_eps,
      'method.lipschitz': neutral.method.lipschitz,
      'method.method': neutral.method.method,
      'method.layers': neutral.method.layers,
    },
  )
  return same.to_json()


def method_key(config: config_lib.TrainConfig) -> tuple[str, tuple[str, ...]]:
  """The method and the layers it acts on; members with one `method_key` can share a static program."""
  return config.method.method, method_lib.selected_layers(config.network, config.method)


def device_bytes() -> int | None:
  """The memory XLA may allocate on the default device; None where the device does not say (a CPU)."""
  stats = jax.devices()[0].memory_stats()
  return stats.get('bytes_limit') if stats else None


def members_per_program(member: int, device: int | None, share: float = MEMORY_SHARE) -> int | None:
  """How many members of `member` bytes each one vmapped program may hold on a device of `device` bytes: as many
  as fill `share` of it (None: no limit known). Raises ConfigError when not even one fits."""
  if device is None:
    return None
  fits = int(share * device) // member
  if fits < 1:
    raise config_lib.ConfigError(
      f'one run needs {member / 2**20:,.0f} MiB of device memory for its replay and '
      f"state, more than {share:.0%} of the device's {device / 2**20:,.0f} MiB; lower "
      'dqn.replay_capacity'
    )
  return fits


def stack(trees: Sequence[Any]) -> Any:
  """The members' pytrees as one, with a leading member axis (what a vmapped program takes)."""
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def member(tree: Any, i: int) -> Any:
  """Member `i`'s pytree of a stacked one."""
  return jax.tree.map(lambda x: x[i], tree)
