"""Host-loop DQN throughput on MinAtar next to the learner-only update rate, measured in one run.

    .venv/bin/python benchmarks/dqn_throughput.py [--steps 30000] [--method sn] [--game breakout]

Reports (1) environment steps/s of a full training run (acting, replay, learning every 4 steps), measured between
two log entries after learning has started, so compilation and warm-up are excluded; (2) updates/s of the jitted
learner step alone, called from Python on 64 batches drawn from a filled buffer; and their ratio: the end-to-end
update rate (steps/s / update period) over the learner-only rate.
"""

from __future__ import annotations

import argparse
import platform
import tempfile

import common
import jax
import jax.numpy as jnp
import numpy as np

from smoothrl import envs
from smoothrl.agents.replay import ReplayBuffer
from smoothrl.launch.run import config as config_lib
from smoothrl.launch.run import host


def training_rate(cfg: config_lib.TrainConfig) -> float:
  """Steps/s between the first and last training log entries of a real run."""
  host.train(cfg, show_progress=False)
  return common.logged_rate(cfg.out)


def learner_rate(cfg: config_lib.TrainConfig, updates: int) -> float:
  """Updates/s of the jitted learner step alone, called once per update on 64 batches drawn from a filled buffer
  (the median of 3 timed calls of `updates` updates)."""
  env = envs.make(cfg.env, seed=0)
  agent = host.build_agent(cfg, env)
  timestep = env.reset()
  state = agent.init(jax.random.PRNGKey(0), jnp.asarray(timestep.observation))
  replay = ReplayBuffer(10_000, timestep.observation.shape, timestep.observation.dtype)
  replay.start_episode(timestep.observation)
  for _ in range(2_000):
    timestep = env.step(np.random.randint(6))
    replay.add(0, timestep.reward, timestep.discount, timestep.observation)
    if timestep.last():
      timestep = env.reset()
      replay.start_episode(timestep.observation)
  rng = np.random.default_rng(0)
  batches = [replay.sample(rng, cfg.dqn.batch_size) for _ in range(64)]
  run = common.called_learner(agent, jax.tree.map(lambda *xs: np.stack(xs), *batches), updates)
  return common.updates_per_second(run, state, updates, repeats=3)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--game', default='breakout')
  parser.add_argument('--method', default='sn')
  parser.add_argument('--steps', type=int, default=30_000)
  parser.add_argument('--updates', type=int, default=2_000)
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as out:
    cfg = config_lib.replace(
      config_lib.TrainConfig(
        env=f'minatar/{args.game}',
        steps=args.steps,
        out=out,
        eval_period=10**9,
        eval_steps=100,
        log_period=2_000,
        sigma_log_period=10**9,
      ),
      **{'method.method': args.method, 'dqn.warmup_steps': 5_000},
    )
    common.check_logged_budget(cfg)
    steps_per_s = training_rate(cfg)
    updates_per_s = learner_rate(cfg, args.updates)
  end_to_end = steps_per_s / cfg.dqn.update_period
  print(
    f'machine: {platform.processor() or platform.machine()}, {jax.device_count()} {jax.default_backend()} '
    f'device(s), jax {jax.__version__}'
  )
  print(
    f'DQN on minatar/{args.game}, method {args.method}, Table E.1 settings (update every '
    f'{cfg.dqn.update_period} steps, batch {cfg.dqn.batch_size})'
  )
  print(f'{"host loop, env steps/s":<40}{steps_per_s:>10.0f}')
  print(f'{"host loop, updates/s (end to end)":<40}{end_to_end:>10.0f}')
  print(f'{"learner only, updates/s":<40}{updates_per_s:>10.0f}')
  print(f'{"end-to-end / learner-only":<40}{end_to_end / updates_per_s:>10.2f}')
  print(f'{"projected 5M-step run (host loop)":<40}{5e6 / steps_per_s / 3600:>9.1f}h')


if __name__ == '__main__':
  main()
