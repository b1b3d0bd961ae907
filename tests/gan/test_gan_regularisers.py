"""Tests for the drift regularisers of smoothrl.gan.trainer (thesis Section 4.6.3, Table 4.2, Eq B.245): the
coefficients against the table by hand, the regularised gradients against autodiff of the penalised losses written
out, the updates taking them, and the two-half estimator's expectation over every pair of halves against the
full-batch gradients. One compiled program (XLA's backend optimisations off: it runs for milliseconds)."""

from __future__ import annotations

import dataclasses
import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from smoothrl.games.game import Regulariser
from smoothrl.gan import losses, mixtures, networks, trainer
from smoothrl.networks import spectral, spectral_norm

jit = functools.partial(jax.jit, compiler_options={'xla_backend_optimization_level': 0})
TINY = networks.NetworkConfig(
  kind='mlp', data_shape=(2,), latent_dim=2, generator_widths=(6,), discriminator_widths=(6,)
)
RING = mixtures.ring()
RATES = (0.1, 0.4)  # (v_φh, v_θh)
H = 0.1  # the SGD step of the update checks
K = 4  # the population of the expectation check: K (data, latent) pairs, K² batches of two


def _config(**kw) -> trainer.GanConfig:
  return trainer.GanConfig(batch_size=8, method='none', drift_rates=RATES, **kw)


# Table 4.2 by hand at v_φh = 0.1, v_θh = 0.4: (c_φ,self, c_φ,int, c_θ,int, c_θ,self).
TABLE = [
  (dict(regulariser='cancel_interaction', update='simultaneous'), (0, 0.1 / 4, 0.4 / 4, 0)),
  (dict(regulariser='cancel_interaction', update='alternating'), (0, 0.1 / 4, -(2 * 0.1 - 0.4) / 4, 0)),
  (dict(regulariser='cancel_interaction', update='alternating', regulariser_players='discriminator'), (0, 0.025, 0, 0)),
  # Section 4.7's shared clock, alternating (Theorem 4.7.2): c_φ,int = v_θh/4, c_θ,int = −v_φh/4.
  (dict(regulariser='cancel_interaction', update='alternating', drift_clock='shared'), (0, 0.4 / 4, -0.1 / 4, 0)),
  (dict(regulariser='strengthen_self', update='simultaneous'), (0.1 / 4, 0, 0, 0.4 / 4)),
  (dict(regulariser='strengthen_self', update='alternating'), (0.1 / 4, 0, 0, 0.4 / 4)),  # m = k = 1
  (dict(regulariser='sga', regulariser_coefficient=1.0), (0, 0.5, 0.5, 0)),
  (dict(regulariser='consensus', regulariser_coefficient=0.3), (0.3, 0.3, 0.3, 0.3)),
  (dict(regulariser='locally_stable', regulariser_coefficient=0.2), (0, 0, 0.2, 0)),
  (dict(regulariser='ode_gan', regulariser_coefficient=0.2), (0, 0.2, 0, 0)),
  (dict(regulariser='consensus', regulariser_coefficient=0.3, regulariser_players='generator'), (0, 0, 0.3, 0.3)),
]


@pytest.mark.parametrize('fields, expected', TABLE)
def test_coefficients_against_table_4_2(fields, expected):
  config = _config(**fields)
  assert trainer.validate(config) == []
  np.testing.assert_allclose(tuple(trainer.regulariser_coefficients(config)), expected, rtol=1e-12, atol=1e-15)


def test_the_default_adds_nothing_and_bad_regulariser_fields_are_refused():
  assert trainer.GanConfig().regulariser == 'none'
  assert trainer.regulariser_coefficients(trainer.GanConfig()).is_zero()
  problems = lambda **kw: '; '.join(trainer.validate(trainer.GanConfig(**kw)))
  assert "gan.regulariser 'spectral' is unknown" in problems(regulariser='spectral')
  assert "'cancel_interaction' needs gan.drift_rates" in problems(regulariser='cancel_interaction')
  assert 'gan.drift_rates must be None or two' in problems(regulariser='strengthen_self', drift_rates=(0.1, 0.0))
  assert "'sga' needs gan.regulariser_coefficient" in problems(regulariser='sga')
  assert 'gan.batch_size must be even' in problems(regulariser='sga', regulariser_coefficient=1.0, batch_size=7)
  assert problems(regulariser='sga', regulariser_coefficient=1.0, batch_size=7, regulariser_halves=False) == ''
  assert 'adds no penalty' in problems(
    regulariser='locally_stable', regulariser_coefficient=1.0, regulariser_players='discriminator'
  )
  assert 'gan.drift_clock' in problems(drift_clock='wall')
  assert 'gan.regulariser_players' in problems(regulariser_players='critic')


def _sq(tree) -> jax.Array:
  return sum(jnp.vdot(x, x) for x in jax.tree.leaves(tree))


def _tree_np(tree):
  return jax.tree.map(np.asarray, tree)


@pytest.fixture(scope='module')
def computed():
  """The trainers' outputs and their references, from one compiled program."""
  nets = networks.make_networks(TINY)
  rng = np.random.default_rng(0)

  def draw(shapes):
    scale = lambda s: np.sqrt(s.shape[0]) if len(s.shape) > 1 else 3.0
    return jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s.shape) / scale(s), s.dtype), shapes)

  g_params = draw(jax.eval_shape(nets.generator.init, jax.random.PRNGKey(0)))
  d_params = draw(jax.eval_shape(nets.discriminator.init, jax.random.PRNGKey(0)))
  vectors = {s.name: jnp.asarray(rng.normal(size=s.input_shape), jnp.float32) for s in nets.discriminator.specs}
  vectors = {k: v / jnp.linalg.norm(v) for k, v in vectors.items()}
  real = jnp.asarray(RING.means[rng.integers(0, 8, 8)] + 0.1 * rng.normal(size=(8, 2)), jnp.float32)
  z_d, z_g = jnp.asarray(rng.normal(size=(2, 8, 2)), jnp.float32)
  sgd = optax.sgd(H)
  make = lambda config: trainer.make_trainer(nets, RING.sample, sgd, sgd, config)
  state = trainer.GanState(
    g_params, d_params, sgd.init(g_params), sgd.init(d_params), vectors, jnp.asarray([0, 1], jnp.uint32),
    jnp.zeros((), jnp.int32),
  )  # fmt: skip

  names = [s.name for s in nets.discriminator.specs]

  def normalised(d, sn: bool):  # Miyato et al.'s W / σ(W), σ differentiable, from the fixed vectors
    if not sn:
      return d
    return spectral_norm.normalise(
      d, spectral.sigmas_from_state(nets.discriminator.specs, d, vectors), names, always=True
    )

  def value(d, g, real, z, sn=False):  # E of Eq 4.4, written out
    q = normalised(d, sn)
    return losses.zero_sum_value(
      nets.discriminator.apply(q, real), nets.discriminator.apply(q, nets.generator.apply(g, z))
    )

  def penalised(c: Regulariser, loss: str, real, z, sn=False):
    """The penalised losses of Table 4.2 written out, (L_φ + R_φ)(φ, θ) and (L_θ + R_θ)(θ, φ), and R_φ, R_θ."""
    norms = lambda d, g: (_sq(jax.grad(value, 0)(d, g, real, z, sn)), _sq(jax.grad(value, 1)(d, g, real, z, sn)))
    r_phi = lambda d, g: c.phi_self * norms(d, g)[0] + c.phi_interaction * norms(d, g)[1]
    r_theta = lambda d, g: c.theta_interaction * norms(d, g)[0] + c.theta_self * norms(d, g)[1]

    def d_loss(d, g):
      return -value(d, g, real, z, sn) + r_phi(d, g)

    def g_loss(g, d):
      fake = nets.discriminator.apply(normalised(d, sn), nets.generator.apply(g, z))
      base = value(d, g, real, z, sn) if loss == 'saturating' else losses.generator_loss(fake, None, loss)
      return base + r_theta(d, g)

    return d_loss, g_loss, r_phi, r_theta

  exact = {
    'cancel_alternating_saturating': _config(regulariser='cancel_interaction', update='alternating', loss='saturating'),
  }
  exact = {name: dataclasses.replace(c, regulariser_halves=False) for name, c in exact.items()}
  # SN's σ(φ) inside E, the non-saturating generator loss and all four coefficients, with halves.
  halves = trainer.GanConfig(batch_size=2, method='sn', regulariser='consensus', regulariser_coefficient=0.3)
  pairs = np.asarray(list(itertools.product(range(K), repeat=2)))  # every ordered pair: (first half, second half)

  def program(state):
    out = {}
    for name, config in exact.items():
      gan, c = make(config), trainer.regulariser_coefficients(config)
      d_loss, g_loss, _, _ = penalised(c, config.loss, real, z_d)
      at = gan.losses_and_grads(state.g_params, state.d_params, state.spectral_state, real, z_d)
      reference = (jax.grad(d_loss)(state.d_params, state.g_params), jax.grad(g_loss)(state.g_params, state.d_params))
      out[name] = dict(at=at, reference=reference, e=value(state.d_params, state.g_params, real, z_d))
    # The alternating update: φ − h∇_φ(L_φ + R_φ), then θ − h∇_θ(L_θ + R_θ) at φ_{t+1} on the generator's latents.
    config = exact['cancel_alternating_saturating']
    new, logged = make(config).update(state, real, z_d, z_g)
    d_1 = jax.tree.map(lambda p, g: p - H * g, state.d_params, out['cancel_alternating_saturating']['reference'][0])
    g_loss_1 = penalised(trainer.regulariser_coefficients(config), config.loss, real, z_g)[1]
    g_1 = jax.tree.map(lambda p, g: p - H * g, state.g_params, jax.grad(g_loss_1)(state.g_params, d_1))
    out['update'] = dict(new=new, logged=logged, stepped=(d_1, g_1))
    gan = make(halves)
    at = lambda r, z: gan.losses_and_grads(state.g_params, state.d_params, state.spectral_state, r, z)
    every = jax.vmap(at)(real[:K][pairs], z_d[:K][pairs])
    c = trainer.regulariser_coefficients(halves)
    d_loss, g_loss, r_phi, r_theta = penalised(c, halves.loss, real[:K], z_d[:K], sn=True)
    d, g = state.d_params, state.g_params
    whole = dict(
      d_grads=jax.grad(d_loss)(d, g), g_grads=jax.grad(g_loss)(g, d), d_penalty=r_phi(d, g), g_penalty=r_theta(d, g),
      d_loss=-value(d, g, real[:K], z_d[:K], sn=True),
    )  # fmt: skip
    out['halves'] = dict(mean=jax.tree.map(lambda x: jnp.mean(x, axis=0), every), every=every, whole=whole)
    return out

  return _tree_np(state), _tree_np(jit(program)(state))


def _close(a, b, **kw):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, **kw), a, b)


def test_regularised_gradients_against_the_penalised_losses_written_out(computed):
  r = computed[1]['cancel_alternating_saturating']
  at, (d_reference, g_reference) = r['at'], r['reference']
  _close(at.d_grads, d_reference, rtol=2e-4, atol=1e-6)
  _close(at.g_grads, g_reference, rtol=2e-4, atol=1e-6)
  # The logged losses stay the unregularised ones: L_φ = −E and, for the saturating loss, L_θ = E.
  assert float(at.d_loss) == pytest.approx(-float(r['e']), rel=1e-6)
  assert float(at.g_loss) == pytest.approx(float(r['e']), rel=1e-6)
  assert float(at.d_penalty) > 0 and float(at.g_penalty) > 0  # c_φ,int = 0.025, c_θ,int = 0.05 on squared norms


def test_the_alternating_update_takes_the_regularised_gradients(computed):
  r = computed[1]['update']
  d_1, g_1 = r['stepped']
  _close(r['new'].d_params, d_1, rtol=2e-4, atol=1e-6)
  _close(r['new'].g_params, g_1, rtol=2e-4, atol=1e-6)
  assert {'d_penalty', 'g_penalty'} <= set(r['logged'])
  at = computed[1]['cancel_alternating_saturating']['at']
  assert float(r['logged']['d_penalty']) == pytest.approx(float(at.d_penalty), rel=1e-5)
  # The generator's penalty is taken at φ_{t+1} on its own latents, not where the discriminator's was.
  assert abs(float(r['logged']['g_penalty']) - float(at.g_penalty)) > 1e-6


def test_the_two_half_estimator_averages_to_the_penalised_full_batch_gradients(computed):
  r = computed[1]['halves']
  mean, whole, every = r['mean'], r['whole'], r['every']
  # Over every ordered pair of K examples as the two halves, the value aᵀb averages to ‖∇E‖² of all K and the
  # gradient 2(∂a)ᵀb to ∇‖∇E‖² (Eq B.245), so the regularised gradients average to those of the penalised losses
  # of all K written out (SN's W/σ(W) inside E; consensus: ζ = 0.3 on all four norms).
  for field in ('d_penalty', 'g_penalty', 'd_loss'):
    assert float(getattr(mean, field)) == pytest.approx(float(whole[field]), rel=1e-4, abs=1e-7), field
  _close(mean.d_grads, whole['d_grads'], rtol=1e-4, atol=1e-6)
  _close(mean.g_grads, whole['g_grads'], rtol=1e-4, atol=1e-6)
  # One pair alone is not the full-batch value: the estimate varies from pair to pair.
  assert float(np.std(every.d_penalty)) > 1e-2 * abs(float(whole['d_penalty']))
