"""The run kinds the platform knows, by name (docs/run-kinds.md says how to add one)."""

from __future__ import annotations

from smoothrl.launch.run import flows, gan, rl, supervised
from smoothrl.launch.run.config import ConfigError
from smoothrl.launch.run.kind import RunKind

KINDS: dict[str, RunKind] = {kind.name: kind for kind in (rl.KIND, supervised.KIND, flows.KIND, gan.KIND)}
DEFAULT = 'rl'


def of(config: object) -> RunKind:
  """The run kind whose config `config` is."""
  for kind in KINDS.values():
    if type(config) is kind.config_type:
      return kind
  raise ConfigError(f'{type(config).__name__} is the config of no run kind; valid kinds: {", ".join(KINDS)}')


def get(name: str) -> RunKind:
  """The run kind `name`; ConfigError naming the kinds for an unknown one."""
  if name not in KINDS:
    raise ConfigError(f'unknown run kind {name!r}; valid: {", ".join(KINDS)}')
  return KINDS[name]
