"""Sweeps: grids over the fields of a run kind's config (`TrainConfig` for RL), checked in full before any run
starts.

A sweep spec is a YAML file (DESIGN principle 3: a sweep is a grid over the fields of one config):

    name: fig7_4_minatar_sensitivity
    kind: rl                       # the run kind (`launch.kinds`); rl by default
    out: runs/fig7_4               # the sweep directory; each run writes <out>/runs/<run name>
    preset: dqn-minatar            # optional starting point, one of the kind's presets
    base:                          # fixed overrides: dotted names or nested mappings
      steps: 5000000
      dqn: {warmup_steps: 5000}
    grid:                          # the cross product of these lists (first key varies slowest)
      env: [minatar/asterix, minatar/breakout]
      dqn.learning_rate: [1.0e-5, 1e-4]
      method.layers: [[-2], [-2, -3]]   # a list-valued field takes a list of lists
      seed: [0, 1, 2]
    zip:                           # optional: lists of one length, taken row by row, crossed with the grid
      network.conv_layers: [1, 2, 3]
      network.conv_channels: [24, 24, 24]
    exclude:                       # optional: partial assignments removed from the product
      - {method.method: none, method.layers: [-2, -3]}

Numbers such as `1e-5` are read as numbers (YAML 1.2), not as strings. `parse_spec` checks everything before
returning (DESIGN principle 5): unknown keys and fields at any depth (with the closest valid name), types, empty
lists, zip lengths, repeated values, `config.validate` on every expanded run (each distinct problem once, with how
many runs it affects and one of them), runs that repeat another run, and exclusions that match nothing. Every
problem found goes into one `SweepError`.

`expand` gives the runs in a fixed order, each with a readable, filesystem-safe name built from its varied values
(`env=breakout,lr=0.00025,seed=0`) and its config's `out` set to `<sweep out>/runs/<name>`.
"""

from __future__ import annotations

import collections
import dataclasses
import difflib
import functools
import hashlib
import itertools
import json
import math
import os
import posixpath
import re
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from smoothrl.launch import kinds
from smoothrl.launch.run import config as config_lib
from smoothrl.launch.run.kind import RunKind

TOP_LEVEL_KEYS = ('name', 'kind', 'out', 'preset', 'base', 'grid', 'zip', 'exclude')

_MAX_NAME = 120
MAX_RUNS = 1_000_000  # runs one sweep may hold
_LISTED = 5  # bad values of one list named each; the others are counted
_SPEC_NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._-]*$')
_UNSAFE = re.compile(r'[^A-Za-z0-9._+-]+')


class SweepError(config_lib.ConfigError):
  """A sweep that cannot run; `problems` holds every problem found, the message lists them."""

  def __init__(self, source: str, problems: Sequence[str]):
    self.source = source
    self.problems = tuple(problems)
    count = f'{len(self.problems)} problem' + ('s' if len(self.problems) != 1 else '')
    super().__init__(f'{source}: {count}:\n  - ' + '\n  - '.join(self.problems))


Assignment = tuple[tuple[str, Any], ...]


@dataclasses.dataclass(frozen=True)
class SweepSpec:
  """A checked sweep: a base config and the fields it varies.

  Attributes:
    name: the sweep's name (letters, digits, '.', '_', '-').
    out: the sweep directory; run directories are `<out>/runs/<run name>`.
    kind: the run kind (`launch.kinds`), whose config the sweep varies: 'rl' by default.
    preset: the preset the base starts from, or None for the kind's default config.
    base: fixed overrides applied after the preset, as (dotted field, value) pairs.
    grid: (dotted field, values) pairs whose cross product is taken, first field slowest.
    zipped: the spec's `zip`: (dotted field, values) pairs of one length, taken row by row as the product's
      last (fastest) factor.
    exclude: partial assignments, each a tuple of (dotted field, value); a run matching every pair of one is
      dropped.
    source: where the spec came from, for messages (not part of equality).
  """

  name: str
  out: str
  kind: str = kinds.DEFAULT
  preset: str | None = None
  base: Assignment = ()
  grid: tuple[tuple[str, tuple[Any, ...]], ...] = ()
  zipped: tuple[tuple[str, tuple[Any, ...]], ...] = ()
  exclude: tuple[Assignment, ...] = ()
  source: str = dataclasses.field(default='<spec>', compare=False)

  @property
  def varied(self) -> tuple[str, ...]:
    """The fields the sweep varies: grid fields, then zip fields."""
    return tuple(k for k, _ in self.grid) + tuple(k for k, _ in self.zipped)

  def base_config(self) -> Any:
    """The config every run starts from: the preset (or the kind's defaults) with `base` applied."""
    kind = kinds.get(self.kind)
    start = config_lib.replace(kind.config_type(), **kind.presets[self.preset]) if self.preset else kind.config_type()
    return config_lib.replace(start, **dict(self.base))

  def to_dict(self) -> dict[str, Any]:
    """A plain mapping (YAML/JSON-ready) that `parse_spec` turns back into this spec."""
    data: dict[str, Any] = {'name': self.name, 'out': self.out}
    if self.kind != kinds.DEFAULT:
      data['kind'] = self.kind
    if self.preset:
      data['preset'] = self.preset
    if self.base:
      data['base'] = {k: _plain(v) for k, v in self.base}
    if self.grid:
      data['grid'] = {k: [_plain(v) for v in values] for k, values in self.grid}
    if self.zipped:
      data['zip'] = {k: [_plain(v) for v in values] for k, values in self.zipped}
    if self.exclude:
      data['exclude'] = [{k: _plain(v) for k, v in entry} for entry in self.exclude]
    return data


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """One run of a sweep.

  Attributes:
    index: position in the sweep's order.
    name: the run directory's name, readable and filesystem-safe, from the varied values.
    run_id: 10 hex digits hashed from the varied values; stable across edits of the base.
    assignment: the varied fields and this run's values, in spec order.
    config: the full config (of the sweep's kind), with `out` = `<sweep out>/runs/<name>`.
  """

  index: int
  name: str
  run_id: str
  assignment: Assignment
  config: Any

  @property
  def out(self) -> str:
    return self.config.out


# ---------------------------------------------------------------------------------------------------------------
# Fields and values.


@functools.cache
def fields(config_type: type) -> dict[str, Any]:
  """Every settable field of a kind's config type as a dotted name, with its type hint."""
  hints: dict[str, Any] = {}
  top = typing.get_type_hints(config_type)
  for field in dataclasses.fields(config_type):
    hint = top[field.name]
    if dataclasses.is_dataclass(hint):
      nested = typing.get_type_hints(hint)
      for sub in dataclasses.fields(hint):
        hints[f'{field.name}.{sub.name}'] = nested[sub.name]
    else:
      hints[field.name] = hint
  return hints


def _sections(known: Mapping[str, Any]) -> tuple[str, ...]:
  return tuple(sorted({name.split('.')[0] for name in known if '.' in name}))


def _describe(hint: Any) -> str:
  if typing.get_origin(hint) is typing.Literal:
    return 'one of ' + ', '.join(map(str, typing.get_args(hint)))
  if typing.get_origin(hint) is tuple:
    return 'a list of integers such as [-2, -3]'
  return {bool: 'true or false', int: 'an integer', float: 'a number', str: 'a string'}.get(hint, str(hint))


def _coerce(value: Any, hint: Any) -> tuple[Any, str | None]:
  """Returns (value in the field's type, None) or (value, what was wrong)."""
  origin = typing.get_origin(hint)
  if origin is typing.Literal:
    choices = typing.get_args(hint)
    if value in choices and isinstance(value, str):
      return value, None
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
    hint_text = f"; did you mean '{close[0]}'?" if close else ''
    return value, f'{value!r} is not {_describe(hint)}{hint_text}'
  if origin is tuple:
    if isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
      return tuple(value), None
    return value, f'expected {_describe(hint)}, got {value!r}'
  if origin in (typing.Union, types.UnionType):  # e.g. int | tuple[int, ...]: the first member that fits
    problem = None
    for member in typing.get_args(hint):
      coerced, problem = _coerce(value, member)
      if problem is None:
        return coerced, None
    return value, problem
  if hint is bool:
    ok = isinstance(value, bool)
  elif hint is int:
    if isinstance(value, float) and value.is_integer():
      value = int(value)
    ok = isinstance(value, int) and not isinstance(value, bool)
  elif hint is float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    try:
      value = float(value) if ok else value
    except OverflowError:  # an integer beyond any float
      ok = False
  elif hint is str:
    ok = isinstance(value, str)
  else:
    ok = True
  return value, None if ok else f'expected {_describe(hint)}, got {value!r}'


def _suggest(name: str, known: Mapping[str, Any]) -> str:
  """' (did you mean ...?)' with the closest valid field name, or ''."""
  leaf = name.rsplit('.', 1)[-1]
  same_leaf = [f for f in known if f.rsplit('.', 1)[-1] == leaf]
  if len(same_leaf) == 1:
    return f"; did you mean '{same_leaf[0]}'?"
  close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
  if not close:
    leaves = {f.rsplit('.', 1)[-1]: f for f in known}
    close = [leaves[c] for c in difflib.get_close_matches(leaf, list(leaves), n=1, cutoff=0.6)]
  return f"; did you mean '{close[0]}'?" if close else ''


def _plain(value: Any) -> Any:
  return list(value) if isinstance(value, tuple) else value


def _get(config: Any, key: str) -> Any:
  for part in key.split('.'):
    config = getattr(config, part)
  return config


# ---------------------------------------------------------------------------------------------------------------
# Reading specs.


class _Loader(yaml.SafeLoader):
  """Safe YAML that reads `1e-5` as a number (YAML 1.2) and records keys given twice in one mapping."""

  def __init__(self, stream: str):
    super().__init__(stream)
    self.repeated: list[str] = []

  def construct_mapping(self, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
      if isinstance(key_node, yaml.ScalarNode):
        if key_node.value in seen:
          self.repeated.append(
            f'line {key_node.start_mark.line + 1}: key {key_node.value!r} is given twice in one mapping'
          )
        seen.add(key_node.value)
    return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
  'tag:yaml.org,2002:float', re.compile(r'^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$'), list('-+0123456789')
)


def _yaml_problem(error: yaml.YAMLError) -> str:
  """A YAML error on one line: where, what, and while doing what."""
  if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
    mark = error.problem_mark
    context = f' ({error.context})' if error.context else ''
    return f'not valid YAML: line {mark.line + 1}, column {mark.column + 1}: {error.problem}{context}'
  return 'not valid YAML: ' + ' '.join(str(error).split())


def _load(text: str) -> tuple[Any, list[str]]:
  """The YAML document in `text` and the keys it repeats; raises `_YamlProblem` naming what is wrong."""
  try:
    loader = _Loader(text)
    try:
      return loader.get_single_data(), loader.repeated
    finally:
      loader.dispose()
  except yaml.YAMLError as e:
    raise _YamlProblem(_yaml_problem(e)) from None
  except RecursionError:
    raise _YamlProblem('not valid YAML: nested too deeply') from None


class _YamlProblem(Exception):
  """Text that is no YAML document; the message says why, on one line."""


def read_value(text: str) -> Any:
  """A YAML value read as a spec reads it ('1e-5' is a number, '[-2, -3]' a list), e.g. for FIELD=VALUE flags;
  `ConfigError` for text that is no YAML value."""
  try:
    return _load(text)[0]
  except _YamlProblem as e:
    raise config_lib.ConfigError(f'{text!r}: {e}') from None


def load_spec(path: str | os.PathLike[str], out: str | None = None) -> SweepSpec:
  """Reads and checks the YAML sweep spec at `path`, with `out` (when given) in place of the spec's own; raises
  `SweepError` listing every problem, also for a file that cannot be read or is no YAML text."""
  source = os.fspath(path)
  try:
    with open(source, encoding='utf-8') as f:
      text = f.read()
  except FileNotFoundError:
    raise SweepError(source, ['no such file']) from None
  except IsADirectoryError:
    raise SweepError(source, ['is a directory, not a spec file']) from None
  except UnicodeDecodeError as e:
    raise SweepError(
      source, [f'not a text file (UTF-8): byte {e.start} is {e.object[e.start : e.start + 1]!r}']
    ) from None
  except OSError as e:
    raise SweepError(source, [f'cannot be read: {e.strerror or e}']) from None
  try:
    data, repeated = _load(text)
  except _YamlProblem as e:
    raise SweepError(source, [str(e)]) from None
  if data is None:
    raise SweepError(source, [f'the file is empty; a spec is a mapping with keys {", ".join(TOP_LEVEL_KEYS)}'])
  if out is not None and isinstance(data, Mapping):
    data = {**data, 'out': out}
  return _parse(data, source, repeated)


def parse_spec(mapping: Mapping[str, Any], source: str = '<spec>') -> SweepSpec:
  """Checks a spec given as a mapping (the YAML's contents) and returns it; raises `SweepError` otherwise."""
  return _parse(mapping, source, [])


def _flatten(node: Mapping[Any, Any], prefix: str, where: str, problems: list[str], out: dict[str, Any]) -> None:
  """Dotted leaves of a (partly) nested mapping, in order; flags keys reached twice."""
  for key, value in node.items():
    if not isinstance(key, str):
      problems.append(f'{where}: key {key!r} is not a field name')
      continue
    dotted = prefix + key
    if isinstance(value, Mapping):
      _flatten(value, dotted + '.', where, problems, out)
    elif dotted in out:
      problems.append(f'{where}.{dotted}: given twice (nested and dotted)')
    else:
      out[dotted] = value


def _known(key: str, where: str, problems: list[str], known: Mapping[str, Any]) -> bool:
  """Whether `key` is a settable field of `known`; records why not."""
  if key in known and key != 'out':
    return True
  if key == 'out':
    problems.append(f"{where}.out: set per run (<sweep out>/runs/<run name>); use the spec's top-level 'out'")
  elif key in _sections(known):
    names = ', '.join(f.split('.', 1)[1] for f in known if f.startswith(key + '.'))
    problems.append(f'{where}.{key}: a config section, not a field; name one of its fields: {names}')
  else:
    problems.append(f'{where}.{key}: unknown field{_suggest(key, known)}')
  return False


def _section(data: Mapping[str, Any], key: str, problems: list[str], where: str | None = None) -> dict[str, Any]:
  """The flattened mapping under `key`, or {} (recording a problem) when it is not a mapping."""
  if key not in data:
    return {}
  node = data[key]
  if not isinstance(node, Mapping):
    problems.append(f'{where or key}: expected a mapping of fields, got {"nothing" if node is None else repr(node)}')
    return {}
  out: dict[str, Any] = {}
  _flatten(node, '', where or key, problems, out)
  return out


def _values(key: str, values: Any, where: str, problems: list[str], hint: Any) -> tuple[list[Any], list[bool]]:
  """Coerces a list of values for `key` (of type `hint`); returns them with a per-value ok flag."""
  if not isinstance(values, list):
    extra = ''
    if typing.get_origin(hint) is tuple:
      extra = ' (a list of layer selections, e.g. [[-2], [-2, -3]])'
    problems.append(f'{where}.{key}: expected a list of values{extra}, got {values!r}')
    return [], []
  if not values:
    problems.append(f'{where}.{key}: empty list')
    return [], []
  out, ok, bad = [], [], 0
  for i, value in enumerate(values):
    coerced, error = _coerce(value, hint)
    if error and typing.get_origin(hint) is tuple and isinstance(value, int):
      error += f' (a selection is a list: write [{value}])'
    if error:
      bad += 1
      if bad <= _LISTED:
        problems.append(f'{where}.{key}[{i}]: {error}')
    out.append(coerced)
    ok.append(error is None)
  if bad > _LISTED:
    problems.append(f'{where}.{key}: {bad - _LISTED:,} more values that are not {_describe(hint)}')
  return out, ok


def _repeats(values: Sequence[Any]) -> list[Any]:
  counts = collections.Counter(values)
  return [v for v in dict.fromkeys(values) if counts[v] > 1]


def _parse(data: Any, source: str, problems: list[str]) -> SweepSpec:
  """Checks `data` and returns its spec, or raises `SweepError` with every problem in `problems` and found."""
  if not isinstance(data, Mapping):
    raise SweepError(
      source, problems + [f'expected a mapping with keys {", ".join(TOP_LEVEL_KEYS)}, got {type(data).__name__}']
    )
  for key in data:
    if key not in TOP_LEVEL_KEYS:
      close = difflib.get_close_matches(str(key), TOP_LEVEL_KEYS, n=1)
      hint = f"; did you mean '{close[0]}'?" if close else f'; valid: {", ".join(TOP_LEVEL_KEYS)}'
      problems.append(f'unknown top-level key {key!r}{hint}')

  name = data.get('name')
  if name is None:
    problems.append("name: missing; give the sweep a name such as 'fig7_4'")
    name = 'sweep'
  elif not isinstance(name, str) or not _SPEC_NAME.fullmatch(name):
    problems.append(f"name: expected a name of letters, digits, '.', '_' and '-', got {name!r}")
    name = 'sweep'
  out = data.get('out', f'runs/{name}')
  if not isinstance(out, str) or not out.strip() or '\0' in out:
    problems.append(f'out: expected a directory path, got {out!r}')
    out = f'runs/{name}'
  out = out.rstrip('/') or '/'
  kind_name = data.get('kind', kinds.DEFAULT)
  if not isinstance(kind_name, str) or kind_name not in kinds.KINDS:
    problems.append(f'kind: unknown run kind {kind_name!r}; valid: {", ".join(kinds.KINDS)}')
    raise SweepError(source, problems)
  kind = kinds.KINDS[kind_name]
  known = fields(kind.config_type)
  preset = data.get('preset')
  if preset is not None and (not isinstance(preset, str) or preset not in kind.presets):
    close = difflib.get_close_matches(str(preset), list(kind.presets), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else f'; valid: {", ".join(sorted(kind.presets))}'
    problems.append(f'preset: unknown preset {preset!r}{hint}')
    preset = None

  # Fields that were named correctly but dropped for a bad value: later checks skip what refers to them.
  dropped: set[str] = set()

  base = []
  for key, value in _section(data, 'base', problems).items():
    if _known(key, 'base', problems, known):
      coerced, error = _coerce(value, known[key])
      if error:
        problems.append(f'base.{key}: {error}')
        dropped.add(key)
      else:
        base.append((key, coerced))

  grid = []
  for key, values in _section(data, 'grid', problems).items():
    if not _known(key, 'grid', problems, known):
      continue
    coerced, ok = _values(key, values, 'grid', problems, known[key])
    kept = [v for v, good in zip(coerced, ok) if good]
    repeated = _repeats(kept)
    if repeated:
      problems.append(f'grid.{key}: repeated values {[_plain(v) for v in repeated]}')
    kept = list(dict.fromkeys(kept))
    if kept:
      grid.append((key, tuple(kept)))
    if not coerced or not all(ok):
      dropped.add(key)

  zipped = []
  columns: dict[str, tuple[list[Any], list[bool]]] = {}
  for key, values in _section(data, 'zip', problems).items():
    if _known(key, 'zip', problems, known):
      coerced, ok = _values(key, values, 'zip', problems, known[key])
      if coerced:
        columns[key] = (coerced, ok)
      else:
        dropped.add(key)
  lengths = {key: len(values) for key, (values, _) in columns.items()}
  if len(set(lengths.values())) > 1:
    problems.append('zip: lists of different lengths: ' + ', '.join(f'{k} has {n}' for k, n in lengths.items()))
    dropped.update(columns)
  elif columns:
    rows_ok = [all(flags) for flags in zip(*(ok for _, ok in columns.values()))]
    rows = [row for row, good in zip(zip(*(values for values, _ in columns.values())), rows_ok) if good]
    repeated = _repeats(rows)
    if repeated:
      keys = list(columns)
      problems.append(
        'zip: repeated rows ' + '; '.join(', '.join(f'{k}={_plain(v)}' for k, v in zip(keys, row)) for row in repeated)
      )
    rows = list(dict.fromkeys(rows))
    if not all(rows_ok):
      dropped.update(columns)
    if rows:
      zipped = [(key, tuple(row[i] for row in rows)) for i, key in enumerate(columns)]

  seen: dict[str, str] = {}
  for where, keys in (('base', [k for k, _ in base]), ('grid', [k for k, _ in grid]), ('zip', list(columns))):
    for key in keys:
      if key in seen:
        problems.append(f'{key}: given in both {seen[key]} and {where}; name each field in one place')
      else:
        seen[key] = where
  zipped = [(key, values) for key, values in zipped if seen[key] == 'zip']

  varied = {key: values for key, values in grid + zipped}
  exclude = []
  entries = data.get('exclude', [])
  if not isinstance(entries, list):
    problems.append(f'exclude: expected a list of partial assignments, got {entries!r}')
    entries = []
  for i, entry in enumerate(entries):
    where = f'exclude[{i}]'
    if not isinstance(entry, Mapping) or not entry:
      problems.append(f'{where}: expected a non-empty mapping of varied fields to values, got {entry!r}')
      continue
    flat: dict[str, Any] = {}
    before = len(problems)
    _flatten(entry, '', where, problems, flat)
    pairs = []
    for key, value in flat.items():
      if not _known(key, where, problems, known):
        continue
      if key in dropped:
        continue
      if key not in varied:
        problems.append(
          f'{where}.{key}: not a grid or zip field; exclude can only name varied fields ({", ".join(varied) or "none"})'
        )
        continue
      coerced, error = _coerce(value, known[key])
      if error:
        problems.append(f'{where}.{key}: {error}')
      elif coerced not in varied[key]:
        problems.append(
          f'{where}.{key}: {_plain(coerced)!r} is not among its values {[_plain(v) for v in varied[key]]}'
        )
      else:
        pairs.append((key, coerced))
    if len(problems) == before and not any(k in dropped for k in flat):
      exclude.append(tuple(pairs))

  spec = SweepSpec(
    name=name,
    out=out,
    kind=kind_name,
    preset=preset,
    base=tuple(base),
    grid=tuple(grid),
    zipped=tuple(zipped),
    exclude=tuple(exclude),
    source=source,
  )
  count = size(spec)
  if count > MAX_RUNS:  # refused before any run is built
    raise SweepError(source, problems + [_too_many(count)])
  _, found = _expand(spec)
  problems.extend(found)
  if problems:
    raise SweepError(source, problems)
  return spec


def _too_many(count: int) -> str:
  return f'the sweep has {count:,} runs, more than the {MAX_RUNS:,} one sweep may hold; split it into several sweeps'


# ---------------------------------------------------------------------------------------------------------------
# Expansion.


def size(spec: SweepSpec) -> int:
  """The number of runs of `spec` before exclusions: the product of the grid's lengths and the zip's rows."""
  count = math.prod(len(values) for _, values in spec.grid)
  return count * (len(spec.zipped[0][1]) if spec.zipped else 1)


def expand(spec: SweepSpec) -> list[RunSpec]:
  """The runs of `spec` in a fixed order: grid fields in spec order (first slowest), then the zip rows.

  Raises:
    SweepError: if a run's config is invalid, runs repeat each other or an exclusion matches nothing (only for
      specs built without `parse_spec`, which checks this already).
  """
  runs, problems = _expand(spec)
  if problems:
    raise SweepError(spec.source, problems)
  return list(runs)


def _format(value: Any) -> str:
  if isinstance(value, bool):
    text = 'true' if value else 'false'
  elif isinstance(value, float):
    text = repr(value)
  elif isinstance(value, tuple):
    text = '_'.join(_format(v) for v in value)
  else:
    text = str(value)
  return _UNSAFE.sub('-', text).strip('.') or '-'


def _label(key: str) -> str:
  """A field's short label in run names (`config.FIELD_LABELS`, else the last part of its name)."""
  return config_lib.FIELD_LABELS.get(key, key.rsplit('.', 1)[-1])


def _namer(spec: SweepSpec):
  """A function from an assignment to its readable run name."""
  keys = spec.varied
  labels = {key: _label(key) for key in keys}
  counts = collections.Counter(labels.values())
  labels = {key: key if counts[label] > 1 else label for key, label in labels.items()}
  order = [k for k in keys if k != 'seed'] + [k for k in keys if k == 'seed']
  envs = dict(spec.grid + spec.zipped).get('env', ())
  strip_family = len({str(e).partition('/')[0] for e in envs}) == 1

  def name(assignment: Assignment) -> str:
    values = dict(assignment)
    parts = []
    for key in order:
      value = values[key]
      if key == 'env' and strip_family and isinstance(value, str):
        value = value.partition('/')[2] or value
      parts.append(f'{labels[key]}={_format(value)}')
    return ','.join(parts) or 'run'

  return name


def _run_id(assignment: Assignment) -> str:
  text = json.dumps([[k, _plain(v)] for k, v in assignment])
  return hashlib.sha1(text.encode()).hexdigest()[:10]


def _config_problems(kind: RunKind, config: Any) -> list[str]:
  """What the kind's validation says about `config`, one item per problem."""
  try:
    kind.validate(config, False)
  except config_lib.ConfigError as e:
    text = str(e)
    if text.startswith('invalid config:'):
      return [line.strip()[2:] for line in text.splitlines()[1:] if line.strip().startswith('- ')]
    return [text]
  except (TypeError, ValueError, ArithmeticError) as e:
    return [f'cannot be checked: {e}']
  return []


@functools.lru_cache(maxsize=16)
def _expand(spec: SweepSpec) -> tuple[tuple[RunSpec, ...], tuple[str, ...]]:
  """The runs of `spec` and the problems found in them."""
  problems: list[str] = []
  kind = kinds.get(spec.kind)
  base = spec.base_config()
  keys = [k for k, _ in spec.grid] + [k for k, _ in spec.zipped]
  rows = list(zip(*(values for _, values in spec.zipped))) or [()]
  matched = [0] * len(spec.exclude)
  assignments = []
  for combo in itertools.product(*(values for _, values in spec.grid), rows):
    assignment = tuple(zip(keys, combo[:-1] + combo[-1]))
    values = dict(assignment)
    hits = [i for i, entry in enumerate(spec.exclude) if all(values[k] == v for k, v in entry)]
    for i in hits:
      matched[i] += 1
    if not hits:
      assignments.append(assignment)

  name_of = _namer(spec)
  names = [name_of(a) for a in assignments]
  ids = [_run_id(a) for a in assignments]
  clashes = {n for n, count in collections.Counter(names).items() if count > 1}
  names = [f'{n[: _MAX_NAME - 11]}~{i}' if n in clashes or len(n) > _MAX_NAME else n for n, i in zip(names, ids)]

  runs = []
  for index, (assignment, name, run_id) in enumerate(zip(assignments, names, ids)):
    config = config_lib.replace(base, **dict(assignment), out=posixpath.join(spec.out, 'runs', name))
    runs.append(RunSpec(index, name, run_id, assignment, config))

  found: dict[str, list[str]] = {}
  for run in runs:  # config.validate on every run, whose seed is checked too
    for problem in _config_problems(kind, run.config):
      found.setdefault(problem, []).append(run.name)
  for problem, where in found.items():
    problems.append(f'{problem} ({len(where)} of {len(runs)} runs, e.g. {where[0]})')

  first: dict[Any, RunSpec] = {}
  repeats = []
  for run in runs:
    key = kind.canonical(run.config)
    if key in first:
      repeats.append((first[key], run))
    else:
      first[key] = run
  if repeats:
    earlier, later = repeats[0]
    differ = [k for (k, a), (_, b) in zip(earlier.assignment, later.assignment) if a != b]
    problems.append(
      f'{len(repeats)} runs repeat an earlier run, e.g. {later.name} repeats {earlier.name}: they '
      f'differ only in {", ".join(differ)}, which does not change the run; drop the repeats with '
      'exclude'
    )

  for entry, count in zip(spec.exclude, matched):
    if not count:
      text = ', '.join(f'{k}: {_plain(v)}' for k, v in entry)
      problems.append(f'exclude {{{text}}} matches no run')
  return tuple(runs), tuple(problems)


# ---------------------------------------------------------------------------------------------------------------
# Grids on the command line.

GRID_SYNTAX = """\
Each assignment is FIELD=VALUES with FIELD a dotted config field (dqn.learning_rate, method.method, seed):
  ','   separates values:                       dqn.learning_rate=1e-4,3e-4   method.method=none,sn,divgrad
  'a-b' is an inclusive range for integer fields: seed=0-4   network.conv_layers=1-3
  ';'   separates values of list fields, whose items ',' separates (quote it in a shell):
                                                'method.layers=-2;-2,-3'  (two runs: [-2] and [-2, -3])
Booleans are true/false. The grid is the cross product of all assignments, in the order given."""


def _parse_token(token: str, hint: Any) -> Sequence[Any]:
  """One comma-separated token as values of `hint`'s type (a range stays a `range`, unbuilt); unparsable text is
  passed on for the type check."""
  if hint is int:
    match = re.fullmatch(r'\s*(-?\d+)\s*-\s*(-?\d+)\s*', token)
    if match:
      low, high = int(match.group(1)), int(match.group(2))
      return range(low, high + 1) if low <= high else [token]
    for kind in (int, float):
      try:
        return [kind(token)]
      except ValueError:
        pass
    return [token]
  if hint is float:
    try:
      return [float(token)]
    except ValueError:
      return [token]
  if hint is bool:
    lowered = token.strip().lower()
    if lowered in ('1', 'true', 'yes', 'on'):
      return [True]
    if lowered in ('0', 'false', 'no', 'off'):
      return [False]
    return [token]
  return [token.strip()]


def grid_from_args(
  base_config: Any,
  assignments: Sequence[str],
  *,
  name: str | None = None,
  out: str | None = None,
  fixed: Mapping[str, Any] | None = None,
) -> SweepSpec:
  """A checked sweep over `base_config` from command-line assignments (syntax: `GRID_SYNTAX`).

  Args:
    base_config: the config every run starts from (flags and preset already applied), of any run kind.
    assignments: strings such as 'dqn.learning_rate=1e-4,3e-4', 'seed=0-4' or 'method.layers=-2;-2,-3'.
    name: the sweep's name; by default the last part of `out`.
    out: the sweep directory; by default `base_config.out`.
    fixed: fields set on top of `base_config` (e.g. from `--set`), checked as a spec's `base` is.

  Returns:
    The spec; `expand` gives its runs.

  Raises:
    SweepError: listing every problem, in the assignments or in the runs they make.
  """
  problems: list[str] = []
  kind = kinds.of(base_config)
  known = fields(kind.config_type)
  grid: dict[str, list[Any]] = {}
  for text in assignments:
    key, sep, raw = text.partition('=')
    key = key.strip()
    if not sep or not key:
      problems.append(f'{text!r}: expected FIELD=VALUES, e.g. dqn.learning_rate=1e-4,3e-4')
      continue
    if key in grid:
      problems.append(f'{key}: assigned twice; give all its values in one assignment')
      continue
    hint = known.get(key)
    if not raw.strip():
      problems.append(f'{key}: no values')
      continue
    chunks: list[Sequence[Any]] = []
    if typing.get_origin(hint) is tuple:
      for group in raw.split(';'):
        items = [item.strip() for item in group.split(',') if item.strip()]
        try:
          chunks.append([[int(item) for item in items]])
        except ValueError:
          chunks.append([group])
    else:
      for token in raw.split(','):
        chunks.append(_parse_token(token, hint) if hint is not None else [token.strip()])
    count = sum(map(len, chunks))  # ranges are counted before they are built
    if count > MAX_RUNS:
      shown = raw if len(raw) <= 40 else raw[:37] + '...'
      problems.append(f'{key}={shown}: {count:,} values, more than the {MAX_RUNS:,} runs one sweep may hold')
      continue
    grid[key] = [value for chunk in chunks for value in chunk]
  count = math.prod(map(len, grid.values()))
  if count > MAX_RUNS:  # refused before the values are checked one by one
    raise SweepError('command-line grid', problems + [_too_many(count)])

  defaults = kind.config_type()
  base = {
    key: _plain(_get(base_config, key))
    for key in known
    if key != 'out' and key not in grid and _get(base_config, key) != _get(defaults, key)
  }
  overrides: dict[str, Any] = {}
  _flatten(fixed or {}, '', 'base', problems, overrides)  # dotted, so that each replaces its field in `base`
  base.update(overrides)
  out = out if out is not None else base_config.out
  if name is None:
    name = _UNSAFE.sub('-', posixpath.basename(out.rstrip('/')) or 'grid').strip('.-') or 'grid'
  mapping = {'name': name, 'kind': kind.name, 'out': out, 'base': base, 'grid': grid}
  return _parse(mapping, 'command-line grid', problems)
