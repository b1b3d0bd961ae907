"""Threefry-2x32 as straight-line code: the published test vector, and JAX's own draws bit for bit."""

import jax
import jax.numpy as jnp
import numpy as np

from smoothrl import keys


def test_threefry2x32_matches_the_published_test_vector():
  # Salmon et al. (2011), Random123 known-answer test for Threefry-2x32 with 20 rounds.
  x0, x1 = keys.threefry2x32(*(jnp.uint32(v) for v in (0x13198A2E, 0x03707344, 0x243F6A88, 0x85A308D3)))
  assert (int(x0), int(x1)) == (0xC4923A9C, 0x483DF7A0)


def test_unrolled_lowering_draws_what_jax_draws_without_a_loop():
  keys.unroll_threefry_on_cpu()
  keys.unroll_threefry_on_cpu()  # once is enough; again changes nothing
  key = jax.random.PRNGKey(42)

  def draws(key):
    return (
      jax.random.bits(key, (4,)),
      jax.random.fold_in(key, 7),
      jax.random.split(key, 2),
      jax.random.randint(key, (3,), 0, 1000),
    )

  # JAX's CPU lowering (a loop) drew these.
  want = (
    [2098992034, 2919706841, 2646866425, 2409546199],
    [2547012911, 1371500959],
    [[1832780943, 270669613], [64467757, 2916123636]],
    [644, 914, 71],
  )
  for got, expected in zip(jax.jit(draws)(key), want):
    np.testing.assert_array_equal(got, expected)
  assert 'while' not in jax.jit(draws).lower(key).as_text()
