"""A run kind: what the platform (recorder, sweeps, backends, resume, summary and plots) needs of one kind of run.

RL (`launch.run.rl`) is the first kind; `launch.kinds` lists them. The interface is documented for the next kind
in docs/run-kinds.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol


class RunConfig(Protocol):
  """A kind's config: a frozen dataclass, JSON-serialisable, with the run's `seed` and directory `out`."""

  seed: int
  out: str

  def to_dict(self) -> dict[str, Any]: ...

  def to_json(self) -> str: ...


class TrainOptions(NamedTuple):
  """How runs are trained, beyond their configs.

  Attributes:
    show_progress: draw the progress line (of the first run or worker only).
    resume: continue runs from their checkpoints, and return the summaries of finished ones without training.
    workers: processes side by side, each pinned to its share of the cores (0: one per core).
    compiled: train runs that share a structure as compiled programs (the `compiled` backend), where the kind
      has them.
    max_members: at most this many runs in one compiled program (None: as many as the device holds).
  """

  show_progress: bool = True
  resume: bool = False
  workers: int = 1
  compiled: bool = False
  max_members: int | None = None


@dataclasses.dataclass(frozen=True)
class RunKind:
  """One kind of run.

  Attributes:
    name: the kind's name in sweep specs (`kind:`) and in a run directory's `run.json`.
    config_type: its config class; `config_type()` is the default config and `config_type.from_dict(d)` reads
      one back, refusing unknown fields.
    presets: named starting points, as dotted-field overrides of the default config.
    validate: raises `ConfigError` listing every problem of a config before any work starts (`compiled=True`:
      also what the compiled programs need).
    train: trains runs (`TrainOptions`), each through a `Recorder` of its own; returns one summary per config, in
      order, or for a run that stopped alone (a non-finite loss) its failure record (`{'state': 'failed', ...}`).
    canonical: the config that stands for every config training identically (sweeps refuse repeats).
    group: runs with equal `group` keys may share one compiled program (the `compiled` backend); None when the kind
      has no compiled programs.
    score: the field of a run's `eval` records that summaries and plots report.
    subject: what a run of this kind learns on, from its config as a dict: the environment for RL, 'data/<name>'
      for supervised runs. Summaries and plots make a panel (and a column) per subject.
    step_name: what a run's steps count, as axis labels say.
    higher_is_better: whether a larger `score` is better (returns, accuracies) or a smaller one (an FID, an
      error): a run's 'best' score and the ranking of settings in summaries follow it.
  """

  name: str
  config_type: type
  presets: Mapping[str, Mapping[str, Any]]
  validate: Callable[[Any, bool], None]
  train: Callable[[Sequence[Any], TrainOptions], list[dict[str, Any]]]
  canonical: Callable[[Any], Any] = lambda config: config
  group: Callable[[Any], str] | None = None
  score: str = 'return_mean'
  subject: Callable[[Mapping[str, Any]], str] = lambda config: str(config.get('env', '?'))
  step_name: str = 'environment steps'
  higher_is_better: bool = True
