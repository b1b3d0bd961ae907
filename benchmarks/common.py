"""What the benchmark scripts share: rates read from a run's log, random batches, and the learner step timed on them.

The scripts import this module by name; they are run as `.venv/bin/python benchmarks/<script>.py`, which puts
this directory on the import path.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from smoothrl.agents import dqn
from smoothrl.agents.replay import Transitions
from smoothrl.launch.io import read_metrics


def logged_rate(out: str) -> float:
  """Environment steps/s between the first and last training log entries of the run in `out`."""
  train = list(read_metrics(f'{out}/metrics.jsonl', 'train'))
  first, last = train[0], train[-1]
  return (last['step'] - first['step']) / (last['elapsed'] - first['elapsed'])


def random_batch(obs_shape: tuple[int, ...], num_actions: int, batch_size: int, high: int = 2,
                 count: int | None = None) -> Transitions:
  """A fixed batch of uint8 observations in [0, high), random actions, zero rewards and unit discounts; with
  `count`, that many distinct batches stacked on a leading axis."""
  rng = np.random.default_rng(0)
  lead = (batch_size,) if count is None else (count, batch_size)
  obs = rng.integers(0, high, (2, *lead, *obs_shape)).astype(np.uint8)
  return Transitions(obs[0], rng.integers(0, num_actions, lead).astype(np.int32),
                     np.zeros(lead, np.float32), np.ones(lead, np.float32), obs[1])


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


def scanned_learner(agent: dqn.DQN, batches: Transitions, updates: int) -> Callable[[Any], Any]:
  """A jitted `state -> (state, mean metrics)` taking `updates` learner steps in one `lax.scan`, as the compiled
  runner does: step i learns from batch i mod count of the stacked `batches` (distinct batches, so XLA cannot
  hoist batch-only work out of the loop) and the metrics are averaged; compiled by its first call."""
  batches = jax.tree.map(jnp.asarray, batches)
  count = jax.tree.leaves(batches)[0].shape[0]

  def step(state, i):
    return agent.learner_step(state, jax.tree.map(lambda x: x[i % count], batches))

  def run(state):
    state, metrics = jax.lax.scan(step, state, jnp.arange(updates))
    return state, jax.tree.map(jnp.mean, metrics)

  return jax.jit(run)


def scanned_rate(run: Callable[[Any], Any], state: Any, updates: int, repeats: int = 5) -> float:
  """Updates/s of a `scanned_learner` of `updates` steps: the fastest of `repeats` timed calls (other jobs on a
  shared machine only slow a call down), its compilation excluded."""
  jax.block_until_ready(run(state))
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(run(state))
    best = min(best, time.perf_counter() - start)
  return updates / best
