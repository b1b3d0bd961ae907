"""Running a sweep's runs: local worker processes, the compiled vmapped runner, or a Ray cluster.

Every backend does the same thing with the same spec: it skips runs that finished, resumes runs that stopped
from their checkpoints, leaves failed runs alone unless asked to retry them, records a failed run's error
without stopping the others, and keeps `<sweep out>/index.json`, the list of runs with their states, current.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from smoothrl.launch import kinds
from smoothrl.launch.run import config as config_lib
from smoothrl.launch.run import recorder
from smoothrl.launch.run import workers as workers_lib
from smoothrl.launch.run.files import STATUS_FILE, atomic_write_text
from smoothrl.launch.run.kind import RunKind, TrainOptions
from smoothrl.launch.run.progress import Progress
from smoothrl.launch.sweeps import spec as sweep_lib

BACKENDS = ('local', 'compiled', 'ray')
INDEX = 'index.json'


def run_state(run: sweep_lib.RunSpec) -> dict[str, Any]:
  """A run's recorded state: pending, running (or stopped mid-way), done or failed (with its error)."""
  status = recorder.read_status(run.out)
  if status is None:
    return {'state': 'pending', 'step': 0}
  return status


class Index:
  """`index.json`: every run of the sweep with its directory, values and state, rewritten atomically."""

  def __init__(self, spec: sweep_lib.SweepSpec, runs: Sequence[sweep_lib.RunSpec], backend: str):
    self.path = Path(spec.out) / INDEX
    self.spec, self.runs, self.backend = spec, list(runs), backend
    self.states = {r.name: run_state(r) for r in self.runs}

  def set(self, run: sweep_lib.RunSpec, state: dict[str, Any]) -> None:
    self.states[run.name] = state
    self.write()

  def refresh(self) -> None:
    self.states = {r.name: run_state(r) for r in self.runs}
    self.write()

  def counts(self) -> dict[str, int]:
    counts = {'pending': 0, 'running': 0, 'done': 0, 'failed': 0}
    for state in self.states.values():
      counts[state['state']] = counts.get(state['state'], 0) + 1
    return counts

  def write(self) -> None:
    runs = [
      {
        'name': r.name,
        'run_id': r.run_id,
        'out': r.out,
        'values': {k: v for k, v in r.assignment},
        **self.states[r.name],
      }
      for r in self.runs
    ]
    atomic_write_text(
      self.path,
      json.dumps(
        {'name': self.spec.name, 'backend': self.backend, 'counts': self.counts(), 'runs': runs}, indent=2, default=str
      ),
    )


def _train_one(kind_name: str, config_data: dict[str, Any]) -> dict[str, Any]:
  """Trains (or resumes) one run of kind `kind_name` in a worker; returns its final state instead of raising."""
  kind = kinds.get(kind_name)
  config = kind.config_type.from_dict(config_data)
  try:
    summary = kind.train([config], TrainOptions(show_progress=False, resume=True))[0]
  except Exception as e:  # pylint: disable=broad-except
    return recorder.record_failure(config.out, e)
  return (
    summary if summary.get('state') == 'failed' else {'state': 'done', 'step': recorder.read_status(config.out)['step']}
  )


def run_sweep(
  spec: sweep_lib.SweepSpec,
  backend: str = 'local',
  workers: int | None = None,
  retry_failed: bool = False,
  address: str | None = None,
  show_progress: bool = True,
  max_members: int | None = None,
  cpus_per_run: float | None = None,
  gpus_per_run: float | None = None,
) -> dict[str, int]:
  """Runs what is left of `spec`'s runs on `backend`; returns the final counts of runs per state.

  `workers` processes (default: one per core), each pinned to its share of the cores, run the `local` backend's
  runs and the `compiled` backend's members on a CPU side by side. `max_members` caps the `compiled` backend's
  vmapped programs (`compiled.train_grid`). The `ray` backend asks for `cpus_per_run` CPUs (default 1) and
  `gpus_per_run` GPUs (default 0, fractions share one) for each run. Everything is checked before anything is
  written: the runs, the options and the sweep directory.
  """
  if backend not in BACKENDS:
    raise config_lib.ConfigError(f'unknown backend {backend!r}; valid: {", ".join(BACKENDS)}')
  resources = _resources(backend, cpus_per_run, gpus_per_run)
  runs = sweep_lib.expand(spec)  # validates every run before anything starts
  workers = workers_lib.count(workers or 0, len(runs))
  if backend == 'compiled':
    _check_compiled(kinds.get(spec.kind), runs)
  ray_pool = _RayPool(address, **resources) if backend == 'ray' else None
  out = Path(spec.out)
  recorder.check_directory(out / 'runs', f'sweep directory {spec.out}')
  out.mkdir(parents=True, exist_ok=True)
  atomic_write_text(out / 'spec.yaml', yaml.safe_dump(spec.to_dict(), sort_keys=False))
  index = Index(spec, runs, backend)
  todo = [
    r
    for r in runs
    if index.states[r.name]['state'] != 'done' and (retry_failed or index.states[r.name]['state'] != 'failed')
  ]
  for run in todo:
    if index.states[run.name]['state'] == 'failed':
      Path(run.out, STATUS_FILE).unlink()  # retried from its last checkpoint, if any
  index.refresh()
  # closing() ends the progress line however the sweep stops
  with contextlib.closing(_SweepProgress(spec.name, index, len(todo), show_progress)) as progress:
    if todo:
      if backend == 'compiled':
        _run_compiled(kinds.get(spec.kind), todo, index, progress, workers, max_members)
      elif backend == 'ray':
        _run_pool(spec.kind, todo, index, progress, lambda: ray_pool)
      else:
        _run_pool(spec.kind, todo, index, progress, _process_submitter(workers), capacity=workers)
    index.refresh()
  return index.counts()


class _SweepProgress:
  """Overall progress: runs done, running and failed, and an ETA from the finished runs' pace."""

  def __init__(self, name: str, index: Index, total: int, enabled: bool):
    self.name, self.index, self.total = name, index, total
    self.finished = 0
    self.start = time.perf_counter()
    self.line = Progress(max(total, 1), enabled=enabled, interval_s=0.0, unit='runs')

  def update(self, running: int) -> None:
    c = self.index.counts()
    self.line.update(
      self.finished,
      sweep=self.name,
      done=c['done'],
      running=running,
      failed=c['failed'],
      pending=max(self.total - self.finished - running, 0),
    )

  def finish_one(self, running: int) -> None:
    self.finished += 1
    self.update(running)

  def close(self) -> None:
    self.line.close()


def _process_submitter(workers: int) -> Callable[[], Any]:
  return lambda: workers_lib.pool(workers)


def _resources(backend: str, cpus_per_run: float | None, gpus_per_run: float | None) -> dict[str, float]:
  """`ray.remote`'s resources of one run: `num_cpus` and `num_gpus`, checked; None takes the default."""
  for name, value in (('cpus_per_run', cpus_per_run), ('gpus_per_run', gpus_per_run)):
    if value is None:
      continue
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
      raise config_lib.ConfigError(f'{name} must be a finite number >= 0, got {value!r}')
    if backend != 'ray':
      raise config_lib.ConfigError(f'{name} is an option of the ray backend, not of the {backend} one')
  return {
    'num_cpus': 1 if cpus_per_run is None else cpus_per_run,
    'num_gpus': 0 if gpus_per_run is None else gpus_per_run,
  }


class _RayPool:
  """Ray tasks behind the executor interface the local backend uses, each asking for `num_cpus` and `num_gpus`.

  Made before the sweep writes anything: Ray is imported and its task, with the resources Ray checks, defined.
  Entering the pool starts a local cluster or connects to the one at `address`, unless Ray is running already.
  """

  def __init__(self, address: str | None, num_cpus: float = 1, num_gpus: float = 0):
    try:
      import ray  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise config_lib.ConfigError('the ray backend needs Ray: pip install "ray==2.60.0"') from e
    self.ray, self.address = ray, address
    try:
      self.remote = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=0)(_train_one)
    except (TypeError, ValueError) as e:  # resources Ray refuses
      raise config_lib.ConfigError(f'ray refuses the resources per run: {e}') from None

  def submit(self, fn, kind_name, config_data):
    del fn  # always `_train_one`
    return self.remote.remote(kind_name, config_data).future()

  def __enter__(self):
    if not self.ray.is_initialized():
      self.ray.init(address=self.address, log_to_driver=False)
    return self

  def __exit__(self, *exc):
    return False


def _run_pool(
  kind_name: str,
  todo: list[sweep_lib.RunSpec],
  index: Index,
  progress: _SweepProgress,
  make_pool: Callable[[], Any],
  capacity: int | None = None,
) -> None:
  """Runs `todo` on a pool that runs `capacity` runs at a time in the order submitted (None: all at once, as far
  as this process can tell, which is so for Ray); the index and the progress line count as running only those."""
  with make_pool() as pool:
    futures = {pool.submit(_train_one, kind_name, run.config.to_dict()): run for run in todo}
    order = list(futures)
    capacity = capacity or len(order)
    started = 0

    def start_next() -> None:
      nonlocal started
      run = futures[order[started]]
      index.set(run, {'state': 'running', 'step': index.states[run.name].get('step', 0)})
      started += 1

    while started < min(capacity, len(order)):
      start_next()
    pending = set(futures)
    progress.update(min(capacity, len(pending)))
    while pending:
      finished, pending = concurrent.futures.wait(pending, timeout=5.0, return_when=concurrent.futures.FIRST_COMPLETED)
      for future in sorted(finished, key=order.index):  # the pool starts runs in order: those before had started
        while started <= order.index(future):
          start_next()
        run = futures[future]
        try:
          state = future.result()
        except Exception as e:  # pylint: disable=broad-except
          state = recorder.record_failure(run.out, f'worker died: {type(e).__name__}: {e}')
        index.set(run, state)
        if started < len(order):
          start_next()  # the worker it freed takes the next run
        progress.finish_one(min(capacity, len(pending)))
      if not finished:
        progress.update(min(capacity, len(pending)))


def _check_compiled(kind: RunKind, runs: Sequence[sweep_lib.RunSpec]) -> None:
  """Raises `ConfigError` unless the kind has compiled programs and each run is one (`kind.validate(c, True)`);
  configs that differ only in seed and directory share the verdict."""
  if kind.group is None:
    raise config_lib.ConfigError(f'runs of kind {kind.name!r} have no compiled programs; use the local backend')
  checked, found = set(), {}
  for run in runs:
    key = dataclasses.replace(run.config, seed=0, out='')
    if key in checked:
      continue
    checked.add(key)
    try:
      kind.validate(run.config, True)
    except ValueError as e:
      found.setdefault(str(e), run.name)
  if found:
    raise config_lib.ConfigError(
      'the compiled backend cannot run this sweep:\n  - '
      + '\n  - '.join(f'{problem} (e.g. {name})' for problem, name in found.items())
    )


def _run_compiled(
  kind: RunKind,
  todo: list[sweep_lib.RunSpec],
  index: Index,
  progress: _SweepProgress,
  workers: int,
  max_members: int | None,
) -> None:
  """Groups runs by structure (`kind.group`, checked by `_check_compiled`); each group is one compiled program
  (vmapped on accelerators, spread over `workers` pinned processes on a CPU)."""
  groups: dict[str, list[sweep_lib.RunSpec]] = {}
  for run in todo:
    groups.setdefault(kind.group(run.config), []).append(run)
  for group in groups.values():
    for run in group:
      index.set(run, {'state': 'running', 'step': 0})
    progress.update(len(group))
    try:
      kind.train(
        [r.config for r in group],
        TrainOptions(show_progress=False, resume=True, workers=workers, compiled=True, max_members=max_members),
      )
    except Exception as e:  # pylint: disable=broad-except
      for run in group:  # finished, failed and never started members keep their state
        if run_state(run)['state'] == 'running':
          recorder.record_failure(run.out, e)
    for run in group:
      index.set(run, run_state(run))
      progress.finish_one(0)
