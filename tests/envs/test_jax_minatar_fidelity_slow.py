"""Episode statistics of the JAX MinAtar games against the official package.

For each game, hundreds of episodes of a random policy in the official
`minatar.Environment` (sticky actions 0.1, ramping on) and as many in the JAX
game (vmapped, one episode per lane) must give the same distributions of
episode return and length: a two-sample Kolmogorov-Smirnov test and Welch's
t-test on the means, each at level 0.001 (20-odd tests in all, so a false
alarm in a run is unlikely; the seeds are fixed, so results are repeatable).
Freeway under a uniform policy almost never scores and always lasts 2501
steps, so it is also checked under a policy that mostly moves up.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import minatar
import numpy as np
import pytest
from scipy import stats

from smoothrl.envs import jax_minatar

# Freeway's episodes last 2501 steps: fewer of them.
NUM_EPISODES = {'freeway': 300}
DEFAULT_NUM_EPISODES = 1000
ALPHA = 1e-3
# Guards the JAX loop against an episode that never ends.
MAX_STEPS = 100_000

UNIFORM = np.full(6, 1.0 / 6.0)
# Freeway: mostly up (action 2), so that episodes score.
MOSTLY_UP = np.array([0.1, 0.05, 0.6, 0.05, 0.1, 0.1])

CASES = [(game, 'uniform') for game in jax_minatar.GAMES] + [('freeway', 'mostly_up')]
POLICIES = {'uniform': UNIFORM, 'mostly_up': MOSTLY_UP}


def _official_episodes(
  game: str,
  probs: np.ndarray,
  num: int,
  seed: int,
) -> tuple[np.ndarray, np.ndarray]:
  """Returns and lengths of `num` episodes in one official environment."""
  env = minatar.Environment(game)  # Sticky actions 0.1, ramping on.
  env.seed(seed)
  rng = np.random.default_rng(seed)
  returns, lengths = [], []
  for _ in range(num):
    env.reset()
    total, steps, terminal = 0.0, 0, False
    while not terminal:
      reward, terminal = env.act(int(rng.choice(6, p=probs)))
      total += reward
      steps += 1
    returns.append(total)
    lengths.append(steps)
  return np.array(returns), np.array(lengths)


def _jax_episodes(
  game: str,
  probs: np.ndarray,
  num: int,
  seed: int,
) -> tuple[np.ndarray, np.ndarray]:
  """Returns and lengths of `num` episodes, one per vmapped lane."""
  env = jax_minatar.make(game)
  logits = jnp.log(jnp.asarray(probs, jnp.float32))

  def episode(key):
    key_first, key_reset, key = jax.random.split(key, 3)
    # The official environment carries the last action over from the
    # previous episode; under a random policy that is a random action.
    _, state = env.reset(key_reset, jax.random.categorical(key_first, logits))

    def cond(carry):
      _, _, _, steps, done = carry
      return ~done & (steps < MAX_STEPS)

    def body(carry):
      key, state, total, steps, _ = carry
      key, key_action, key_step = jax.random.split(key, 3)
      action = jax.random.categorical(key_action, logits)
      _, state, reward, done = env.step(key_step, state, action)
      return key, state, total + reward, steps + 1, done

    carry = (key, state, jnp.float32(0), jnp.int32(0), jnp.bool_(False))
    _, _, total, steps, done = jax.lax.while_loop(cond, body, carry)
    return total, steps, done

  run = jax.jit(jax.vmap(episode))
  returns, lengths, done = jax.device_get(run(jax.random.split(jax.random.key(seed), num)))
  assert np.all(done), 'an episode did not end'
  return np.asarray(returns, np.float64), np.asarray(lengths)


def _compare(
  name: str,
  official: np.ndarray,
  jax_: np.ndarray,
) -> tuple[str, bool]:
  """A line of statistics, and whether the distributions agree."""
  line = (
    f'{name}: official mean {official.mean():.3f} '
    f'(sd {official.std(ddof=1):.3f}), '
    f'jax mean {jax_.mean():.3f} (sd {jax_.std(ddof=1):.3f})'
  )
  if np.ptp(official) == 0 and np.ptp(jax_) == 0:
    return line + ', both constant', bool(official[0] == jax_[0])
  ks = stats.ks_2samp(official, jax_, method='asymp')
  welch = stats.ttest_ind(official, jax_, equal_var=False)
  line += f', KS D {ks.statistic:.3f} p {ks.pvalue:.3f}, Welch p {welch.pvalue:.3f}'
  return line, bool(ks.pvalue > ALPHA and welch.pvalue > ALPHA)


@pytest.mark.slow
@pytest.mark.parametrize('game,policy', CASES)
def test_episode_statistics_match_the_official_game(game, policy):
  probs = POLICIES[policy]
  num = NUM_EPISODES.get(game, DEFAULT_NUM_EPISODES)
  start = time.perf_counter()
  official_returns, official_lengths = _official_episodes(game, probs, num, seed=0)
  middle = time.perf_counter()
  jax_returns, jax_lengths = _jax_episodes(game, probs, num, seed=0)
  end = time.perf_counter()
  results = [
    _compare('return', official_returns, jax_returns),
    _compare('length', official_lengths, jax_lengths),
  ]
  report = (
    f'{game} ({policy}, {num} episodes each; official '
    f'{middle - start:.1f}s, jax {end - middle:.1f}s)\n  ' + '\n  '.join(line for line, _ in results)
  )
  print('\n' + report)
  assert all(ok for _, ok in results), report
