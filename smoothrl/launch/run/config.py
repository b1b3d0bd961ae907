"""Typed, frozen run configurations, their presets and their validation.

A `TrainConfig` fully describes a run (DESIGN principle 3): the command line maps onto it, a sweep is a grid
over its fields and a run directory holds the `config.json` that produced it.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from smoothrl import envs
from smoothrl.optimizers import EPS_PLACEMENTS
from smoothrl.networks.method import METHODS, MethodConfig, RegulariserConfig
from smoothrl.agents.c51 import SupportConfig
from smoothrl.agents.dqn import DQNConfig
from smoothrl.networks import critics
from smoothrl.networks.critics import ATARI_NETWORK, NetworkConfig
from smoothrl.networks.smoothness import PENALTIES

AGENTS = ('dqn', 'c51')
RUNNERS = ('host', 'compiled')
LOSSES = ('mse', 'huber')
PADDINGS = ('VALID', 'SAME')


# How fields and methods are named for people: short labels in run names, legends and tables, and the names of
# the methods of thesis Section 7.3 (`METHODS` is the one list of their keys).
FIELD_LABELS = {
    'method.method': 'method', 'method.layers': 'layers', 'method.lipschitz': 'K', 'dqn.learning_rate': 'lr',
    'dqn.adam_eps': 'eps', 'network.conv_layers': 'conv', 'network.conv_channels': 'width', 'network.hidden': 'fc',
    'regulariser.gradient_penalty': 'penalty', 'regulariser.penalty_coef': 'zeta',
}
FIELD_NAMES = {'dqn.learning_rate': 'learning rate h', 'dqn.adam_eps': 'Adam ε', 'method.lipschitz': 'K'}
METHOD_NAMES = {'none': 'Adam', 'sn': 'SN', 'divout': 'DIVOUT', 'divgrad': 'DIVGRAD', 'muleps': 'MULEPS'}


class ConfigError(ValueError):
  """A configuration that cannot run; the message lists every problem found."""


class TrainingError(RuntimeError):
  """A run stopped for a reason it names (a non-finite loss, say)."""


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
class TrainConfig:
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

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), indent=2, sort_keys=True)

  @classmethod
  def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
    return _build(cls, data, path='')


_NESTED = {'network': NetworkConfig, 'method': MethodConfig, 'regulariser': RegulariserConfig, 'dqn': DQNConfig,
           'c51': SupportConfig, 'atari': AtariConfig}


def _build(cls, data: dict[str, Any], path: str):
  """Builds a (nested) config dataclass from a dict, refusing unknown fields."""
  if not isinstance(data, dict):
    raise ConfigError(f'{path or "config"}: expected a mapping, got {type(data).__name__}')
  fields = {f.name: f for f in dataclasses.fields(cls)}
  unknown = sorted(set(data) - set(fields))
  if unknown:
    raise ConfigError(f'{path or "config"}: unknown field(s) {unknown}; valid: {sorted(fields)}')
  kwargs = {}
  for name, value in data.items():
    sub = _NESTED.get(name) if cls is TrainConfig else None
    if sub is not None:
      kwargs[name] = _build(sub, value, f'{path}{name}.')
    elif isinstance(value, list):
      kwargs[name] = tuple(value)
    else:
      kwargs[name] = value
  return cls(**kwargs)


def replace(config: TrainConfig, **updates: Any) -> TrainConfig:
  """Returns `config` with fields replaced; dotted names ('dqn.learning_rate') reach nested configs."""
  data = config.to_dict()
  for key, value in updates.items():
    *parents, leaf = key.split('.')
    node = data
    for parent in parents:
      if parent not in node or not isinstance(node[parent], dict):
        raise ConfigError(f'unknown config section {parent!r} in {key!r}')
      node = node[parent]
    if leaf not in node:
      raise ConfigError(f'unknown config field {key!r}')
    node[leaf] = value
  return TrainConfig.from_dict(data)


_ATARI_NETWORK = {f'network.{k}': v for k, v in dataclasses.asdict(ATARI_NETWORK).items()}
# The evaluation protocol of Hessel et al. (thesis Appendix E.2.5): every 250K steps, 125K steps at epsilon 0.001.
_ATARI_EVALUATION = {'eval_period': 250_000, 'eval_steps': 125_000, 'eval_epsilon': 0.001}

PRESETS: dict[str, dict[str, Any]] = {
    # Thesis Table E.1 with the Table E.3 critic: the MinAtar reproduction settings.
    'dqn-minatar': {},
    # Thesis Table E.4 (DQN-Adam) with the Table E.5 critic.
    'dqn-adam-atari': {
        **_ATARI_NETWORK, **_ATARI_EVALUATION, 'env': 'atari/Pong', 'steps': 50_000_000,
        'dqn.target_update_period': 8_000, 'dqn.warmup_steps': 20_000, 'dqn.replay_capacity': 1_000_000,
        'dqn.loss': 'huber', 'sigma_log_period': 100_000, 'checkpoint_period': 1_000_000},
    # C51 as in the Rainbow paper and Dopamine: 51 atoms on [-10, 10], Adam lr 0.00025 eps 0.0003125, target every
    # 8,000 steps, warm-up 20,000, epsilon 1 -> 0.01 over 250,000 steps, replay 1M, batch 32.
    'c51-atari': {
        **_ATARI_NETWORK, **_ATARI_EVALUATION, 'agent': 'c51', 'env': 'atari/Pong', 'steps': 50_000_000,
        'dqn.target_update_period': 8_000, 'dqn.warmup_steps': 20_000, 'dqn.replay_capacity': 1_000_000,
        'c51.num_atoms': 51, 'c51.v_min': -10.0, 'c51.v_max': 10.0, 'sigma_log_period': 100_000,
        'checkpoint_period': 1_000_000},
    # A short run that shows learning on MinAtar in minutes on a laptop.
    'minatar-quick': {
        'steps': 60_000, 'eval_period': 30_000, 'eval_steps': 5_000, 'sigma_log_period': 5_000,
        'dqn.epsilon_decay_steps': 30_000, 'dqn.warmup_steps': 2_000, 'dqn.target_update_period': 1_000,
        'dqn.learning_rate': 0.001,
    },
}


def preset(name: str) -> TrainConfig:
  if name not in PRESETS:
    raise ConfigError(f'unknown preset {name!r}; valid: {sorted(PRESETS)}')
  return replace(TrainConfig(), **PRESETS[name])


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
  check(c.eval_period > 0, f'eval_period must be positive, got {c.eval_period}')
  check(c.eval_steps > 0, f'eval_steps must be positive, got {c.eval_steps}')
  check(0.0 <= c.eval_epsilon <= 1.0, f'eval_epsilon must be in [0, 1], got {c.eval_epsilon}')
  check(isinstance(c.smoothness_states, int) and c.smoothness_states > 0,
        f'smoothness_states must be a positive integer, got {c.smoothness_states!r}')
  check(c.log_period > 0, f'log_period must be positive, got {c.log_period}')
  check(c.checkpoint_period >= 0 and c.checkpoint_period % max(c.log_period, 1) == 0,
        f'checkpoint_period ({c.checkpoint_period}) must be 0 (off) or a multiple of log_period ({c.log_period})')
  check(c.sigma_log_period > 0, f'sigma_log_period must be positive, got {c.sigma_log_period}')
  check(0.0 <= d.gamma <= 1.0, f'dqn.gamma must be in [0, 1], got {d.gamma}')
  check(d.update_period > 0, f'dqn.update_period must be positive, got {d.update_period}')
  check(d.target_update_period > 0 and d.target_update_period % max(d.update_period, 1) == 0,
        f'dqn.target_update_period ({d.target_update_period}) must be a positive multiple of '
        f'dqn.update_period ({d.update_period})')
  check(0.0 <= d.epsilon_end <= d.epsilon_start <= 1.0,
        f'need 0 <= epsilon_end <= epsilon_start <= 1, got {d.epsilon_end}, {d.epsilon_start}')
  check(d.epsilon_decay_steps > 0, f'dqn.epsilon_decay_steps must be positive, got {d.epsilon_decay_steps}')
  check(d.warmup_steps >= d.batch_size,
        f'dqn.warmup_steps ({d.warmup_steps}) must be at least dqn.batch_size ({d.batch_size})')
  check(d.replay_capacity > d.batch_size,
        f'dqn.replay_capacity ({d.replay_capacity}) must exceed dqn.batch_size ({d.batch_size})')
  check(d.batch_size > 0, f'dqn.batch_size must be positive, got {d.batch_size}')
  check(d.loss in LOSSES, f'unknown loss {d.loss!r}; valid: {", ".join(LOSSES)}')
  check(d.learning_rate > 0, f'dqn.learning_rate must be positive, got {d.learning_rate}')
  check(d.adam_eps >= 0, f'dqn.adam_eps must be non-negative, got {d.adam_eps}')
  check(0 <= d.adam_b1 < 1 and 0 <= d.adam_b2 < 1, f'Adam betas must be in [0, 1), got {d.adam_b1}, {d.adam_b2}')
  check(d.eps_placement in EPS_PLACEMENTS,
        f'unknown eps_placement {d.eps_placement!r}; valid: {", ".join(EPS_PLACEMENTS)}')
  check(n.conv_layers >= 0, f'network.conv_layers must be >= 0, got {n.conv_layers}')
  check(n.hidden > 0, f'network.hidden must be positive, got {n.hidden}')
  for field in ('conv_channels', 'kernel_size', 'stride'):
    try:
      values = n.per_layer(field)
    except (ValueError, TypeError) as e:
      problems.append(str(e))
      continue
    check(all(isinstance(v, int) and v > 0 for v in values), f'network.{field} must be positive integers, got '
          f'{getattr(n, field)}')
  check(n.padding in PADDINGS, f'unknown padding {n.padding!r}; valid: {", ".join(PADDINGS)}')
  check(m.method in METHODS, f'unknown method {m.method!r}; valid: {", ".join(METHODS)}')
  check(m.lipschitz > 0, f'method.lipschitz must be positive, got {m.lipschitz}')
  check(m.power_iterations >= 1, f'method.power_iterations must be >= 1, got {m.power_iterations}')
  check(c.c51.num_atoms >= 2, f'c51.num_atoms must be at least 2, got {c.c51.num_atoms}')
  check(c.c51.v_min < c.c51.v_max, f'need c51.v_min < c51.v_max, got {c.c51.v_min}, {c.c51.v_max}')
  check(c.atari.protocol in ('noop', 'sticky'), f"unknown atari.protocol {c.atari.protocol!r}; valid: noop, sticky")
  check(c.atari.max_episode_frames > 0, f'atari.max_episode_frames must be positive, got {c.atari.max_episode_frames}')
  r = config.regulariser
  check(r.gradient_penalty in PENALTIES,
        f'unknown gradient_penalty {r.gradient_penalty!r}; valid: {", ".join(PENALTIES)}')
  check(r.penalty_coef >= 0, f'regulariser.penalty_coef must be non-negative, got {r.penalty_coef}')
  check(r.gradient_penalty == 'none' or r.penalty_coef > 0,
        f'gradient penalty {r.gradient_penalty!r} needs a positive regulariser.penalty_coef')
  if m.method != 'none':
    try:
      critics.resolve_layers(n, m.layers)
    except ValueError as e:
      problems.append(str(e))
  if problems:
    raise ConfigError('invalid config:\n  - ' + '\n  - '.join(problems))
