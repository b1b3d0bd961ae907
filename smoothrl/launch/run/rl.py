"""The RL run kind: DQN and C51 runs of a `TrainConfig`, trained by the host or the compiled loop."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from smoothrl.launch.run import compiled, host
from smoothrl.launch.run import config as config_lib
from smoothrl.launch.run.kind import RunKind, TrainOptions

_SN_ONLY = ('lipschitz', 'sn_always', 'sn_grad_through_sigma')


def validate(config: config_lib.TrainConfig, compiled_programs: bool = False) -> None:
  """`config.validate`, and what the compiled runner needs when the run is compiled (its `runner` or the backend)."""
  if compiled_programs or config.runner == 'compiled':
    compiled.validate(config)
    compiled.make_env(config.env)
  else:
    config_lib.validate(config)


def train(configs: Sequence[config_lib.TrainConfig], options: TrainOptions) -> list[dict[str, Any]]:
  """Trains RL runs: as compiled programs with `options.compiled` or when every run asks for the compiled runner,
  else with the host loop; see `compiled.train_grid` and `host.train_many`."""
  configs = list(configs)
  if options.compiled or all(c.runner == 'compiled' for c in configs):
    return compiled.train_grid(
      [config_lib.replace(c, runner='compiled') for c in configs],
      show_progress=options.show_progress,
      resume=options.resume,
      workers=options.workers,
      max_members=options.max_members,
    )
  return host.train_many(configs, show_progress=options.show_progress, resume=options.resume, workers=options.workers)


def canonical(config: config_lib.TrainConfig) -> config_lib.TrainConfig:
  """`config` with the fields that cannot change its run reset, to find runs that repeat each other."""
  m = config.method
  if m.method == 'none':
    m = config_lib.MethodConfig()
  else:
    defaults = config_lib.MethodConfig()
    layers = tuple(sorted(m.layers)) if all(isinstance(i, int) for i in m.layers) else m.layers
    m = dataclasses.replace(m, layers=layers)
    if m.method != 'sn':
      m = dataclasses.replace(m, **{f: getattr(defaults, f) for f in _SN_ONLY})
  c51 = config.c51 if config.agent == 'c51' else type(config.c51)()
  return dataclasses.replace(config, out='', method=m, c51=c51)


KIND = RunKind(
  name='rl',
  config_type=config_lib.TrainConfig,
  presets=config_lib.PRESETS,
  validate=validate,
  train=train,
  canonical=canonical,
  group=compiled.structure_key,
  score='return_mean',
)
