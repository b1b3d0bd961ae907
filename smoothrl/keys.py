"""Counter-based random keys: every random draw of a run is a function of its seed, a stream and a counter.

A run's key `PRNGKey(seed)` splits into one stream per source of randomness. Acting at environment step t (from 0)
uses `at(act, t)`; the environment starts its first episode with `at(env, 0)` and takes step t with
`at(env, t + 1)`; learner update u samples replay with `at(sample, u)`. Draws therefore do not depend on what
drives the loop (a Python loop or `lax.scan`, chunks of any length, a resumed run), which is what makes the host
and compiled runners take the same learner updates.
"""

from __future__ import annotations

from typing import NamedTuple

import jax


class Streams(NamedTuple):
  init: jax.Array  # network initialisation
  act: jax.Array  # exploration, counted in environment steps
  env: jax.Array  # the environment's own randomness, counted in environment steps
  sample: jax.Array  # replay sampling, counted in learner updates


def streams(key: jax.Array) -> Streams:
  """The streams of the run whose key is `key` (`jax.random.PRNGKey(seed)`)."""
  return Streams(*(jax.random.fold_in(key, i) for i in range(len(Streams._fields))))


def at(stream: jax.Array, counter: jax.Array | int) -> jax.Array:
  """The key of draw `counter` of `stream`."""
  return jax.random.fold_in(stream, counter)
