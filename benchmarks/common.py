"""What the benchmark scripts share: rates read from a run's log, batches of real transitions or random ones, and the
learner step timed on them.

These machines are shared, so a rate is the median of several measurements: of the intervals between a run's log
entries, or of repeated timed calls. The scripts import this module by name; they are run as
`.venv/bin/python benchmarks/<script>.py`, which puts this directory on the import path.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from smoothrl.agents import device_replay, dqn
from smoothrl.agents.replay import Transitions
from smoothrl.launch.run import compiled
from smoothrl.launch.run import config as config_lib
from smoothrl.launch.run.files import read_metrics


def check_logged_budget(config: config_lib.TrainConfig, flag: str = '--steps') -> None:
  """Stops the script before any work when `config`'s run is too short for `logged_rate`, which needs two training
  log entries: the first at the first multiple of `log_period` after the warm-up, the next one period later."""
  least = (config.dqn.warmup_steps // config.log_period + 2) * config.log_period
  if config.steps < least:
    raise SystemExit(
      f'{flag} {config.steps}: too few steps to measure a rate; a run logs its first training entry '
      f'after the {config.dqn.warmup_steps:,}-step warm-up, then every {config.log_period:,} steps, '
      f'and a rate needs two: give at least {least}'
    )


def logged_rate(out: str) -> float:
  """Environment steps/s of the run in `out`: the median over the intervals between its training log entries."""
  train = list(read_metrics(f'{out}/metrics.jsonl', 'train'))
  if len(train) < 2:
    raise ValueError(f'{out} holds {len(train)} training log entries; a rate needs two (see check_logged_budget)')
  return statistics.median((b['step'] - a['step']) / (b['elapsed'] - a['elapsed']) for a, b in zip(train, train[1:]))


def make_program(config: config_lib.TrainConfig) -> tuple[compiled.Program, Any]:
  """The compiled runner's program for `config` on its JAX-native game, and one member's hyperparameters."""
  env = compiled.make_env(config.env)
  return (
    compiled.Program(config, env, env, lambda c, hp: compiled.build_agent(c, hp, env)),
    jax.tree.map(lambda x: x[None], compiled.HParams.of(config)),
  )


def warmed_up(config: config_lib.TrainConfig) -> tuple[compiled.Program, Any, compiled.Carry]:
  """`make_program(config)` and its carry after the warm-up (`config.dqn.warmup_steps` random-policy steps of the
  JAX-native game in replay)."""
  program, hp = make_program(config)
  carry = program.init(hp, jax.random.PRNGKey(config.seed)[None])
  carry, _ = program.warmup(hp, carry, 0, config.dqn.warmup_steps)
  return program, hp, carry


def replay_batches(config: config_lib.TrainConfig, count: int, carry: compiled.Carry | None = None) -> Transitions:
  """`count` batches stacked on a leading axis, sampled from the replay of `carry` (by default, `warmed_up`'s):
  the data the learner sees in a run."""
  replay = jax.tree.map(lambda x: x[0], (carry if carry is not None else warmed_up(config)[2]).replay)
  sample = lambda key: device_replay.sample(replay, key, config.dqn.batch_size)
  return jax.vmap(sample)(jax.random.split(jax.random.PRNGKey(config.seed + 1), count))


def random_batch(obs_shape: tuple[int, ...], num_actions: int, batch_size: int, high: int = 2) -> Transitions:
  """A fixed batch of uint8 observations in [0, high), random actions, zero rewards and unit discounts."""
  rng = np.random.default_rng(0)
  obs = rng.integers(0, high, (2, batch_size, *obs_shape)).astype(np.uint8)
  return Transitions(
    obs[0],
    rng.integers(0, num_actions, batch_size).astype(np.int32),
    np.zeros(batch_size, np.float32),
    np.ones(batch_size, np.float32),
    obs[1],
  )


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


def full_replay(carry: compiled.Carry) -> device_replay.DeviceReplay:
  """One member's replay of `carry` (`warmed_up`'s) with every slot written: its transitions repeated to the
  buffer's capacity, so that samples are spread over as much memory as in a run past its first `capacity` steps."""
  replay = jax.tree.map(lambda x: x[0], carry.replay)
  written, capacity = int(replay.size), replay.data.reward.shape[0]
  data = jax.tree.map(lambda x: jnp.resize(x[:written], x.shape), replay.data)
  return device_replay.DeviceReplay(data, jnp.zeros((), jnp.int32), jnp.asarray(capacity, jnp.int32))


def sampling_learner(
  agent: dqn.DQN, replay: device_replay.DeviceReplay, batch_size: int, updates: int, seed: int = 0
) -> Callable[[Any], Any]:
  """As `scanned_learner`, but each step first samples its batch from `replay` (`device_replay.sample`, passed to
  the program as an argument, as the compiled runner's carry holds it): the learner iteration of the compiled
  runner without its environment steps and replay writes."""
  keys = jax.random.split(jax.random.PRNGKey(seed), updates)

  @jax.jit
  def run(state, replay, keys):
    step = lambda state, key: agent.learner_step(state, device_replay.sample(replay, key, batch_size))
    state, metrics = jax.lax.scan(step, state, keys)
    return state, jax.tree.map(jnp.mean, metrics)

  return lambda state: run(state, replay, keys)


def called_learner(agent: dqn.DQN, batches: Transitions, updates: int) -> Callable[[Any], Any]:
  """A `state -> (state, metrics)` taking `updates` learner steps as a training loop written in Python would: one
  call of the jitted step per update, on batch i mod count of the stacked `batches` (each already on the device)."""
  step = jax.jit(agent.learner_step)
  count = jax.tree.leaves(batches)[0].shape[0]
  split = [jax.tree.map(lambda x, i=i: jnp.asarray(x[i]), batches) for i in range(count)]

  def run(state):
    metrics = None
    for i in range(updates):
      state, metrics = step(state, split[i % count])
    return state, metrics

  return run


def updates_per_second(run: Callable[[Any], Any], state: Any, updates: int, repeats: int = 7) -> float:
  """Updates/s of a `scanned_learner` or `called_learner` of `updates` steps: the median of `repeats` timed calls,
  compilation excluded."""
  jax.block_until_ready(run(state))
  return updates / statistics.median(timed(lambda: run(state)) for _ in range(repeats))


def timed(call: Callable[[], Any]) -> float:
  """Seconds that `call()` takes, until its result is ready."""
  start = time.perf_counter()
  jax.block_until_ready(call())
  return time.perf_counter() - start


def in_turn(calls: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
  """Median seconds of each of `calls` (compiled already), timed one after another `repeats` times over."""
  for call in calls.values():
    jax.block_until_ready(call())  # a first call after compiling: allocations, thread pools
  times: dict[str, list[float]] = {name: [] for name in calls}
  for _ in range(repeats):
    for name, call in calls.items():
      times[name].append(timed(call))
  return {name: statistics.median(ts) for name, ts in times.items()}
