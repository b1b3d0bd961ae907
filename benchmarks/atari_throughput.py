"""Atari throughput on this machine, measured in one run of this script.

    .venv/bin/python benchmarks/atari_throughput.py [--game Pong] [--num-envs 8] [--steps 3000]

Prints agent steps/s and frames/s (frame skip 4) of the preprocessed environment alone, single and vectorised
(ale-py's vector environment with N copies); of a DQN-Adam training run at the `dqn-adam-atari` preset (thesis
Tables E.4, E.5) on the host runner, measured between log entries after warm-up; the learner step alone; and the
projected wall time of a 50M-frame run. Also the replay memory of 1M transitions.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import common
import jax
import jax.numpy as jnp
import numpy as np

from smoothrl.agents import factory, frame_replay
from smoothrl.envs import atari
from smoothrl.launch.run import config as config_lib
from smoothrl.launch.run import host

FRAME_SKIP = 4


def env_rate(game: str, steps: int) -> float:
  env = atari.AtariEnv(game, seed=0)
  env.reset()
  rng = np.random.default_rng(0)
  n = env.action_spec().num_values
  start = time.perf_counter()
  for _ in range(steps):
    if env.step(int(rng.integers(n))).last():
      env.reset()
  return steps / (time.perf_counter() - start)


def vector_rate(game: str, num_envs: int, steps: int) -> float:
  env = atari.AtariVector(game, num_envs, seed=0)
  env.reset()
  rng = np.random.default_rng(0)
  n = env.action_spec().num_values
  start = time.perf_counter()
  for _ in range(steps // num_envs):
    env.step(rng.integers(n, size=num_envs))
  return (steps // num_envs) * num_envs / (time.perf_counter() - start)


def training_config(game: str, steps: int, out: str) -> config_lib.TrainConfig:
  return config_lib.replace(
    config_lib.preset('dqn-adam-atari'),
    env=f'atari/{game}',
    steps=steps,
    out=out,
    eval_period=10**9,
    eval_steps=10,
    log_period=500,
    sigma_log_period=10**9,
    checkpoint_period=0,
    **{'dqn.warmup_steps': 1_000, 'dqn.replay_capacity': 100_000},
  )


def training_rate(cfg: config_lib.TrainConfig) -> float:
  host.train(cfg, show_progress=False)
  return common.logged_rate(cfg.out)


def learner_rate(game: str, updates: int = 20) -> float:
  cfg = config_lib.preset('dqn-adam-atari')
  env = atari.AtariEnv(game, seed=0)
  agent = factory.make_agent(cfg, env.observation_spec().shape, env.action_spec().num_values)
  state = agent.init(jax.random.PRNGKey(0), jnp.zeros(env.observation_spec().shape, jnp.uint8))
  batch = common.random_batch(env.observation_spec().shape, env.action_spec().num_values, cfg.dqn.batch_size, high=256)
  run = common.called_learner(agent, jax.tree.map(lambda x: x[None], batch), updates)
  return common.updates_per_second(run, state, updates, repeats=1)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--game', default='Pong')
  parser.add_argument('--num-envs', type=int, default=8)
  parser.add_argument('--steps', type=int, default=3_000, help='training steps (1,000 of them warm-up)')
  args = parser.parse_args()
  common.check_logged_budget(training_config(args.game, args.steps, ''))
  single = env_rate(args.game, 2_000)
  vector = vector_rate(args.game, args.num_envs, 4_000)
  with tempfile.TemporaryDirectory() as out:
    training = training_rate(training_config(args.game, args.steps, out))
  updates = learner_rate(args.game)
  print(f'Atari {args.game}, jax {jax.__version__} on {jax.default_backend()}; frame skip {FRAME_SKIP}')
  print(f'{"":<44}{"agent steps/s":>14}{"frames/s":>10}')
  for name, rate in (
    ('environment alone, 1 env', single),
    (f'environment alone, vector of {args.num_envs}', vector),
    ('DQN-Adam training run (host runner)', training),
  ):
    print(f'{name:<44}{rate:>14.0f}{FRAME_SKIP * rate:>10.0f}')
  print(f'{"learner step alone, updates/s":<44}{updates:>14.1f}')
  print(f'{"projected 50M-frame run (host runner)":<44}{50e6 / FRAME_SKIP / training / 3600:>13.1f}h')
  print(f'{"replay memory, 1M transitions":<44}{frame_replay.memory_bytes(1_000_000) / 1e9:>13.2f} GB')


if __name__ == '__main__':
  main()
