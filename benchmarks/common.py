"""What the benchmark scripts share: rates read from a run's log, a fixed batch, and the learner step timed on it.

The scripts import this module by name; they are run as `.venv/bin/python benchmarks/<script>.py`, which puts
this directory on the import path.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import jax
import numpy as np

from smoothrl.agents import dqn
from smoothrl.agents.replay import Transitions
from smoothrl.launch.io import read_metrics


def logged_rate(out: str) -> float:
  """Environment steps/s between the first and last training log entries of the run in `out`."""
  train = list(read_metrics(f'{out}/metrics.jsonl', 'train'))
  first, last = train[0], train[-1]
  return (last['step'] - first['step']) / (last['elapsed'] - first['elapsed'])


def random_batch(obs_shape: tuple[int, ...], num_actions: int, batch_size: int, high: int = 2) -> Transitions:
  """A fixed batch of uint8 observations in [0, high), random actions, zero rewards and unit discounts."""
  rng = np.random.default_rng(0)
  obs = rng.integers(0, high, (2, batch_size, *obs_shape)).astype(np.uint8)
  return Transitions(obs[0], rng.integers(0, num_actions, batch_size).astype(np.int32),
                     np.zeros(batch_size, np.float32), np.ones(batch_size, np.float32), obs[1])


def looped_rate(agent: dqn.DQN, state: Any, batch: Transitions, updates: int) -> float:
  """Updates/s of the jitted learner step called from Python on `batch`, compilation excluded."""
  step = jax.jit(agent.learner_step)
  state, _ = step(state, batch)
  jax.block_until_ready(state)
  start = time.perf_counter()
  for _ in range(updates):
    state, _ = step(state, batch)
  jax.block_until_ready(state)
  return updates / (time.perf_counter() - start)


def scanned_learner(agent: dqn.DQN, batch: Transitions, updates: int) -> Callable[[Any], Any]:
  """A jitted `state -> state` taking `updates` learner steps on `batch` in one `lax.scan`, as the compiled
  runner does; compiled by its first call."""
  return jax.jit(lambda s: jax.lax.scan(lambda c, _: (agent.learner_step(c, batch)[0], None), s, None, updates)[0])


def scanned_rate(run: Callable[[Any], Any], state: Any, updates: int) -> float:
  """Updates/s of a `scanned_learner` of `updates` steps, its compilation excluded."""
  jax.block_until_ready(run(state))
  start = time.perf_counter()
  jax.block_until_ready(run(state))
  return updates / (time.perf_counter() - start)
