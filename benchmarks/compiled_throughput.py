"""Throughput of the runners on MinAtar, all measured in one run of this script.

    .venv/bin/python benchmarks/compiled_throughput.py [--game breakout] [--steps 40000] [--members 4,16]

Prints environment steps/s of the host runner on the official MinAtar, of the compiled runner for one run, of
both runners for one run per core side by side in pinned worker processes, and of the compiled runner for K runs
vmapped together (K from --members; rows of several runs count the steps of all of them), the learner-only floor
(updates/s of the jitted learner step with its metrics, scanned over 64 batches of real transitions), the ratio of
end-to-end updates/s to that floor, and the wall time per 5M-step DQN run at thesis Table E.1 settings (for several
runs together: their wall time divided by their number). A run's rate is the median over the intervals between its
log entries after warm-up, so compilation is excluded; the floor is the median of 7 timed calls. Last, the compiled
runner's training chunks and the floor are timed alternately in one process (--rounds pairs): the ratio least
moved by other jobs on a shared machine.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp

import common
from smoothrl.launch import compiled
from smoothrl.launch import config as config_lib
from smoothrl.launch import runner
from smoothrl.launch import workers


FLOOR_UPDATES = 250  # updates per timed call of the floor, and learner iterations per timed training chunk


def _config(game: str, steps: int, out: str, seed: int = 0, runner_name: str = 'compiled') -> config_lib.TrainConfig:
  return config_lib.replace(
      config_lib.TrainConfig(env=f'minatar/{game}', steps=steps, out=out, seed=seed, runner=runner_name,
                             eval_period=steps, eval_steps=100, log_period=5_000, sigma_log_period=steps),
      **{'method.method': 'sn', 'dqn.warmup_steps': 5_000})


def _learner(cfg: config_lib.TrainConfig, batches, updates: int):
  """The floor: the learner step alone (`common.scanned_learner`) on `batches`, and a fresh agent state."""
  env = compiled.make_env(cfg.env)
  agent = runner.make_agent(cfg, env.obs_shape, env.num_actions)
  state = agent.init(jax.random.PRNGKey(0), jnp.zeros(env.obs_shape, jnp.uint8))
  return common.scanned_learner(agent, batches, updates), state


def paired_rates(program: compiled.Program, hp, carry: compiled.Carry, floor: Callable[[Any], Any], state: Any,
                 cfg: config_lib.TrainConfig, rounds: int, iterations: int) -> tuple[float, float]:
  """Updates/s of the compiled runner's training chunks of `iterations` learner iterations from `carry` (after
  warm-up) and of `floor` (a scanned learner of as many updates), timed alternately `rounds` times in this
  process; the medians."""
  t = cfg.dqn.warmup_steps
  chunk_times, floor_times = [], []
  for i in range(rounds + 1):  # the first pair compiles
    start = time.perf_counter()
    carry = jax.block_until_ready(program.train_chunk(hp, carry, t, iterations)[0])
    chunk = time.perf_counter() - start
    t += iterations * cfg.dqn.update_period
    floor_time = common.timed(lambda: floor(state))
    if i:
      chunk_times.append(chunk)
      floor_times.append(floor_time)
  return iterations / statistics.median(chunk_times), iterations / statistics.median(floor_times)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--game', default='breakout')
  parser.add_argument('--steps', type=int, default=40_000)
  parser.add_argument('--host-steps', type=int, default=20_000)
  parser.add_argument('--members', default='4,16')
  parser.add_argument('--rounds', type=int, default=15)
  args = parser.parse_args()
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    host_cfg = _config(args.game, args.host_steps, f'{tmp}/host', runner_name='host')
    runner.train(host_cfg, show_progress=False)
    rows.append(('host runner, official MinAtar', 1, common.logged_rate(host_cfg.out)))
    one = _config(args.game, args.steps, f'{tmp}/one')
    compiled.train_grid([one], vmap_members=False, show_progress=False)
    rows.append(('compiled runner', 1, common.logged_rate(one.out)))
    n = len(workers.usable_cores())
    if n > 1:
      pair = [_config(args.game, args.host_steps, f'{tmp}/host_w{s}', seed=s, runner_name='host') for s in range(n)]
      runner.train_many(pair, show_progress=False, workers=n)
      rows.append((f'host runner, {n} pinned workers', n, sum(common.logged_rate(c.out) for c in pair)))
      pair = [_config(args.game, args.steps, f'{tmp}/w{s}', seed=s) for s in range(n)]
      compiled.train_grid(pair, vmap_members=False, show_progress=False, workers=n)
      rows.append((f'compiled runner, {n} pinned workers', n, sum(common.logged_rate(c.out) for c in pair)))
    for k in (int(m) for m in args.members.split(',') if m):
      group = [_config(args.game, args.steps, f'{tmp}/k{k}_{s}', seed=s) for s in range(k)]
      compiled.train_grid(group, vmap_members=True, show_progress=False)
      rows.append((f'compiled runner, {k} vmapped', k, k * common.logged_rate(group[0].out)))
  program, hp, carry = common.warmed_up(one)
  learn, state = _learner(one, common.replay_batches(one, 64, carry), FLOOR_UPDATES)
  floor = common.scanned_rate(learn, state, FLOOR_UPDATES)
  chunk_rate, paired_floor = paired_rates(program, hp, carry, learn, state, one, args.rounds, FLOOR_UPDATES)
  period = one.dqn.update_period
  print(f'machine: {platform.machine()}, {jax.device_count()} {jax.default_backend()} device(s): '
        f'{jax.devices()[0].device_kind}, jax {jax.__version__}')
  print(f'DQN + SN[-2] on minatar/{args.game}, Table E.1 settings (update every {period} steps, batch 32)')
  print(f'{"":<34}{"env steps/s":>12}{"updates/s":>11}{"/ floor":>9}{"min per 5M-step run":>21}')
  for name, k, rate in rows:  # `rate` counts the steps of all k runs together
    print(f'{name:<34}{rate:>12.0f}{rate / period:>11.0f}{rate / period / floor:>9.2f}{5e6 / rate / 60:>21.1f}')
  print(f'{"learner only (floor)":<34}{"":>12}{floor:>11.0f}{1.0:>9.2f}')
  print(f'timed alternately ({args.rounds} pairs): compiled runner {chunk_rate:.0f} updates/s, floor '
        f'{paired_floor:.0f} updates/s, ratio {chunk_rate / paired_floor:.2f}, '
        f'{5e6 / period / chunk_rate / 60:.1f} min per 5M-step run')


if __name__ == '__main__':
  main()
