"""Running a sweep's runs: local worker processes, the compiled vmapped runner, or a Ray cluster.

Every backend does the same thing with the same spec: it skips runs that finished, resumes runs that stopped
from their checkpoints, leaves failed runs alone unless asked to retry them, records a failed run's error
without stopping the others, and keeps `<sweep out>/index.json`, the list of runs with their states, current.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml

from smoothrl.launch import kinds
from smoothrl.launch.run import recorder
from smoothrl.launch.run.kind import RunKind, TrainOptions
from smoothrl.launch.run import config as config_lib
from smoothrl.launch.sweeps import spec as sweep_lib
from smoothrl.launch.run import workers as workers_lib
from smoothrl.launch.run.files import STATUS_FILE, atomic_write_text
from smoothrl.launch.run.progress import Progress

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
    runs = [{'name': r.name, 'run_id': r.run_id, 'out': r.out, 'values': {k: v for k, v in r.assignment},
             **self.states[r.name]} for r in self.runs]
    atomic_write_text(self.path, json.dumps({'name': self.spec.name, 'backend': self.backend,
                                             'counts': self.counts(), 'runs': runs}, indent=2, default=str))


def _train_one(kind_name: str, config_data: dict[str, Any]) -> dict[str, Any]:
  """Trains (or resumes) one run of kind `kind_name` in a worker; returns its final state instead of raising."""
  kind = kinds.get(kind_name)
  config = kind.config_type.from_dict(config_data)
  try:
    summary = kind.train([config], TrainOptions(show_progress=False, resume=True))[0]
  except Exception as e:  # pylint: disable=broad-except
    return recorder.record_failure(config.out, e)
  return summary if summary.get('state') == 'failed' else {'state': 'done', 'step': recorder.read_status(config.out)['step']}


def run_sweep(spec: sweep_lib.SweepSpec, backend: str = 'local', workers: int | None = None,
              retry_failed: bool = False, address: str | None = None, show_progress: bool = True,
              max_members: int | None = None) -> dict[str, int]:
  """Runs what is left of `spec`'s runs on `backend`; returns the final counts of runs per state.

  `workers` processes (default: one per core), each pinned to its share of the cores, run the `local` backend's
  runs and the `compiled` backend's members on a CPU side by side. `max_members` caps the `compiled` backend's
  vmapped programs (`compiled.train_grid`).
  """
  if backend not in BACKENDS:
    raise config_lib.ConfigError(f'unknown backend {backend!r}; valid: {", ".join(BACKENDS)}')
  runs = sweep_lib.expand(spec)  # validates every run before anything starts
  workers = workers_lib.count(workers or 0, len(runs))
  out = Path(spec.out)
  out.mkdir(parents=True, exist_ok=True)
  atomic_write_text(out / 'spec.yaml', yaml.safe_dump(spec.to_dict(), sort_keys=False))
  index = Index(spec, runs, backend)
  todo = [r for r in runs if index.states[r.name]['state'] != 'done'
          and (retry_failed or index.states[r.name]['state'] != 'failed')]
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
        _run_pool(spec.kind, todo, index, progress, _ray_submitter(address))
      else:
        _run_pool(spec.kind, todo, index, progress, _process_submitter(workers))
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
    self.line.update(self.finished, sweep=self.name, done=c['done'], running=running, failed=c['failed'],
                     pending=max(self.total - self.finished - running, 0))

  def finish_one(self, running: int) -> None:
    self.finished += 1
    self.update(running)

  def close(self) -> None:
    self.line.close()


def _process_submitter(workers: int) -> Callable[[], Any]:
  return lambda: workers_lib.pool(workers)


def _ray_submitter(address: str | None) -> Callable[[], Any]:
  return lambda: _RayPool(address)


class _RayPool:
  """Ray tasks behind the executor interface the local backend uses."""

  def __init__(self, address: str | None):
    try:
      import ray  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise config_lib.ConfigError('the ray backend needs Ray: pip install "ray==2.60.0"') from e
    self.ray = ray
    if not ray.is_initialized():
      ray.init(address=address, log_to_driver=False)
    self.remote = ray.remote(num_cpus=1, max_retries=0)(_train_one)

  def submit(self, fn, kind_name, config_data):
    del fn  # always `_train_one`
    return self.remote.remote(kind_name, config_data).future()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    return False


def _run_pool(kind_name: str, todo: list[sweep_lib.RunSpec], index: Index, progress: _SweepProgress,
              make_pool: Callable[[], Any]) -> None:
  with make_pool() as pool:
    futures = {}
    for run in todo:
      futures[pool.submit(_train_one, kind_name, run.config.to_dict())] = run
      index.set(run, {'state': 'running', 'step': index.states[run.name].get('step', 0)})
    progress.update(len(futures))
    pending = set(futures)
    while pending:
      finished, pending = concurrent.futures.wait(pending, timeout=5.0,
                                                  return_when=concurrent.futures.FIRST_COMPLETED)
      for future in finished:
        run = futures[future]
        try:
          state = future.result()
        except Exception as e:  # pylint: disable=broad-except
          state = recorder.record_failure(run.out, f'worker died: {type(e).__name__}: {e}')
        index.set(run, state)
        progress.finish_one(len(pending))
      if not finished:
        progress.update(len(pending))


def _run_compiled(kind: RunKind, todo: list[sweep_lib.RunSpec], index: Index, progress: _SweepProgress,
                  workers: int, max_members: int | None) -> None:
  """Groups runs by structure (`kind.group`); each group is one compiled program (vmapped on accelerators, spread
  over `workers` pinned processes on a CPU)."""
  if kind.group is None:
    raise config_lib.ConfigError(f'runs of kind {kind.name!r} have no compiled programs; use the local backend')
  groups: dict[str, list[sweep_lib.RunSpec]] = {}
  for run in todo:
    groups.setdefault(kind.group(run.config), []).append(run)
  for group in groups.values():
    for run in group:
      index.set(run, {'state': 'running', 'step': 0})
    progress.update(len(group))
    try:
      kind.train([r.config for r in group], TrainOptions(show_progress=False, resume=True, workers=workers,
                                                          compiled=True, max_members=max_members))
    except Exception as e:  # pylint: disable=broad-except
      for run in group:  # finished, failed and never started members keep their state
        if run_state(run)['state'] == 'running':
          recorder.record_failure(run.out, e)
    for run in group:
      index.set(run, run_state(run))
      progress.finish_one(0)
