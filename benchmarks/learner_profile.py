"""Where the time of one learner step goes: XLA's per-kernel times from a profiler trace of the scanned step.

    .venv/bin/python benchmarks/learner_profile.py [--game breakout] [--method none] [--conv-impl patches]

Traces `--updates` learner steps (DQN at Table E.1 settings on 64 batches of real transitions, scanned as in the
compiled runner) and prints the wall time per update and the kernels by total time per update, grouped by kind (a
fusion's name without its number). Kernels may run concurrently on several cores, so the kinds can sum to more than
the wall time; tracing adds a cost per kernel, so small kernels look slower than they run untraced.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import re
import tempfile

import common
import jax
import jax.numpy as jnp

from smoothrl.agents import factory
from smoothrl.launch.run import compiled
from smoothrl.launch.run import config as config_lib


def kernel_times(trace_dir: str, updates: int) -> collections.Counter:
  """Microseconds per update of each kernel kind in the trace."""
  path = sorted(glob.glob(f'{trace_dir}/**/*.trace.json.gz', recursive=True))[-1]
  with gzip.open(path) as f:
    trace = json.load(f)
  events = trace['traceEvents'] if isinstance(trace, dict) else trace
  kinds: collections.Counter = collections.Counter()
  for event in events:
    name = event.get('name', '')
    if event.get('ph') != 'X' or name.startswith(('$', 'Thunk', 'end:', 'Slinky', 'Threadpool', 'Common', 'Pjit')):
      continue
    kinds[re.sub(r'[.\d]+$', '', name)] += event['dur'] / updates
  return kinds


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--game', default='breakout')
  parser.add_argument('--method', default='none')
  parser.add_argument('--conv-impl', default='patches', choices=('patches', 'xla'))
  parser.add_argument('--updates', type=int, default=500)
  parser.add_argument('--top', type=int, default=15)
  args = parser.parse_args()
  cfg = config_lib.replace(
    config_lib.TrainConfig(env=f'minatar/{args.game}'),
    **{'method.method': args.method, 'network.conv_impl': args.conv_impl},
  )
  env = compiled.make_env(cfg.env)
  agent = factory.make_agent(cfg, env.obs_shape, env.num_actions)
  state = agent.init(jax.random.PRNGKey(0), jnp.zeros(env.obs_shape, jnp.uint8))
  b = cfg.dqn.batch_size
  run = common.scanned_learner(agent, common.replay_batches(cfg, count=64), args.updates)
  wall = 1e6 / common.updates_per_second(run, state, args.updates)
  with tempfile.TemporaryDirectory() as trace_dir:
    jax.profiler.start_trace(trace_dir, create_perfetto_trace=True)
    jax.block_until_ready(run(state))
    jax.profiler.stop_trace()
    kinds = kernel_times(trace_dir, args.updates)
  print(
    f'DQN learner step, method {args.method}, conv {args.conv_impl}, minatar/{args.game}, batch {b}: '
    f'{wall:.0f} us per update untraced; kernels traced (us per update, may overlap):'
  )
  for name, micros in kinds.most_common(args.top):
    print(f'  {micros:8.1f}  {name}')
  print(f'  {sum(kinds.values()):8.1f}  all kernels')


if __name__ == '__main__':
  main()
