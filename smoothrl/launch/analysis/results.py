"""Loading run directories and aggregating their evaluations over seeds.

A run directory holds `config.json`, `metrics.jsonl` and, once the run has ended, `summary.json` (README, "A run
directory"). This module finds runs under any directory tree, groups runs whose configs differ only by seed, and
reports means over seeds with confidence intervals of the final and the best evaluation return, as raw returns or
normalised per game:

* MinAtar Normalised Score (thesis Appendix E.2.4, Table E.2):
  MNS = 100 * (score - score_random) / (score_max - score_random);
* Human Normalised Score for Atari, from `smoothrl.envs.atari_scores` when that module is installed.

Confidence intervals are two-sided Student-t intervals over seeds: mean ± t_{(1+c)/2, n-1} * s / sqrt(n), with s
the sample standard deviation (ddof=1); a single seed has an undefined (NaN) half-width.

Aggregates use the evaluation steps common to every seed of a group: the final score of a seed is its return at
the last common step and its best score the maximum over the common steps. Runs of one config that all finished
share their steps, so these are the last and the best evaluation of each run.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import math
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from scipy import stats

from smoothrl.launch import kinds
from smoothrl.launch.run import config as config_lib
from smoothrl.launch.run.files import CONFIG_FILE, METRICS_FILE, RUN_FILE, STATUS_FILE, SUMMARY_FILE, read_metrics
from smoothrl.optimizers import METHODS

# Fields that do not change what a run learns: runs that differ only in these are seeds of one configuration.
NON_GROUPING = ('seed', 'out', 'checkpoint_period')
METRICS = ('final', 'best')

# MinAtar game: (max, random) scores of thesis Table E.2. Freeway has none: the thesis left it out.
MINATAR_REFERENCE: dict[str, tuple[float, float]] = {
  'asterix': (78.90, 0.49),
  'breakout': (122.88, 0.52),
  'seaquest': (93.91, 0.09),
  'space_invaders': (360.92, 2.86),
}

UNIT_NAMES = {
  'MNS': 'MinAtar Normalised Score',
  'HNS': 'Human Normalised Score',
  'return': 'evaluation return',
  'accuracy': 'test accuracy',
}

# Fields listed first in labels.
_LABEL_ORDER = ('agent', 'method.method', 'method.layers', 'method.lipschitz', 'dqn.learning_rate', 'dqn.adam_eps')


class IncompleteRunWarning(UserWarning):
  """A run directory that has not completed (still running, stopped or failed) or has no evaluation."""


# ----------------------------------------------------------------------------------------------------------------
# Runs.


@dataclasses.dataclass(frozen=True, eq=False)
class Run:
  """One run directory, loaded.

  Attributes:
    path: the run directory.
    config_dict: the run's config as a dict (with defaults filled in when it parses as a `TrainConfig`).
    config: the run's config (a `TrainConfig` for RL), or None when `config.json` does not parse as one (an older
      version's, say).
    evals: the `eval` records, one per step (the last one written for a step wins), sorted by step.
    train: the `train` records, in file order.
    summary: `summary.json`, or None when the run has not ended.
    status: `status.json` ({'state': 'running' | 'done' | 'failed', ...}), or None when the run wrote none.
    kind: the run kind (`run.json`; 'rl' for directories written before run kinds), whose `score` field of the
      `eval` records is the run's score.
  """

  path: Path
  config_dict: dict[str, Any]
  config: Any
  evals: list[dict[str, Any]]
  train: list[dict[str, Any]]
  summary: dict[str, Any] | None
  status: dict[str, Any] | None = None
  kind: str = kinds.DEFAULT

  @property
  def complete(self) -> bool:
    """Whether the run ended and wrote `summary.json` (and, if it keeps a status, is marked done)."""
    return self.summary is not None and (self.status is None or self.status.get('state') == 'done')

  @property
  def state(self) -> str:
    """'done', 'running', 'failed' (from `status.json`), or 'done' / 'incomplete' from `summary.json`."""
    if self.status is not None and 'state' in self.status:
      return str(self.status['state'])
    return 'done' if self.summary is not None else 'incomplete'

  @property
  def env(self) -> str:
    """What the run learns on (its kind's `subject`): the environment, or 'data/<name>' for supervised runs."""
    return kinds.get(self.kind).subject(self.config_dict)

  @property
  def seed(self) -> int:
    return int(self.config_dict.get('seed', 0))

  @property
  def eval_steps(self) -> np.ndarray:
    return np.array([int(r['step']) for r in self.evals], dtype=np.int64)

  @property
  def eval_returns(self) -> np.ndarray:
    score = kinds.get(self.kind).score
    return np.array([_as_float(r.get(score)) for r in self.evals], dtype=np.float64)

  def scores(self, normalise: bool = False) -> np.ndarray:
    """The evaluation returns, normalised for the game when `normalise` and a reference exists."""
    return normalise_scores(self.env, self.eval_returns, normalise)

  def __repr__(self) -> str:
    return f'Run({str(self.path)!r}, env={self.env!r}, seed={self.seed}, evals={len(self.evals)}, {self.state})'


def _as_float(value: Any) -> float:
  try:
    return float(value)  # also reads the 'nan' / 'inf' strings that io.MetricsWriter writes for non-finite values
  except (TypeError, ValueError):
    return math.nan


def load_run(run_dir: str | os.PathLike) -> Run:
  """Loads a run directory: its config, its `eval` and `train` records and `summary.json` if present.

  Raises:
    FileNotFoundError: `config.json` or `metrics.jsonl` is missing.
    ValueError: `config.json` is not a JSON object.
  """
  path = Path(run_dir)
  for name in (CONFIG_FILE, METRICS_FILE):
    if not (path / name).is_file():
      raise FileNotFoundError(f'{path} is not a run directory: it has no {name}')
  raw = json.loads((path / CONFIG_FILE).read_text(encoding='utf-8'))
  if not isinstance(raw, dict):
    raise ValueError(f'{path / CONFIG_FILE}: expected a JSON object, got {type(raw).__name__}')
  run_kind = (_read_json(path / RUN_FILE) or {}).get('kind', kinds.DEFAULT)
  if run_kind not in kinds.KINDS:
    raise ValueError(f'{path / RUN_FILE}: unknown run kind {run_kind!r}; valid: {", ".join(kinds.KINDS)}')
  config_type = kinds.get(run_kind).config_type
  try:
    config = config_type.from_dict(raw)
    config_dict = config.to_dict()
  except (config_lib.ConfigError, TypeError) as e:
    warnings.warn(
      f'{path}: config.json is not a {config_type.__name__} of this version ({e}); using it as written', stacklevel=2
    )
    config, config_dict = None, raw
  evals: dict[int, dict[str, Any]] = {}
  train: list[dict[str, Any]] = []
  for record in read_metrics(path / METRICS_FILE):
    kind = record.get('kind')
    if kind == 'eval' and 'step' in record:
      evals[int(record['step'])] = record  # a resumed run may write a step again: keep the latest
    elif kind == 'train':
      train.append(record)
  return Run(
    path=path,
    config_dict=config_dict,
    config=config,
    evals=[evals[s] for s in sorted(evals)],
    train=train,
    summary=_read_json(path / SUMMARY_FILE),
    status=_read_json(path / STATUS_FILE),
    kind=run_kind,
  )


def _read_json(path: Path) -> dict[str, Any] | None:
  """A JSON object from `path`, or None when the file is missing or not one."""
  try:
    value = json.loads(path.read_text(encoding='utf-8'))
  except (OSError, json.JSONDecodeError):
    return None
  return value if isinstance(value, dict) else None


def _is_run_dir(path: Path) -> bool:
  return (path / CONFIG_FILE).is_file() and (path / METRICS_FILE).is_file()


def find_runs(paths: str | os.PathLike | Iterable[str | os.PathLike], include_incomplete: bool = False) -> list[Run]:
  """Finds and loads every run directory under `paths` (run directories or any trees that contain them).

  A run directory is one holding both `config.json` and `metrics.jsonl`; the search does not look inside one.
  This is `usable_runs(load_runs(paths), include_incomplete)`.

  Args:
    paths: run directories and/or sweep directories.
    include_incomplete: keep runs that have not completed (no `summary.json`, or `status.json` says 'running' or
      'failed'; `Run.complete` is False); otherwise they are skipped with an `IncompleteRunWarning`. Runs without
      any evaluation are always skipped with that warning.

  Returns:
    The runs, sorted by path, each once.

  Raises:
    FileNotFoundError: a path does not exist.
  """
  return usable_runs(load_runs(paths), include_incomplete)


def load_runs(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Run]:
  """Every run directory under `paths`, loaded, sorted by path, each once, whatever its state; directories that
  cannot be loaded (and ones with a config.json but no metrics.jsonl) are skipped with an `IncompleteRunWarning`.

  Raises:
    FileNotFoundError: a path does not exist.
  """
  if isinstance(paths, (str, os.PathLike)):
    paths = [paths]
  found: dict[Path, None] = {}
  for root in map(Path, paths):
    if not root.exists():
      raise FileNotFoundError(f'no such run or sweep directory: {root}')
    if _is_run_dir(root):
      found[root.resolve()] = None
      continue
    for dirpath, dirnames, filenames in os.walk(root):
      here = Path(dirpath)
      if _is_run_dir(here):
        found[here.resolve()] = None
        dirnames.clear()
      else:
        dirnames.sort()
        if CONFIG_FILE in filenames and not dirnames:
          warnings.warn(
            f'skipping {here}: it has a config.json but no metrics.jsonl', IncompleteRunWarning, stacklevel=2
          )
  runs = []
  for path in sorted(found):
    try:
      runs.append(load_run(path))
    except (ValueError, OSError) as e:
      warnings.warn(f'skipping {path}: {e}', IncompleteRunWarning, stacklevel=2)
  return runs


def usable_runs(runs: Sequence[Run], include_incomplete: bool = False) -> list[Run]:
  """The `runs` that scores can be read from: those with an evaluation that completed (or all with an evaluation,
  with `include_incomplete`); each one left out is named in an `IncompleteRunWarning` saying why."""
  usable = []
  for run in runs:
    error = f': {run.status["error"]}' if run.status and run.status.get('error') else ''
    if not run.evals:
      why = f'failed before its first evaluation{error}' if run.state == 'failed' else 'no evaluation yet'
      warnings.warn(f'skipping {run.path}: {why}', IncompleteRunWarning, stacklevel=2)
    elif not run.complete and not include_incomplete:
      warnings.warn(
        f'skipping incomplete run {run.path} ({run.state}{error}; last evaluation at step '
        f'{run.evals[-1]["step"]}); pass include_incomplete=True to use it',
        IncompleteRunWarning,
        stacklevel=2,
      )
    else:
      usable.append(run)
  return usable


def failed_runs(runs: Sequence[Run]) -> list[Run]:
  """The `runs` (`load_runs`) whose `status.json` says they failed (a diverged learning rate, a crash), with or
  without evaluations: what `usable_runs` leaves out for that reason."""
  return [r for r in runs if r.state == 'failed']


# ----------------------------------------------------------------------------------------------------------------
# Normalised scores.


class Normaliser(NamedTuple):
  """How a game's raw returns become a normalised score."""

  unit: str  # 'MNS' or 'HNS'
  fn: Callable[[np.ndarray], np.ndarray]


def minatar_normalised_score(env: str, score: float | np.ndarray) -> float | np.ndarray:
  """The MinAtar Normalised Score, 100 * (score - random) / (max - random), with thesis Table E.2's references.

  Args:
    env: 'minatar/<game>' or '<game>'.
    score: raw evaluation return(s).

  Raises:
    ValueError: the game has no reference scores (Freeway, which the thesis left out, or not a MinAtar game).
  """
  game = env.split('/', 1)[1] if env.startswith('minatar/') else env
  if game not in MINATAR_REFERENCE:
    raise ValueError(
      f'no MinAtar Normalised Score reference for {game!r}: thesis Table E.2 covers '
      f'{", ".join(sorted(MINATAR_REFERENCE))} (Freeway was left out of the thesis experiments)'
    )
  high, low = MINATAR_REFERENCE[game]
  result = 100.0 * (np.asarray(score, dtype=np.float64) - low) / (high - low)
  return float(result) if result.ndim == 0 else result


@functools.cache
def _atari_hns() -> Callable[[str, float], float] | None:
  try:
    module = importlib.import_module('smoothrl.envs.atari_scores')
  except ImportError:
    warnings.warn('smoothrl.envs.atari_scores is not available: Atari results are shown as raw returns', stacklevel=3)
    return None
  return getattr(module, 'human_normalised_score', None)


def normaliser(env: str) -> Normaliser | None:
  """The normaliser of `env`'s scores, or None when it has no reference (raw returns are used then)."""
  family, _, game = env.partition('/')
  if family == 'data':  # supervised runs: test accuracy is already on one scale for every data set
    return Normaliser('accuracy', lambda scores: np.asarray(scores, dtype=np.float64))
  if family == 'minatar':
    if game not in MINATAR_REFERENCE:
      return None
    return Normaliser('MNS', functools.partial(minatar_normalised_score, env))
  if family == 'atari':
    hns = _atari_hns()
    if hns is None:
      return None
    try:
      hns(game, 0.0)
    except (KeyError, ValueError):
      return None

    def fn(scores: np.ndarray) -> np.ndarray:
      scores = np.asarray(scores, dtype=np.float64)
      return np.array([hns(game, float(s)) for s in scores.ravel()], dtype=np.float64).reshape(scores.shape)

    return Normaliser('HNS', fn)
  return None


def normalise_scores(env: str, scores: np.ndarray, normalise: bool = True) -> np.ndarray:
  """`scores` normalised for `env` when `normalise` and a reference exists; otherwise the raw returns."""
  scores = np.asarray(scores, dtype=np.float64)
  norm = normaliser(env) if normalise else None
  return scores if norm is None else np.asarray(norm.fn(scores), dtype=np.float64)


def score_unit(env: str, normalise: bool = True) -> str:
  """'MNS', 'HNS', 'accuracy' (supervised runs, normalised or not) or 'return': what `normalise_scores(env, ...,
  normalise)` reports."""
  norm = normaliser(env) if normalise or env.startswith('data/') else None
  return 'return' if norm is None else norm.unit


def common_unit(envs: Iterable[str], normalise: bool = True) -> str | None:
  """The unit in which scores of all `envs` can be averaged: a shared normalised unit, or the raw return of a
  single game; None when the games cannot be averaged."""
  envs = sorted(set(envs))
  units = {score_unit(env, normalise) for env in envs}
  if len(envs) == 1:
    return units.pop()
  if len(units) == 1 and 'return' not in units:
    return units.pop()
  return None


# ----------------------------------------------------------------------------------------------------------------
# Statistics.


class Interval(NamedTuple):
  """A mean with the half-width of its confidence interval over `n` values (NaN half-width when n < 2)."""

  mean: float
  half_width: float
  n: int

  @property
  def lower(self) -> float:
    return self.mean - self.half_width

  @property
  def upper(self) -> float:
    return self.mean + self.half_width


def confidence_interval(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> Interval:
  """The mean of `values` and the half-width of its two-sided Student-t confidence interval.

  half-width = t.ppf((1 + confidence) / 2, n - 1) * std(values, ddof=1) / sqrt(n).
  """
  values = np.asarray(values, dtype=np.float64).ravel()
  n = values.size
  if n == 0:
    return Interval(math.nan, math.nan, 0)
  mean = float(np.mean(values))
  if n < 2:
    return Interval(mean, math.nan, 1)
  t = stats.t.ppf(0.5 + confidence / 2, n - 1)
  return Interval(mean, float(t * np.std(values, ddof=1) / math.sqrt(n)), n)


class Curve(NamedTuple):
  """A learning curve over seeds: mean and confidence half-width at each step."""

  steps: np.ndarray
  mean: np.ndarray
  half_width: np.ndarray
  n: int


def _curve(steps: np.ndarray, matrix: np.ndarray, confidence: float) -> Curve:
  """Mean and CI over the rows of `matrix` [n, len(steps)]."""
  intervals = [confidence_interval(matrix[:, j], confidence) for j in range(matrix.shape[1])]
  return Curve(
    steps=np.asarray(steps),
    mean=np.array([i.mean for i in intervals]),
    half_width=np.array([i.half_width for i in intervals]),
    n=matrix.shape[0],
  )


def _metric(values: np.ndarray, metric: str, higher_is_better: bool = True) -> np.ndarray:
  """Final (last column) or best (max over columns, or min where lower scores are better) score of each row."""
  if metric == 'final':
    return values[:, -1]
  if metric == 'best':
    return np.max(values, axis=1) if higher_is_better else np.min(values, axis=1)
  raise ValueError(f'unknown metric {metric!r}; valid: {", ".join(METRICS)}')


# ----------------------------------------------------------------------------------------------------------------
# Groups of seeds.


def flatten(config: Mapping[str, Any], prefix: str = '') -> dict[str, Any]:
  """A nested config dict as {'dqn.learning_rate': ..., ...} with lists made tuples (hashable)."""
  flat: dict[str, Any] = {}
  for key, value in config.items():
    if isinstance(value, Mapping):
      flat.update(flatten(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = _hashable(value)
  return flat


def _hashable(value: Any) -> Any:
  if isinstance(value, (list, tuple)):
    return tuple(_hashable(v) for v in value)
  return value


def format_value(value: Any) -> str:
  """A compact rendering of a config value: 0.001, 1e-4, 2.5e-4 (below 1e-3 in scientific notation), -2,-3."""
  if isinstance(value, bool) or value is None:
    return str(value).lower()
  if isinstance(value, float):
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6):
      mantissa, exponent = f'{value:e}'.split('e')
      mantissa = mantissa.rstrip('0').rstrip('.')
      return f'{mantissa}e{int(exponent)}'
    return f'{value:g}'
  if isinstance(value, tuple):
    return ','.join(format_value(v) for v in value)
  return str(value)


def _sort_value(key: str, value: Any) -> tuple:
  if key == 'method.method' and value in METHODS:  # the baseline first, then thesis Section 7.3's order
    return (0, METHODS.index(value))
  if isinstance(value, (int, float)) and not isinstance(value, bool):
    return (1, value)
  if isinstance(value, tuple):
    return (2, tuple(_sort_value(key, v) for v in value))
  return (3, str(value))


def _ordered_keys(keys: Iterable[str]) -> list[str]:
  keys = set(keys)
  first = [k for k in _LABEL_ORDER if k in keys]
  return first + sorted(keys - set(first))


def _varying(params: Sequence[Mapping[str, Any]], exclude: Iterable[str]) -> list[str]:
  """The fields, but those in `exclude`, whose values differ among `params`, in label order."""
  keys = set().union(*(p.keys() for p in params)) - set(exclude) if params else set()
  return _ordered_keys(k for k in keys if len({p.get(k) for p in params}) > 1)


def _short_names(varying: Sequence[str]) -> Callable[[str], str]:
  """How `varying` fields are named in labels: `FIELD_LABELS`, else the last part of the name when unambiguous."""
  leaves = [k.rsplit('.', 1)[-1] for k in varying]

  def short(key: str) -> str:
    if key in config_lib.FIELD_LABELS:
      return config_lib.FIELD_LABELS[key]
    leaf = key.rsplit('.', 1)[-1]
    return leaf if leaves.count(leaf) == 1 and leaf not in config_lib.FIELD_LABELS.values() else key

  return short


def describe(
  params: Sequence[Mapping[str, Any]], exclude: Iterable[str] = ('env',), fallback: bool = True
) -> list[str]:
  """For each flat config in `params`, a label naming the fields whose values differ among `params`.

  E.g. 'method=sn layers=-2' or 'lr=0.001 eps=1e-4'. Fields in `exclude` are left out. When nothing differs the
  label names the method (e.g. 'method=none'), or is '' without `fallback`.
  """
  varying = _varying(params, exclude)
  short = _short_names(varying)
  labels = []
  for p in params:
    if varying:
      labels.append(' '.join(f'{short(k)}={format_value(p.get(k))}' for k in varying))
    elif not fallback:
      labels.append('')
    else:
      method = p.get('method.method', 'none')
      layers = p.get('method.layers')
      labels.append(f'method={method}' + (f' layers={format_value(layers)}' if method != 'none' and layers else ''))
  return labels


def method_name(method: str, layers: Any = None) -> str:
  """A method as the thesis names it (`METHOD_NAMES`), with its layers in brackets when given: 'SN[-2]', 'Adam'."""
  name = config_lib.METHOD_NAMES.get(method, str(method))
  return f'{name}[{format_value(layers)}]' if layers and method != 'none' else name


def display_labels(params: Sequence[Mapping[str, Any]], exclude: Iterable[str] = ('env',)) -> list[str]:
  """Labels for figures: `describe`'s, with the method named as the thesis names it.

  Where the method or its layers differ among `params`, or nothing does, a label starts with `method_name`'s
  ('SN[-2]', 'SN[-2,-3]', 'Adam': the baseline has no layers); the other differing fields follow as short labels
  ('SN[-2] lr=0.001'). When these labels would not tell two configs apart (they differ only in the layers of the
  baseline, say), `describe`'s are returned.
  """
  varying = _varying(params, exclude)
  short = _short_names(varying)
  method_fields = ('method.method', 'method.layers')
  labels = []
  for p in params:
    parts = []
    if not varying or any(k in varying for k in method_fields):
      parts.append(method_name(p.get('method.method', 'none'), p.get('method.layers')))
    parts += [f'{short(k)}={format_value(p.get(k))}' for k in varying if k not in method_fields]
    labels.append(' '.join(parts))
  return labels if len(set(labels)) == len(labels) else describe(params, exclude)


@dataclasses.dataclass(eq=False)
class Group:
  """Runs whose configs differ only in the `NON_GROUPING` fields (the seeds of one configuration).

  Attributes:
    params: the shared flat config (without the `NON_GROUPING` fields).
    runs: the runs, sorted by seed, one per seed.
    label: what distinguishes this group from the others it was grouped with (the game aside).
  """

  params: dict[str, Any]
  runs: list[Run]
  label: str = ''

  @property
  def env(self) -> str:
    """What the group's runs learn on (`Run.env`)."""
    return self.runs[0].env if self.runs else str(self.params.get('env', '?'))

  @property
  def seeds(self) -> list[int]:
    return [r.seed for r in self.runs]

  @property
  def complete(self) -> bool:
    return all(r.complete for r in self.runs)

  def unit(self, normalise: bool = True) -> str:
    return score_unit(self.env, normalise)

  @property
  def higher_is_better(self) -> bool:
    """Whether the runs' kind scores larger as better (`RunKind.higher_is_better`)."""
    return kinds.get(self.runs[0].kind).higher_is_better if self.runs else True

  def common_steps(self) -> np.ndarray:
    """The evaluation steps every seed has."""
    steps = functools.reduce(np.intersect1d, [r.eval_steps for r in self.runs])
    return np.asarray(steps, dtype=np.int64)

  def matrix(self, normalise: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(steps, scores [seeds, steps]) on the common evaluation steps."""
    steps = self.common_steps()
    rows = []
    for run in self.runs:
      index = np.searchsorted(run.eval_steps, steps)
      rows.append(run.scores(normalise)[index])
    return steps, np.array(rows, dtype=np.float64).reshape(len(self.runs), len(steps))

  def seed_scores(self, metric: str = 'final', normalise: bool = True) -> dict[int, float]:
    """Each seed's final or best score on the common steps."""
    steps, values = self.matrix(normalise)
    if steps.size == 0:
      raise ValueError(f'the seeds of {self.label or self.env} share no evaluation step')
    return dict(zip(self.seeds, map(float, _metric(values, metric, self.higher_is_better))))

  def score(self, metric: str = 'final', normalise: bool = True, confidence: float = 0.95) -> Interval:
    """Mean over seeds and CI of the final or best score."""
    return confidence_interval(list(self.seed_scores(metric, normalise).values()), confidence)

  def curve(self, normalise: bool = True, confidence: float = 0.95) -> Curve:
    """The learning curve: mean and CI over seeds at each common evaluation step."""
    steps, values = self.matrix(normalise)
    return _curve(steps, values, confidence)

  def __repr__(self) -> str:
    return f'Group({self.env!r}, {self.label!r}, seeds={self.seeds})'


def group_runs(runs: Sequence[Run], ignore: Iterable[str] = NON_GROUPING) -> list[Group]:
  """Groups runs whose configs are equal but for the fields in `ignore` (dotted names), and labels the groups.

  Labels name the fields that differ between groups other than the game, so the same setting has the same label
  in every game. A seed that appears twice in a group (a run repeated in another directory) is kept once: the run
  with the most evaluations, with a warning. Groups are sorted by game, then by the differing fields' values.
  """
  ignore = set(ignore)
  buckets: dict[tuple, list[Run]] = {}
  for run in runs:
    params = {k: v for k, v in flatten(run.config_dict).items() if k not in ignore}
    buckets.setdefault(tuple(sorted(params.items(), key=lambda kv: kv[0])), []).append(run)
  groups = []
  for key, members in buckets.items():
    by_seed: dict[int, Run] = {}
    for run in members:
      other = by_seed.get(run.seed)
      if other is not None:
        keep = max((other, run), key=lambda r: (r.complete, len(r.evals)))
        warnings.warn(
          f'seed {run.seed} appears twice in one configuration ({other.path}, {run.path}); using {keep.path}',
          stacklevel=2,
        )
        run = keep
      by_seed[run.seed] = run
    groups.append(Group(params=dict(key), runs=[by_seed[s] for s in sorted(by_seed)]))
  for group, label in zip(groups, describe([g.params for g in groups])):
    group.label = label
  varying = (
    _ordered_keys(
      k for k in set().union(*(g.params for g in groups)) if len({g.params.get(k) for g in groups}) > 1 and k != 'env'
    )
    if groups
    else []
  )
  groups.sort(key=lambda g: (g.env, tuple(_sort_value(k, g.params.get(k)) for k in varying)))
  return groups


def by_label(groups: Sequence[Group]) -> dict[str, dict[str, Group]]:
  """{label: {env: group}}, labels in the groups' order."""
  table: dict[str, dict[str, Group]] = {}
  for group in groups:
    table.setdefault(group.label, {})[group.env] = group
  return table


def rank_labels(groups: Sequence[Group], metric: str = 'final', normalise: bool = True) -> list[str]:
  """The groups' labels, best first: by the mean over games of each label's rank (0 best) by mean score (the
  lowest first where the kind scores lower as better)."""
  ranks: dict[str, list[int]] = {}
  for env in sorted({g.env for g in groups}):
    members = [g for g in groups if g.env == env]
    sign = 1.0 if members[0].higher_is_better else -1.0
    ordered = sorted(members, key=lambda g: -_nan_low(sign * g.score(metric, normalise).mean))
    for rank, group in enumerate(ordered):
      ranks.setdefault(group.label, []).append(rank)
  return sorted(ranks, key=lambda label: float(np.mean(ranks[label])))


def _nan_low(value: float) -> float:
  return -math.inf if math.isnan(value) else value


def best_per_method(groups: Sequence[Group], metric: str = 'final', normalise: bool = True) -> list[Group]:
  """For each method (the values of the `method.*` fields), the groups of its best setting of the other fields.

  The best setting is the first of `rank_labels` among the method's groups. Labels name the method and, where a
  method had several settings, the chosen one: 'method=sn (best of 6: lr=0.001 eps=1e-4)'. The choice is made on
  the seeds that are then reported, so the chosen settings' scores are biased upwards: `best_settings` (what
  `plots.method_bars` draws) chooses on other seeds than it reports.
  """
  parts: dict[tuple, list[Group]] = {}
  for g in groups:
    parts.setdefault(tuple(sorted((k, v) for k, v in g.params.items() if k.startswith('method.'))), []).append(g)
  method_labels = describe([dict(key) for key in parts])
  chosen: list[tuple[str, int, Group]] = []
  for members, method_label in zip(parts.values(), method_labels):
    best = rank_labels(members, metric, normalise)[0]
    settings = len({g.label for g in members})
    chosen += [(method_label, settings, g) for g in members if g.label == best]
  method_fields = {k for g in groups for k in g.params if k.startswith('method.')}
  settings_of = dict(
    zip(map(id, groups), describe([g.params for g in groups], exclude=('env', *method_fields), fallback=False))
  )
  result = []
  for method_label, settings, g in chosen:
    other = settings_of[id(g)]
    label = method_label + (f' (best of {settings}: {other})' if settings > 1 and other else '')
    result.append(Group(params=g.params, runs=g.runs, label=label))
  return result


class BestSettings(NamedTuple):
  """Each method's best setting (`best_settings`).

  Attributes:
    groups: the chosen settings' groups (one per game), holding the seeds to report, labelled for figures:
      'SN[-2] (best of 6: lr=0.01 eps=0.001)'.
    held_out: whether the settings were chosen on other seeds than those reported.
    note: how the settings were chosen, for a figure ('' when no method had a choice).
  """

  groups: list[Group]
  held_out: bool
  note: str


def _seed_half(group: Group, half: int) -> Group:
  """`group` with the seeds at even (`half` 0) or odd (1) positions of its sorted seeds."""
  keep = set(group.seeds[half::2])
  return Group(params=group.params, runs=[r for r in group.runs if r.seed in keep], label=group.label)


def _seeds(seeds: Sequence[int]) -> str:
  return f'seed{"s" * (len(seeds) != 1)} {", ".join(map(str, seeds))}'


def best_settings(groups: Sequence[Group], metric: str = 'final', normalise: bool = True) -> BestSettings:
  """For each method (the values of the `method.*` fields), its best setting of the other fields, chosen on seeds
  other than those reported where there are enough.

  When a method was run with several settings (a learning-rate sweep, say) and every group has at least 2 seeds,
  the best setting of each method is the first of `rank_labels` on the seeds at even positions of each group's
  sorted seeds (0, 2, ... of seeds 0-9), and every method is reported on the seeds at odd positions, so that the
  reported scores are not those the choice was made on. With a group of a single seed the choice is made on the
  seeds reported, which the note says (the chosen scores are then biased upwards). Methods with one setting each
  need no choice: all seeds are reported.
  """
  parts: dict[tuple, list[Group]] = {}
  for g in groups:
    parts.setdefault(tuple(sorted((k, v) for k, v in g.params.items() if k.startswith('method.'))), []).append(g)
  choice = any(len({g.label for g in members}) > 1 for members in parts.values())
  held_out = choice and all(len(g.runs) >= 2 for g in groups)
  chosen_on = [_seed_half(g, 0) for g in groups] if held_out else list(groups)
  shown = [_seed_half(g, 1) for g in groups] if held_out else list(groups)
  method_fields = {k for g in groups for k in g.params if k.startswith('method.')}
  settings_of = describe([g.params for g in groups], exclude=('env', *method_fields), fallback=False)
  result = []
  for (_, members), name in zip(parts.items(), display_labels([dict(key) for key in parts])):
    ids = {id(g) for g in members}
    best = rank_labels([c for c, g in zip(chosen_on, groups) if id(g) in ids], metric, normalise)[0]
    settings = len({g.label for g in members})
    for g, reported, other in zip(groups, shown, settings_of):
      if id(g) in ids and g.label == best:
        label = name + (f' (best of {settings}: {other})' if settings > 1 and other else '')
        result.append(Group(params=g.params, runs=reported.runs, label=label))
  if held_out:
    seed_sets = {(tuple(c.seeds), tuple(s.seeds)) for c, s in zip(chosen_on, shown)}
    if len(seed_sets) == 1:
      selecting, reported = seed_sets.pop()
      note = f'best setting of each method chosen on {_seeds(selecting)}; shown on {_seeds(reported)}'
    else:
      note = 'best setting of each method chosen on half of the seeds; shown on the other half'
  else:
    note = 'best setting chosen on the seeds shown (biased upwards)' if choice else ''
  return BestSettings(result, held_out, note)


def game_mean(
  per_env: Mapping[str, Group], metric: str = 'final', normalise: bool = True, confidence: float = 0.95
) -> Interval:
  """The score of one setting averaged over games (thesis Figures 7.2b, 7.5: mean MNS over the MinAtar games).

  Each seed present in every game gets the mean over games of its scores; the interval is over those seeds.
  With no seed in every game the mean is that of the per-game means and the half-width is NaN.

  Raises:
    ValueError: the games have no common normalised unit (raw returns of different games are not averaged).
  """
  _check_averageable(per_env, normalise)
  scores = {env: g.seed_scores(metric, normalise) for env, g in per_env.items()}
  seeds = sorted(set.intersection(*(set(s) for s in scores.values())))
  if not seeds:
    return Interval(float(np.mean([np.mean(list(s.values())) for s in scores.values()])), math.nan, 0)
  return confidence_interval([np.mean([s[seed] for s in scores.values()]) for seed in seeds], confidence)


def game_mean_curve(per_env: Mapping[str, Group], normalise: bool = True, confidence: float = 0.95) -> Curve:
  """The learning curve of one setting averaged over games, on the steps common to all, CI over shared seeds."""
  _check_averageable(per_env, normalise)
  tables = {env: g.matrix(normalise) for env, g in per_env.items()}
  steps = functools.reduce(np.intersect1d, [s for s, _ in tables.values()])
  seeds = sorted(set.intersection(*(set(g.seeds) for g in per_env.values())))
  rows = []
  for seed in seeds:
    per_game = []
    for env, (env_steps, values) in tables.items():
      row = values[per_env[env].seeds.index(seed)]
      per_game.append(row[np.searchsorted(env_steps, steps)])
    rows.append(np.mean(per_game, axis=0))
  if not rows:
    means = [values[:, np.searchsorted(s, steps)].mean(axis=0) for s, values in tables.values()]
    return Curve(steps, np.mean(means, axis=0), np.full(len(steps), math.nan), 0)
  return _curve(steps, np.array(rows).reshape(len(rows), len(steps)), confidence)


def _check_averageable(per_env: Mapping[str, Group], normalise: bool) -> None:
  if common_unit(per_env, normalise) is None:
    units = {env: score_unit(env, normalise) for env in per_env}
    raise ValueError(f'cannot average scores over games without a common normalised score: {units}')


# ----------------------------------------------------------------------------------------------------------------
# Tables and heatmaps.


def summary_table(
  runs: Sequence[Run], normalise: bool = True, confidence: float = 0.95, failed: Sequence[Run] = ()
) -> str:
  """A plain-text table: per game and setting, seeds, final and best score as mean ± CI half-width over seeds.

  Rows are sorted by game, then by final mean score, best first. When every game has a common normalised score
  and a setting was run on several games, a 'mean of N games' row per setting follows (`game_mean`). With `failed`
  runs (`failed_runs`), a column counts them per setting, and a setting whose every run failed has a row of its own
  without scores.
  """
  scored = {id(r) for r in runs}
  everything = group_runs([*runs, *(r for r in failed if id(r) not in scored)])
  groups = [Group(g.params, [r for r in g.runs if id(r) in scored], g.label) for g in everything]
  failures = [sum(r.state == 'failed' for r in g.runs) for g in everything]
  if not everything:
    return '(no runs)'

  def cell(interval: Interval) -> str:
    if math.isnan(interval.mean):
      return '—'  # a setting whose every run failed
    half = '—' if math.isnan(interval.half_width) else f'{interval.half_width:.2f}'
    return f'{interval.mean:.2f} ± {half}'

  nothing = Interval(math.nan, math.nan, 0)
  counted = any(failures)
  rows = []
  for env in sorted({g.env for g in everything}):
    env_rows = []
    for g, failures_here in zip(groups, failures):
      if g.env != env:
        continue
      final, best = (g.score(m, normalise, confidence) if g.runs else nothing for m in METRICS)
      mark = '' if g.complete else ' *'
      env_rows.append(
        (
          final.mean,
          [env, g.label + mark, g.unit(normalise), str(len(g.runs)), cell(final), cell(best)]
          + [str(failures_here)] * counted,
        )
      )
    env_rows.sort(key=lambda r: -r[0] if not math.isnan(r[0]) else math.inf)
    rows += [r for _, r in env_rows]
  scored_groups = [g for g in groups if g.runs]
  envs = sorted({g.env for g in scored_groups})
  unit = common_unit(envs, normalise)
  if len(envs) > 1 and unit is not None:
    mean_rows = []
    for label, per_env in by_label(scored_groups).items():
      if set(per_env) == set(envs):
        final, best = (game_mean(per_env, m, normalise, confidence) for m in METRICS)
        failures_here = sum(n for g, n in zip(groups, failures) if g.label == label)
        mean_rows.append(
          (
            final.mean,
            [f'mean of {len(envs)} games', label, unit, str(final.n), cell(final), cell(best)]
            + [str(failures_here)] * counted,
          )
        )
    mean_rows.sort(key=lambda r: -r[0])
    rows += [r for _, r in mean_rows]
  pct = f'{100 * confidence:g}%'
  header = ['env', 'setting', 'unit', 'seeds', f'final (± {pct} CI)', f'best (± {pct} CI)'] + ['failed'] * counted
  widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
  lines = ['  '.join(c.ljust(w) for c, w in zip(header, widths)).rstrip(), '  '.join('-' * w for w in widths)]
  lines += ['  '.join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
  if not all(g.complete for g in scored_groups):
    lines.append('* includes runs that have not completed: scores at their last common evaluation')
  if counted:
    lines.append('failed: runs of the setting that stopped with an error (a non-finite loss, a crash)')
  return '\n'.join(lines)


class HeatmapGrid(NamedTuple):
  """Scores over a two-field sweep: values[i, j] is the score at y = ys[i], x = xs[j] (NaN where not run), and
  failed[i, j] the number of runs there that failed (`failed_runs`)."""

  xs: np.ndarray
  ys: np.ndarray
  values: np.ndarray
  failed: np.ndarray


def heatmap_grids(
  runs: Sequence[Run],
  x: str = 'dqn.learning_rate',
  y: str = 'dqn.adam_eps',
  metric: str = 'final',
  normalise: bool = True,
  failed: Sequence[Run] = (),
  for_figures: bool = False,
) -> dict[str, HeatmapGrid]:
  """Mean score over seeds (and over games) on the grid of `x` × `y` values, one grid per other setting.

  Panels are the settings that differ in fields other than `x`, `y`, the game and the seed (e.g. the method and its
  layers, thesis Figure 7.4), keyed by a label naming those fields ('' when there is one panel): `describe`'s
  'method=sn', or `display_labels`' 'SN[-2]' with `for_figures`. A cell holds the mean over games of the mean over
  seeds of the `metric` score, normalised when `normalise` and the games share a normalised score; it is NaN unless
  every game of the runs has a run there. `failed` runs (`failed_runs`: a learning rate that diverged, say) are
  counted in their cells, and their settings join the axes and panels even where no run finished. All grids share
  `xs` and `ys`.

  Raises:
    KeyError: `x` or `y` is not a config field.
    ValueError: several games without a common normalised score (games with one are then kept, with a warning).
  """
  groups, stopped = group_runs(runs), group_runs(failed)
  if not groups and not stopped:
    raise ValueError('no runs to make a heatmap of')
  for field in (x, y):
    for g in groups + stopped:
      if field not in g.params:
        raise KeyError(f'{field!r} is not a config field; fields: {", ".join(sorted(g.params))}')
  envs = sorted({g.env for g in groups or stopped})
  if common_unit(envs, normalise) is None:
    kept = [e for e in envs if score_unit(e, normalise) != 'return']
    if not kept or common_unit(kept, normalise) is None:
      raise ValueError(
        f'cannot average raw returns over games {envs}: give runs of one game or of games with a normalised score'
      )
    warnings.warn(f'averaging over {kept} only: {sorted(set(envs) - set(kept))} have no normalised score', stacklevel=2)
    envs = kept
    groups = [g for g in groups if g.env in envs]
    stopped = [g for g in stopped if g.env in envs]
  everything = groups + stopped
  xs = sorted({g.params[x] for g in everything}, key=lambda v: _sort_value(x, v))
  ys = sorted({g.params[y] for g in everything}, key=lambda v: _sort_value(y, v))
  panel_of = {id(g): tuple(sorted((k, v) for k, v in g.params.items() if k not in (x, y, 'env'))) for g in everything}
  panels = list(dict.fromkeys(panel_of[id(g)] for g in everything))
  label_fn = display_labels if for_figures else describe
  labels = label_fn([dict(p) for p in panels]) if len(panels) > 1 else ['']
  grids = {}
  for panel, label in zip(panels, labels):
    cells: dict[tuple[Any, Any], dict[str, float]] = {}
    for g in groups:
      if panel_of[id(g)] == panel:
        cells.setdefault((g.params[x], g.params[y]), {})[g.env] = g.score(metric, normalise).mean
    values = np.full((len(ys), len(xs)), np.nan)
    for (xv, yv), per_env in cells.items():
      if set(per_env) == set(envs):
        values[ys.index(yv), xs.index(xv)] = np.mean([per_env[e] for e in envs])
    failures = np.zeros((len(ys), len(xs)), np.int64)
    for g in stopped:
      if panel_of[id(g)] == panel:
        failures[ys.index(g.params[y]), xs.index(g.params[x])] += len(g.runs)
    grids[label] = HeatmapGrid(np.array(xs), np.array(ys), values, failures)
  return grids


def heatmap_grid(
  runs: Sequence[Run],
  x: str = 'dqn.learning_rate',
  y: str = 'dqn.adam_eps',
  metric: str = 'final',
  normalise: bool = True,
  failed: Sequence[Run] = (),
) -> HeatmapGrid:
  """`heatmap_grids` for runs that make a single panel (one method, say).

  Raises:
    ValueError: the runs differ in fields other than `x`, `y`, the game and the seed.
  """
  grids = heatmap_grids(runs, x, y, metric, normalise, failed)
  if len(grids) != 1:
    raise ValueError(f'the runs make {len(grids)} panels ({", ".join(grids)}); select one or use heatmap_grids')
  return next(iter(grids.values()))
