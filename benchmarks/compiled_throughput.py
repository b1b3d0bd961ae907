"""Throughput of the runners on MinAtar, all measured in one run of this script.

    .venv/bin/python benchmarks/compiled_throughput.py [--game breakout] [--steps 40000] [--members 4,16]

Prints environment steps/s of the host runner on the official MinAtar, of the compiled runner for one run, of
both runners for one run per core side by side in pinned worker processes, and of the compiled runner for K runs
vmapped together (K from --members; rows of several runs count the steps of all of them), the learner-only floor
(updates/s of the jitted learner step with its metrics, scanned over 64 batches of real transitions), the ratio of
end-to-end updates/s to that floor, and the wall time per 5M-step DQN run at thesis Table E.1 settings (for several
runs together: their wall time divided by their number). It also times the learner step called once per update
from Python on the same batches, as a training loop written in Python runs it, and the scanned learner sampling
each batch from a replay buffer filled to its capacity: the compiled runner's iteration without its environment
steps and replay writes, so that the runner's gap to it is what acting costs. A run's rate is the median over the
intervals between its log entries after warm-up, so compilation is excluded; a learner's is the median of 7 timed
calls. It times one evaluation phase of the default protocol (125,000 steps at epsilon 0.001, every 250,000
steps), which a run spends on top of its training steps. Last, the compiled runner's training chunks and the three
learners are timed in turn in one process (--rounds rounds): the ratios least moved by other jobs on a shared
machine. There the runner starts from a replay filled to its capacity, as in all but the first 100,000 steps of a
5M-step run.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import common
import jax
import jax.numpy as jnp

from smoothrl.agents import dqn, factory
from smoothrl.launch.run import compiled, host, workers
from smoothrl.launch.run import config as config_lib

FLOOR_UPDATES = 250  # updates per timed call of the floor, and learner iterations per timed training chunk


def _config(game: str, steps: int, out: str, seed: int = 0, runner_name: str = 'compiled') -> config_lib.TrainConfig:
  return config_lib.replace(
    config_lib.TrainConfig(
      env=f'minatar/{game}',
      steps=steps,
      out=out,
      seed=seed,
      runner=runner_name,
      eval_period=steps,
      eval_steps=100,
      log_period=5_000,
      sigma_log_period=steps,
    ),
    **{'method.method': 'sn', 'dqn.warmup_steps': 5_000},
  )


def _floors(
  cfg: config_lib.TrainConfig, carry: compiled.Carry, updates: int
) -> tuple[dict[str, Callable[[Any], Any]], Any]:
  """The learner step alone, `updates` steps per call, on 64 batches sampled from `carry`'s replay: scanned in one
  XLA program (`common.scanned_learner`, the floor) and called once per update from Python
  (`common.called_learner`); scanned and sampling each batch from the replay filled to its capacity
  (`common.sampling_learner`); and a fresh agent state."""
  env = compiled.make_env(cfg.env)
  agent = factory.make_agent(cfg, env.obs_shape, env.num_actions)
  state = agent.init(jax.random.PRNGKey(0), jnp.zeros(env.obs_shape, jnp.uint8))
  batches = common.replay_batches(cfg, 64, carry)
  return {
    'scanned': common.scanned_learner(agent, batches, updates),
    'called': common.called_learner(agent, batches, updates),
    'sampling': common.sampling_learner(agent, common.full_replay(carry), cfg.dqn.batch_size, updates),
  }, state


def paired_rates(
  program: compiled.Program,
  hp,
  carry: compiled.Carry,
  floors: dict[str, Callable[[Any], Any]],
  state: Any,
  cfg: config_lib.TrainConfig,
  rounds: int,
  iterations: int,
) -> dict[str, float]:
  """Updates/s of the compiled runner's training chunks of `iterations` learner iterations from `carry` (after
  warm-up) and of each of `floors` (learners of as many updates), timed in turn `rounds` times in this process; the
  medians, the runner's under 'compiled'."""
  t = cfg.dqn.warmup_steps
  times: dict[str, list[float]] = {name: [] for name in ('compiled', *floors)}
  for i in range(rounds + 1):  # the first round compiles
    start = time.perf_counter()
    carry = jax.block_until_ready(program.train_chunk(hp, carry, t, iterations)[0])
    chunk = time.perf_counter() - start
    t += iterations * cfg.dqn.update_period
    floor_times = {name: common.timed(lambda f=floor: f(state)) for name, floor in floors.items()}
    if i:
      times['compiled'].append(chunk)
      for name, seconds in floor_times.items():
        times[name].append(seconds)
  return {name: iterations / statistics.median(ts) for name, ts in times.items()}


def evaluation_seconds(cfg: config_lib.TrainConfig, carry: compiled.Carry, validation_steps: int) -> float:
  """Seconds of one evaluation phase of `validation_steps` steps of the compiled runner, acting with `carry`'s
  agent: the median of 3 timed calls after the compiling one."""
  program, hp = common.make_program(config_lib.replace(cfg, eval_steps=validation_steps))
  actor = jax.vmap(dqn.actor_state)(carry.agent)
  call = lambda: program.evaluate(hp, actor, jax.random.PRNGKey(cfg.seed)[None])
  jax.block_until_ready(call())
  return statistics.median(common.timed(call) for _ in range(3))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--game', default='breakout')
  parser.add_argument('--steps', type=int, default=40_000)
  parser.add_argument('--host-steps', type=int, default=20_000)
  parser.add_argument('--members', default='4,16')
  parser.add_argument('--rounds', type=int, default=15)
  args = parser.parse_args()
  common.check_logged_budget(_config(args.game, args.steps, ''))
  common.check_logged_budget(_config(args.game, args.host_steps, ''), '--host-steps')
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    host_cfg = _config(args.game, args.host_steps, f'{tmp}/host', runner_name='host')
    host.train(host_cfg, show_progress=False)
    rows.append(('host runner, official MinAtar', 1, common.logged_rate(host_cfg.out)))
    one = _config(args.game, args.steps, f'{tmp}/one')
    compiled.train_grid([one], vmap_members=False, show_progress=False)
    rows.append(('compiled runner', 1, common.logged_rate(one.out)))
    n = len(workers.usable_cores())
    if n > 1:
      pair = [_config(args.game, args.host_steps, f'{tmp}/host_w{s}', seed=s, runner_name='host') for s in range(n)]
      host.train_many(pair, show_progress=False, workers=n)
      rows.append((f'host runner, {n} pinned workers', n, sum(common.logged_rate(c.out) for c in pair)))
      pair = [_config(args.game, args.steps, f'{tmp}/w{s}', seed=s) for s in range(n)]
      compiled.train_grid(pair, vmap_members=False, show_progress=False, workers=n)
      rows.append((f'compiled runner, {n} pinned workers', n, sum(common.logged_rate(c.out) for c in pair)))
    for k in (int(m) for m in args.members.split(',') if m):
      group = [_config(args.game, args.steps, f'{tmp}/k{k}_{s}', seed=s) for s in range(k)]
      compiled.train_grid(group, vmap_members=True, show_progress=False)
      rows.append((f'compiled runner, {k} vmapped', k, k * common.logged_rate(group[0].out)))
  program, hp, carry = common.warmed_up(one)
  floors, state = _floors(one, carry, FLOOR_UPDATES)
  floor, called, sampling = (
    common.updates_per_second(floors[name], state, FLOOR_UPDATES) for name in ('scanned', 'called', 'sampling')
  )
  table = config_lib.TrainConfig()  # the default protocol: Table E.1's validation phases
  phases = table.steps // table.eval_period
  validation = phases * evaluation_seconds(one, carry, table.eval_steps) / 60
  filled = carry._replace(replay=jax.tree.map(lambda x: x[None], common.full_replay(carry)))
  paired = paired_rates(program, hp, filled, floors, state, one, args.rounds, FLOOR_UPDATES)  # donates `filled`
  period = one.dqn.update_period
  print(
    f'machine: {platform.machine()}, {jax.device_count()} {jax.default_backend()} device(s): '
    f'{jax.devices()[0].device_kind}, jax {jax.__version__}'
  )
  print(f'DQN + SN[-2] on minatar/{args.game}, Table E.1 settings (update every {period} steps, batch 32)')
  print(f'{"":<40}{"env steps/s":>12}{"updates/s":>11}{"/ floor":>9}{"min per 5M-step run":>21}')
  for name, _, rate in rows:  # `rate` counts the steps of all the row's runs together
    print(f'{name:<40}{rate:>12.0f}{rate / period:>11.0f}{rate / period / floor:>9.2f}{5e6 / rate / 60:>21.1f}')
  print(f'{"learner only, scanned (floor)":<40}{"":>12}{floor:>11.0f}{1.0:>9.2f}')
  print(f'{"learner only, one call per update":<40}{"":>12}{called:>11.0f}{called / floor:>9.2f}')
  print(f'{"learner sampling a full replay, scanned":<40}{"":>12}{sampling:>11.0f}{sampling / floor:>9.2f}')
  print(
    f'evaluation: {phases} phases of {table.eval_steps:,} steps at epsilon {table.eval_epsilon} in a '
    f'{table.steps:,}-step run (one every {table.eval_period:,} steps), {validation:.1f} min in all'
  )
  rate = paired['compiled']
  minutes = 5e6 / period / rate / 60
  print(
    f'timed in turn ({args.rounds} rounds): compiled runner {rate:.0f} updates/s, {minutes:.1f} min per 5M-step '
    f'run ({minutes + validation:.1f} with its evaluations); / scanned floor ({paired["scanned"]:.0f}) '
    f'{rate / paired["scanned"]:.2f}; / one call per update ({paired["called"]:.0f}) '
    f'{rate / paired["called"]:.2f}; / learner sampling a full replay ({paired["sampling"]:.0f}) '
    f'{rate / paired["sampling"]:.2f}'
  )


if __name__ == '__main__':
  main()
