"""What every reproduction shares: training its runs through the supervised kind, reading back what they wrote,
and writing its figure and `result.json`.

A reproduction is a small-scale proxy of a thesis figure: it trains CPU-sized runs, then reads its numbers from the
run directories (never from memory), so its test checks what a user would find on disk.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from smoothrl.launch.analysis import plots
from smoothrl.launch.run import config as config_lib
from smoothrl.launch.run import supervised
from smoothrl.launch.run.files import METRICS_FILE, atomic_write_text, read_metrics
from smoothrl.launch.run.kind import TrainOptions

RESULT_FILE = 'result.json'
FIGURE_FILE = 'figure.png'


@dataclasses.dataclass(frozen=True)
class Reproduction:
  """One reproduction.

  Attributes:
    name: its name on the command line (`smoothrl reproduce NAME`).
    figure: the thesis figure(s) it mirrors, e.g. 'Figure 8.2'.
    claim: the direction the thesis reports, which the reproduction's test checks on the numbers it wrote.
    settings: the proxy's settings in a sentence (data, model, steps, seeds).
    run: `run(out, quick) -> result`: trains into `out/runs/`, draws `out/figure.png` and returns the numbers it
      read back (also written to `out/result.json`); `quick` is a smaller version for smoke tests.
  """

  name: str
  figure: str
  claim: str
  settings: str
  run: Callable[[Path, bool], dict[str, Any]]


def fit_config(out: Path | str, name: str, **fields: Any) -> supervised.FitConfig:
  """A `FitConfig` for run `name` under `out/runs/`, with dotted `fields` set."""
  return config_lib.replace(supervised.FitConfig(out=str(Path(out) / 'runs' / name)), **fields)


def train(configs: Sequence[supervised.FitConfig], show_progress: bool = False) -> list[dict[str, Any]]:
  """Trains (or, when they finished already, reads back) `configs`, those sharing a structure as one vmapped
  program; stops with the reason of the first run that failed."""
  for config in configs:
    supervised.validate(config)
  summaries = supervised.train(configs, TrainOptions(show_progress=show_progress, resume=True, compiled=True))
  failed = [(c.out, s['error']) for c, s in zip(configs, summaries) if s.get('state') == 'failed']
  if failed:
    raise config_lib.TrainingError(f'{failed[0][0]} failed: {failed[0][1]}')
  return summaries


def evals(config: supervised.FitConfig) -> list[dict[str, Any]]:
  """The `eval` records run `config` wrote, in step order."""
  return [r for r in read_metrics(Path(config.out) / METRICS_FILE) if r.get('kind') == 'eval']


def series(config: supervised.FitConfig, field: str) -> tuple[list[int], list[float]]:
  """(steps, values) of one field of run `config`'s `eval` records."""
  records = evals(config)
  return [r['step'] for r in records], [float(r[field]) for r in records]


def final(config: supervised.FitConfig, field: str) -> float:
  """The last `eval` record's `field` of run `config`."""
  return float(evals(config)[-1][field])


def write_result(out: Path | str, reproduction: Reproduction, numbers: Mapping[str, Any]) -> dict[str, Any]:
  """Writes `out/result.json`: what the reproduction mirrors, its settings, and the numbers it read back."""
  result = {
    'reproduction': reproduction.name,
    'figure': reproduction.figure,
    'claim': reproduction.claim,
    'settings': reproduction.settings,
    'proxy': 'a small-scale CPU proxy of the thesis experiment, not its full-scale setting',
    **numbers,
  }
  atomic_write_text(Path(out) / RESULT_FILE, json.dumps(result, indent=2, sort_keys=True, default=float))
  return result


def finish(
  out: Path | str, reproduction: Reproduction, fig: Any, numbers: dict[str, Any], settings: Any, quick: bool
) -> dict[str, Any]:
  """Saves `fig` (`save`) and writes `out/result.json` (`write_result`) with `numbers`, the settings the runs used
  ('settings_used': `settings`, a dataclass or a mapping) and whether they were the quick ones."""
  save(fig, out)
  numbers['settings_used'] = dataclasses.asdict(settings) if dataclasses.is_dataclass(settings) else dict(settings)
  numbers['quick'] = quick
  return write_result(out, reproduction, numbers)


def save(fig: Any, out: Path | str) -> Path:
  """Writes the reproduction's figure as `out/figure.png` (and PDF, SVG beside it)."""
  return plots.save_figure(fig, Path(out) / FIGURE_FILE)
