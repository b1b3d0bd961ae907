"""Runs side by side in pinned worker processes: core shares, result order, and the same results as in-process."""

import functools
import multiprocessing
import os

import numpy as np
import pytest
from chain_runs import chain_config, records

from smoothrl.launch.run import compiled, host, workers
from smoothrl.launch.run import config as config_lib


def test_core_shares_are_disjoint_round_robin():
  assert workers.core_shares(1, [0, 1]) == [(0, 1)]
  assert workers.core_shares(2, [0, 1]) == [(0,), (1,)]
  assert workers.core_shares(2, [0, 1, 2, 3, 4]) == [(0, 2, 4), (1, 3)]
  assert workers.core_shares(3, [4, 7]) == [(4,), (7,), (4,)]  # more workers than cores: they share
  with pytest.raises(ValueError, match='positive'):
    workers.core_shares(0, [0])


def test_worker_count():
  cores = len(workers.usable_cores())
  assert workers.count(0, 100) == cores
  assert workers.count(0, 1) == 1
  assert workers.count(3, 2) == 2
  with pytest.raises(ValueError, match='one per core'):
    workers.count(-1, 4)


def _where(items, first, both_started):
  both_started.wait(timeout=120)  # holds each share in its worker until the other share has started
  return [(item, first, tuple(sorted(os.sched_getaffinity(0))), os.getpid()) for item in items]


@pytest.mark.skipif(not hasattr(os, 'sched_getaffinity'), reason='pinning needs sched_setaffinity (Linux)')
def test_shares_run_in_pinned_processes_and_come_back_in_order():
  with multiprocessing.get_context('spawn').Manager() as manager:
    results = workers.run_shares(functools.partial(_where, both_started=manager.Barrier(2)), list('abcde'), 2)
  assert [r[0] for r in results] == list('abcde')
  assert [r[1] for r in results] == [True, False, True, False, True]
  shares = workers.core_shares(2, workers.usable_cores())
  assert [r[2] for r in results] == [shares[i % 2] for i in range(5)]
  assert len({r[3] for r in results}) == 2 and os.getpid() not in {r[3] for r in results}


def _same_runs(a, b):
  for x, y in zip(a, b):
    assert records(x.out, 'episode') == records(y.out, 'episode')
    for u, v in zip(records(x.out, 'train'), records(y.out, 'train'), strict=True):
      assert u['updates'] == v['updates']
      np.testing.assert_allclose(u['loss'], v['loss'], rtol=1e-5)


def test_compiled_members_in_workers_match_members_in_process(tmp_path):
  seeds = (0, 1, 2)
  apart = [chain_config(tmp_path / f'w{s}', seed=s, steps=800, eval_period=800) for s in seeds]
  here = [chain_config(tmp_path / f'p{s}', seed=s, steps=800, eval_period=800) for s in seeds]
  summaries = compiled.train_grid(apart, vmap_members=False, show_progress=False, workers=2)
  assert [s['steps'] for s in summaries] == [800] * 3
  compiled.train_grid(here, vmap_members=False, show_progress=False, workers=1)
  _same_runs(apart, here)


def test_host_runs_in_workers_match_runs_in_process(tmp_path):
  def config(name, seed):
    return chain_config(tmp_path / name, seed=seed, steps=800, eval_period=800, runner='host')

  apart, here = [config(f'w{s}', s) for s in (0, 1)], [config(f'p{s}', s) for s in (0, 1)]
  summaries = host.train_many(apart, show_progress=False, workers=2)
  assert [s['steps'] for s in summaries] == [800, 800]
  host.train_many(here, show_progress=False)
  _same_runs(apart, here)
  with pytest.raises(config_lib.ConfigError, match='one per core'):
    host.train_many(here, workers=-2)
