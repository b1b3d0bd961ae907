"""Typed, frozen run configurations, their presets and their validation.

A `TrainConfig` fully describes a run (DESIGN principle 3): the command line maps onto it, a sweep is a grid
over its fields and a run directory holds the `config.json` that produced it.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any, Self

from smoothrl import envs, keys
from smoothrl.agents.c51 import SupportConfig
from smoothrl.agents.dqn import DQNConfig
from smoothrl.networks import critics
from smoothrl.networks.critics import ATARI_NETWORK, NetworkConfig
from smoothrl.networks.method import METHODS, MethodConfig, RegulariserConfig
from smoothrl.networks.smoothness import PENALTIES
from smoothrl.optimizers import EPS_PLACEMENTS

AGENTS = ('dqn', 'c51')
RUNNERS = ('host', 'compiled')
LOSSES = ('mse', 'huber')
PADDINGS = ('VALID', 'SAME')


# How fields and methods are named for people: short labels in run names, legends and tables, and the names of
# the methods of thesis Section 7.3 (`METHODS` is the one list of their keys).
FIELD_LABELS = {
  'method.method': 'method',
  'method.layers': 'layers',
  'method.lipschitz': 'K',
  'dqn.learning_rate': 'lr',
  'dqn.adam_eps': 'eps',
  'network.conv_layers': 'conv',
  'network.conv_channels': 'width',
  'network.hidden': 'fc',
  'regulariser.gradient_penalty': 'penalty',
  'regulariser.penalty_coef': 'zeta',
}
FIELD_NAMES = {'dqn.learning_rate': 'learning rate h', 'dqn.adam_eps': 'Adam ε', 'method.lipschitz': 'K'}
METHOD_NAMES = {'none': 'Adam', 'sn': 'SN', 'divout': 'DIVOUT', 'divgrad': 'DIVGRAD', 'muleps': 'MULEPS'}


class ConfigError(ValueError):
  """A configuration that cannot run; the message lists every problem found."""


class TrainingError(RuntimeError):
  """A run stopped for a reason it names (a non-finite loss, say)."""


class JsonConfig:
  """The JSON side of a run kind's config dataclass (`kind.RunConfig`): `to_dict`, `to_json`, and `from_dict`,
  which refuses unknown fields (`build`)."""

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), indent=2, sort_keys=True)

  @classmethod
  def from_dict(cls, data: dict[str, Any]) -> Self:
    return build(cls, data)


@dataclasses.dataclass(frozen=True)
class AtariConfig:
  """Atari protocol options (`atari/<Game>` environments; see `smoothrl.envs.atari`).

  Attributes:
    protocol: 'noop' (up to 30 no-op starts, no sticky actions: Rainbow and the thesis) or 'sticky' (sticky
      actions 0.25: Machado et al., Dopamine).
    terminal_on_life_loss: a lost life ends the episode for learning (discount 0); scores still count whole games.
    full_action_space: all 18 actions instead of the game's minimal set.
    max_episode_frames: the episode cap in emulator frames (108,000 = 30 minutes of play).
  """

  protocol: str = 'noop'
  terminal_on_life_loss: bool = False
  full_action_space: bool = False
  max_episode_frames: int = 108_000

  def env_kwargs(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class TrainConfig(JsonConfig):
  """One training run."""

  agent: str = 'dqn'
  env: str = 'minatar/breakout'
  runner: str = 'host'
  steps: int = 5_000_000
  seed: int = 0
  out: str = 'runs/run'
  eval_period: int = 250_000
  eval_steps: int = 125_000
  eval_epsilon: float = 0.001
  smoothness_states: int = 512
  log_period: int = 1_000
  sigma_log_period: int = 10_000
  checkpoint_period: int = 100_000
  tensorboard: bool = False
  network: NetworkConfig = NetworkConfig()
  method: MethodConfig = MethodConfig()
  regulariser: RegulariserConfig = RegulariserConfig()
  dqn: DQNConfig = DQNConfig()
  c51: SupportConfig = SupportConfig()
  atari: AtariConfig = AtariConfig()

  def env_kwargs(self) -> dict[str, Any]:
    """Options for `envs.make` beyond name and seed."""
    return self.atari.env_kwargs() if self.env.startswith('atari/') else {}


def build(cls: type, data: Any, path: str = ''):
  """Builds a (nested) config dataclass from a mapping, refusing unknown fields; lists become tuples."""
  if not isinstance(data, dict):
    raise ConfigError(f'{path or "config"}: expected a mapping, got {type(data).__name__}')
  fields = {f.name: f for f in dataclasses.fields(cls)}
  unknown = sorted(set(data) - set(fields))
  if unknown:
    raise ConfigError(f'{path or "config"}: unknown field(s) {unknown}; valid: {sorted(fields)}')
  hints = typing.get_type_hints(cls)
  kwargs = {}
  for name, value in data.items():
    if dataclasses.is_dataclass(hints[name]):
      kwargs[name] = build(hints[name], value, f'{path}{name}.')
    else:
      kwargs[name] = tuple(value) if isinstance(value, list) else value
  return cls(**kwargs)


def replace(config: Any, **updates: Any) -> Any:
  """Returns the config dataclass `config` with fields replaced; dotted names ('dqn.learning_rate') reach nested
  configs; lists become tuples. The one setter of config fields (the CLI, presets and sweeps use it)."""
  top: dict[str, Any] = {}
  nested: dict[str, dict[str, Any]] = {}
  names = {f.name for f in dataclasses.fields(config)}
  for key, value in updates.items():
    section, _, leaf = key.partition('.')
    if section not in names:
      raise ConfigError(
        f'unknown config field {key!r}' if not leaf else f'unknown config section {section!r} in {key!r}'
      )
    value = tuple(value) if isinstance(value, list) else value
    if not leaf:
      top[section] = value
      continue
    sub = getattr(config, section)
    if not dataclasses.is_dataclass(sub):
      raise ConfigError(f'unknown config section {section!r} in {key!r}')
    if leaf not in {f.name for f in dataclasses.fields(sub)}:
      raise ConfigError(f'unknown config field {key!r}')
    nested.setdefault(section, {})[leaf] = value
  for section, values in nested.items():
    top[section] = dataclasses.replace(top.get(section, getattr(config, section)), **values)
  return dataclasses.replace(config, **top) if top else config


_ATARI_NETWORK = {f'network.{k}': v for k, v in dataclasses.asdict(ATARI_NETWORK).items()}
# The evaluation protocol of Hessel et al. (thesis Appendix E.2.5): every 250K steps, 125K steps at epsilon 0.001.
_ATARI_EVALUATION = {'eval_period': 250_000, 'eval_steps': 125_000, 'eval_epsilon': 0.001}

PRESETS: dict[str, dict[str, Any]] = {
  # Thesis Table E.1 with the Table E.3 critic: the MinAtar reproduction settings.
  'dqn-minatar': {},
  # Thesis Table E.4 (DQN-Adam) with the Table E.5 critic.
  'dqn-adam-atari': {
    **_ATARI_NETWORK,
    **_ATARI_EVALUATION,
    'env': 'atari/Pong',
    'steps': 50_000_000,
    'dqn.target_update_period': 8_000,
    'dqn.warmup_steps': 20_000,
    'dqn.replay_capacity': 1_000_000,
    'dqn.loss': 'huber',
    'sigma_log_period': 100_000,
    'checkpoint_period': 1_000_000,
  },
  # C51 as in the Rainbow paper and Dopamine: 51 atoms on [-10, 10], Adam lr 0.00025 eps 0.0003125, target every
  # 8,000 steps, warm-up 20,000, epsilon 1 -> 0.01 over 250,000 steps, replay 1M, batch 32.
  'c51-atari': {
    **_ATARI_NETWORK,
    **_ATARI_EVALUATION,
    'agent': 'c51',
    'env': 'atari/Pong',
    'steps': 50_000_000,
    'dqn.target_update_period': 8_000,
    'dqn.warmup_steps': 20_000,
    'dqn.replay_capacity': 1_000_000,
    'c51.num_atoms': 51,
    'c51.v_min': -10.0,
    'c51.v_max': 10.0,
    'sigma_log_period': 100_000,
    'checkpoint_period': 1_000_000,
  },
  # A short run that shows learning on MinAtar in minutes on a laptop.
  'minatar-quick': {
    'steps': 60_000,
    'eval_period': 30_000,
    'eval_steps': 5_000,
    'sigma_log_period': 5_000,
    'dqn.epsilon_decay_steps': 30_000,
    'dqn.warmup_steps': 2_000,
    'dqn.target_update_period': 1_000,
    'dqn.learning_rate': 0.001,
  },
}


def preset(name: str) -> TrainConfig:
  if name not in PRESETS:
    raise ConfigError(f'unknown preset {name!r}; valid: {sorted(PRESETS)}')
  return replace(TrainConfig(), **PRESETS[name])


MAX_CONV_LAYERS = 64  # far deeper than any observation allows; bounds what validation builds per layer


def validate(config: TrainConfig) -> None:
  """Checks everything that can be checked before work starts; raises one ConfigError listing every problem."""
  problems: list[str] = []

  def check(ok: bool, message: str) -> None:
    if not ok:
      problems.append(message)

  c, d, n, m = config, config.dqn, config.network, config.method
  check(c.agent in AGENTS, f'unknown agent {c.agent!r}; valid: {", ".join(AGENTS)}')
  check(c.runner in RUNNERS, f'unknown runner {c.runner!r}; valid: {", ".join(RUNNERS)}')
  try:
    envs.validate_name(c.env)
  except ValueError as e:
    problems.append(str(e))
  check(isinstance(c.steps, int) and c.steps > 0, f'steps must be a positive integer, got {c.steps!r}')
  # Environments and numpy take seeds below 2**32 (Atari's below 2**31); evaluation seeds seed + EVAL_SEED_OFFSET.
  bits = 31 if isinstance(c.env, str) and c.env.startswith('atari/') else 32
  seeds = 2**bits - keys.EVAL_SEED_OFFSET
  check(
    isinstance(c.seed, int) and not isinstance(c.seed, bool) and 0 <= c.seed < seeds,
    f'seed must be an integer from 0 to {seeds - 1:,} (evaluation seeds it + {keys.EVAL_SEED_OFFSET:,}, below '
    f'2**{bits}), got {c.seed!r}',
  )
  check(c.eval_period > 0, f'eval_period must be positive, got {c.eval_period}')
  check(c.eval_steps > 0, f'eval_steps must be positive, got {c.eval_steps}')
  check(0.0 <= c.eval_epsilon <= 1.0, f'eval_epsilon must be in [0, 1], got {c.eval_epsilon}')
  check(
    isinstance(c.smoothness_states, int) and c.smoothness_states > 0,
    f'smoothness_states must be a positive integer, got {c.smoothness_states!r}',
  )
  check(c.log_period > 0, f'log_period must be positive, got {c.log_period}')
  check(
    c.checkpoint_period >= 0 and c.checkpoint_period % max(c.log_period, 1) == 0,
    f'checkpoint_period ({c.checkpoint_period}) must be 0 (off) or a multiple of log_period ({c.log_period})',
  )
  check(c.sigma_log_period > 0, f'sigma_log_period must be positive, got {c.sigma_log_period}')
  check(0.0 <= d.gamma <= 1.0, f'dqn.gamma must be in [0, 1], got {d.gamma}')
  check(d.update_period > 0, f'dqn.update_period must be positive, got {d.update_period}')
  check(
    d.target_update_period > 0 and d.target_update_period % max(d.update_period, 1) == 0,
    f'dqn.target_update_period ({d.target_update_period}) must be a positive multiple of '
    f'dqn.update_period ({d.update_period})',
  )
  check(
    0.0 <= d.epsilon_end <= d.epsilon_start <= 1.0,
    f'need 0 <= epsilon_end <= epsilon_start <= 1, got {d.epsilon_end}, {d.epsilon_start}',
  )
  check(d.epsilon_decay_steps > 0, f'dqn.epsilon_decay_steps must be positive, got {d.epsilon_decay_steps}')
  check(
    d.warmup_steps >= d.batch_size,
    f'dqn.warmup_steps ({d.warmup_steps}) must be at least dqn.batch_size ({d.batch_size})',
  )
  check(
    d.replay_capacity > d.batch_size,
    f'dqn.replay_capacity ({d.replay_capacity}) must exceed dqn.batch_size ({d.batch_size})',
  )
  check(d.batch_size > 0, f'dqn.batch_size must be positive, got {d.batch_size}')
  check(d.loss in LOSSES, f'unknown loss {d.loss!r}; valid: {", ".join(LOSSES)}')
  check(d.learning_rate > 0, f'dqn.learning_rate must be positive, got {d.learning_rate}')
  check(d.adam_eps >= 0, f'dqn.adam_eps must be non-negative, got {d.adam_eps}')
  check(0 <= d.adam_b1 < 1 and 0 <= d.adam_b2 < 1, f'Adam betas must be in [0, 1), got {d.adam_b1}, {d.adam_b2}')
  check(
    d.eps_placement in EPS_PLACEMENTS, f'unknown eps_placement {d.eps_placement!r}; valid: {", ".join(EPS_PLACEMENTS)}'
  )
  depth_ok = isinstance(n.conv_layers, int) and 0 <= n.conv_layers <= MAX_CONV_LAYERS  # checked before it sizes lists
  check(depth_ok, f'network.conv_layers must be in [0, {MAX_CONV_LAYERS}], got {n.conv_layers!r}')
  check(n.hidden > 0, f'network.hidden must be positive, got {n.hidden}')
  for field in ('conv_channels', 'kernel_size', 'stride') if depth_ok else ():
    try:
      values = n.per_layer(field)
    except (ValueError, TypeError) as e:
      problems.append(str(e))
      continue
    check(
      all(isinstance(v, int) and v > 0 for v in values),
      f'network.{field} must be positive integers, got {getattr(n, field)}',
    )
  check(n.padding in PADDINGS, f'unknown padding {n.padding!r}; valid: {", ".join(PADDINGS)}')
  check(
    isinstance(n.obs_scale, (int, float)) and not isinstance(n.obs_scale, bool) and n.obs_scale > 0,
    f'network.obs_scale must be a positive number, got {n.obs_scale!r}',
  )
  check(m.method in METHODS, f'unknown method {m.method!r}; valid: {", ".join(METHODS)}')
  check(m.lipschitz > 0, f'method.lipschitz must be positive, got {m.lipschitz}')
  check(m.power_iterations >= 1, f'method.power_iterations must be >= 1, got {m.power_iterations}')
  check(
    isinstance(m.power_iteration_on_acting, bool),
    f'method.power_iteration_on_acting must be true or false, got {m.power_iteration_on_acting!r}',
  )
  check(c.c51.num_atoms >= 2, f'c51.num_atoms must be at least 2, got {c.c51.num_atoms}')
  check(c.c51.v_min < c.c51.v_max, f'need c51.v_min < c51.v_max, got {c.c51.v_min}, {c.c51.v_max}')
  check(c.atari.protocol in ('noop', 'sticky'), f'unknown atari.protocol {c.atari.protocol!r}; valid: noop, sticky')
  check(c.atari.max_episode_frames > 0, f'atari.max_episode_frames must be positive, got {c.atari.max_episode_frames}')
  r = config.regulariser
  check(
    r.gradient_penalty in PENALTIES, f'unknown gradient_penalty {r.gradient_penalty!r}; valid: {", ".join(PENALTIES)}'
  )
  check(r.penalty_coef >= 0, f'regulariser.penalty_coef must be non-negative, got {r.penalty_coef}')
  check(
    r.gradient_penalty == 'none' or r.penalty_coef > 0,
    f'gradient penalty {r.gradient_penalty!r} needs a positive regulariser.penalty_coef',
  )
  if m.method != 'none' and depth_ok:
    try:
      critics.resolve_layers(n, m.layers)
    except ValueError as e:
      problems.append(str(e))
  if problems:
    raise ConfigError('invalid config:\n  - ' + '\n  - '.join(problems))
