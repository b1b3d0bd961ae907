"""Worker processes that run side by side, each pinned to its own share of the CPU cores.

On a small CPU one run gains little from a second core (its learner step is a chain of small kernels), so runs
side by side, one per core, finish sooner than the same runs one after another on all cores (README,
Performance). Workers are spawned, since JAX does not survive a fork, and pin themselves before JAX starts.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import queue
from collections.abc import Callable, Sequence
from typing import Any

from smoothrl.launch.run import config as config_lib


def usable_cores() -> list[int]:
  """The cores this process may run on."""
  if hasattr(os, 'sched_getaffinity'):
    return sorted(os.sched_getaffinity(0))
  return list(range(os.cpu_count() or 1))


def core_shares(workers: int, cores: Sequence[int]) -> list[tuple[int, ...]]:
  """Disjoint shares of `cores`, dealt round robin to `workers`; with more workers than cores, workers share."""
  if workers < 1:
    raise ValueError(f'workers must be positive, got {workers}')
  if not cores:
    raise ValueError('no cores to share')
  if workers >= len(cores):
    return [(cores[i % len(cores)],) for i in range(workers)]
  return [tuple(cores[i::workers]) for i in range(workers)]


def _pin(shares: multiprocessing.Queue) -> None:
  try:
    cores = shares.get(timeout=30)
  except queue.Empty:  # a worker beyond the shares dealt: left unpinned
    return
  if hasattr(os, 'sched_setaffinity'):
    os.sched_setaffinity(0, cores)


def pool(workers: int) -> concurrent.futures.ProcessPoolExecutor:
  """A pool of `workers` spawned processes, each pinned to its share of the usable cores."""
  cores = usable_cores()
  context = multiprocessing.get_context('spawn')  # JAX does not survive fork
  shares = context.Queue()
  for share in core_shares(workers, cores):
    shares.put(share)
  return concurrent.futures.ProcessPoolExecutor(
    max_workers=workers, mp_context=context, initializer=_pin, initargs=(shares,)
  )


def count(workers: int, jobs: int) -> int:
  """How many workers to start for `jobs` jobs: `workers`, or one per usable core for 0, never more than jobs."""
  if workers < 0:
    raise config_lib.ConfigError(f'workers must be 0 (one per core) or positive, got {workers}')
  return max(1, min(workers or len(usable_cores()), jobs))


def run_shares(fn: Callable[[list[Any], bool], list[Any]], items: Sequence[Any], workers: int) -> list[Any]:
  """`fn(share, first)` on `workers` round-robin shares of `items`, side by side in pinned processes.

  `fn` (picklable: a module-level function or a partial of one) returns one result per item of its share; `first`
  is True for the share of the first item. Returns the results in the order of `items`; a worker's exception is
  raised once every worker has finished.
  """
  with pool(workers) as workers_pool:
    futures = [workers_pool.submit(fn, list(items[i::workers]), i == 0) for i in range(workers)]
    concurrent.futures.wait(futures)
  results: list[Any] = [None] * len(items)
  for i, future in enumerate(futures):
    results[i::workers] = future.result()
  return results
