"""SN, DIVOUT, DIVGRAD and MULEPS on the critic, and the regularisers: checked against exact references."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from smoothrl.agents import dqn
from smoothrl.agents.replay import Transitions
from smoothrl.networks import critics, smoothness, spectral, spectral_norm
from smoothrl.networks import method as method_lib

NET = critics.NetworkConfig()  # Table E.3: conv_0, conv_1, hidden, out
OBS_SHAPE = (10, 10, 4)


def _critic(method='sn', layers=(-2,), **fields):
  cfg = method_lib.MethodConfig(method=method, layers=layers, **fields)
  return method_lib.make_critic(NET, cfg, OBS_SHAPE, 6)


def _converged(critic, scale=3.0, seed=0):
  """Params with large weights (so sigma > 1) and spectral vectors iterated to convergence."""
  obs = jnp.zeros(OBS_SHAPE)
  params, net_state, vectors = critic.init(jax.random.PRNGKey(seed), obs)
  params = jax.tree.map(lambda p: p * scale, params)
  advance = jax.jit(critic.advance)
  for _ in range(300):
    vectors = advance(params, vectors)
  return params, net_state, vectors


def _exact(params, name):
  spec = {s.name: s for s in critics.layer_specs(NET, OBS_SHAPE)}[name]
  return float(spectral.exact_sigma(spec, params[name]['w']))


def _states(n=8, seed=1):
  return jnp.asarray(np.random.default_rng(seed).integers(0, 2, (n, *OBS_SHAPE)), jnp.float32)


def _normalised_apply(critic, params, net_state, vectors, obs, lipschitz=1.0, always=False):
  """The plain network on weights divided by hand-computed exact sigmas."""
  plain = method_lib.make_critic(NET, method_lib.MethodConfig(method='none'), OBS_SHAPE, 6)
  manual = dict(params)
  for name in critic.selected:
    scale = _exact(params, name) / lipschitz
    manual[name] = dict(params[name], w=params[name]['w'] / (scale if always else max(scale, 1.0)))
  return plain.apply(manual, net_state, vectors, obs).q


@pytest.mark.parametrize('layers', [(-2,), (-2, -3), (-1, -2, -3, -4)])
@pytest.mark.parametrize('lipschitz', [1.0, 2.5])
def test_sn_layers_have_sigma_at_most_k_and_match_exact_normalisation(layers, lipschitz):
  critic = _critic(layers=layers, lipschitz=lipschitz)
  params, net_state, vectors = _converged(critic)
  sigmas = spectral.sigmas_from_state(
    [s for s in critic.specs if s.name in critic.selected], params, {n: vectors[n] for n in critic.selected}
  )
  for name in critic.selected:
    assert float(sigmas[name]) == pytest.approx(_exact(params, name), rel=1e-3)
    scale = max(float(sigmas[name]) / lipschitz, 1.0)
    assert _exact(params, name) / scale <= lipschitz * (1 + 1e-3)
  obs = _states()
  got = critic.apply(params, net_state, vectors, obs).q
  want = _normalised_apply(critic, params, net_state, vectors, obs, lipschitz)
  np.testing.assert_allclose(got, want, rtol=2e-3, atol=1e-4)


def test_sn_only_if_sigma_exceeds_k_unless_always():
  critic = _critic(layers=(-2,), lipschitz=100.0)  # sigma < K: the layer is left alone
  params, net_state, vectors = _converged(critic)
  plain = _critic(method='none')
  obs = _states()
  np.testing.assert_allclose(
    critic.apply(params, net_state, vectors, obs).q, plain.apply(params, net_state, vectors, obs).q, rtol=1e-6
  )
  always = _critic(layers=(-2,), lipschitz=100.0, sn_always=True)  # divides by sigma / K: sigma becomes K
  got = always.apply(params, net_state, vectors, obs).q
  np.testing.assert_allclose(
    got, _normalised_apply(always, params, net_state, vectors, obs, 100.0, True), rtol=2e-3, atol=1e-4
  )


@pytest.mark.parametrize('always', [False, True])
def test_sn_outputs_equal_the_plain_critic_on_normalised_weights(always):
  critic = _critic(layers=(-1, -2, -3), lipschitz=0.5, sn_always=always)
  params, net_state, vectors = _converged(critic)
  sigmas = spectral.sigmas_from_state(critic.specs, params, vectors)
  normalised = spectral_norm.normalise(params, sigmas, critic.selected, 0.5, always)
  for name in critic.selected:
    want = params[name]['w'] / (sigmas[name] / 0.5 if always else max(sigmas[name] / 0.5, 1.0))
    np.testing.assert_allclose(normalised[name]['w'], want, rtol=1e-6)
  np.testing.assert_array_equal(normalised['conv_0']['w'], params['conv_0']['w'])
  obs = _states()
  np.testing.assert_allclose(
    critic.apply(params, net_state, vectors, obs).q,
    _critic(method='none').apply(normalised, net_state, vectors, obs).q,
    rtol=1e-4,
    atol=1e-5,
  )


@pytest.mark.parametrize('through', [False, True])
def test_gradient_through_sigma_only_when_asked(through):
  critic = _critic(layers=(-2,), sn_grad_through_sigma=through)
  params, net_state, vectors = _converged(critic)
  obs = _states()
  loss = lambda p: jnp.sum(critic.apply(p, net_state, vectors, obs).q ** 2)
  grad = jax.grad(loss)(params)['hidden']['w']
  # With sigma held constant, d/dW f(W / s) = f'(W / s) / s with s = sigma.
  s = float(spectral.sigmas_from_state([critic.specs[2]], params, {'hidden': vectors['hidden']})['hidden'])
  plain = _critic(method='none')
  scaled = dict(params, hidden=dict(params['hidden'], w=params['hidden']['w'] / s))
  constant = jax.grad(lambda p: jnp.sum(plain.apply(p, net_state, vectors, obs).q ** 2))(scaled)['hidden']['w'] / s
  if through:
    assert float(jnp.max(jnp.abs(grad - constant))) > 1e-3 * float(jnp.max(jnp.abs(constant)))
  else:  # equal up to float rounding (the critic divides the layer's output rather than its weights)
    np.testing.assert_allclose(grad, constant, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(constant))))


def test_divout_is_plain_output_over_rho():
  critic = _critic(method='divout', layers=(-2, -3))
  params, net_state, vectors = _converged(critic)
  obs = _states()
  out = critic.apply(params, net_state, vectors, obs)
  plain = _critic(method='none').apply(params, net_state, vectors, obs).q
  rho = _exact(params, 'hidden') * _exact(params, 'conv_1')
  assert float(out.rho) == pytest.approx(rho, rel=1e-3)
  np.testing.assert_allclose(out.q, plain / out.rho, rtol=1e-6)
  # rho is held constant: the gradient is the plain gradient over rho.
  g = jax.grad(lambda p: jnp.sum(critic.apply(p, net_state, vectors, obs).q))(params)['conv_0']['w']
  g_plain = jax.grad(lambda p: jnp.sum(_critic(method='none').apply(p, net_state, vectors, obs).q))(params)
  np.testing.assert_allclose(g, g_plain['conv_0']['w'] / out.rho, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize('method', ['divgrad', 'muleps'])
def test_divgrad_and_muleps_leave_the_critic_unchanged_and_report_rho(method):
  critic = _critic(method=method, layers=(-2,))
  params, net_state, vectors = _converged(critic)
  obs = _states()
  out = critic.apply(params, net_state, vectors, obs)
  np.testing.assert_allclose(out.q, _critic(method='none').apply(params, net_state, vectors, obs).q, rtol=1e-6)
  assert float(out.rho) == pytest.approx(_exact(params, 'hidden'), rel=1e-3)


def _batch(n=16):
  rng = np.random.default_rng(0)
  obs = rng.integers(0, 2, (n + 1, *OBS_SHAPE)).astype(np.uint8)
  return Transitions(
    obs[:-1],
    rng.integers(0, 6, n).astype(np.int32),
    rng.normal(size=n).astype(np.float32),
    np.ones(n, np.float32),
    obs[1:],
  )


def test_divgrad_agent_update_is_adam_on_gradients_over_rho():
  """One DQN update with DIVGRAD equals the plain agent's update with its gradients divided by rho (Eq 7.28)."""
  cfg = dqn.DQNConfig(learning_rate=1e-3)
  div = dqn.make_dqn(cfg, _critic(method='divgrad'), 'divgrad', 6)
  state = div.init(jax.random.PRNGKey(0), jnp.zeros(OBS_SHAPE, jnp.uint8))
  batch = _batch()
  new, metrics = jax.jit(div.learner_step)(state, batch)
  rho = float(metrics['rho'])
  assert rho > 0 and rho != pytest.approx(1.0)
  # The same gradients through a plain Adam after dividing by rho.
  from smoothrl import optimizers  # pylint: disable=g-import-not-at-top

  spectral_state = div.critic.advance(state.params, state.spectral)
  grads = jax.grad(
    lambda p: jnp.mean(
      jnp.square(
        jnp.take_along_axis(
          div.critic.apply(p, state.net_state, spectral_state, batch.obs).q, batch.action[:, None], -1
        )[:, 0]
        - dqn.td_targets(
          batch.reward,
          batch.discount,
          div.critic.apply(state.target_params, state.net_state, state.target_spectral, batch.next_obs).q,
          cfg.gamma,
        )
      )
    )
  )(state.params)
  adam = optimizers.adam(cfg.learning_rate, cfg.adam_b1, cfg.adam_b2, cfg.adam_eps)
  updates, _ = adam.update(jax.tree.map(lambda g: g / rho, grads), adam.init(state.params), state.params)
  want = jax.tree.map(lambda p, u: p + u, state.params, updates)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7), new.params, want)


def test_acting_and_target_use_the_normalised_weights():
  critic = _critic(layers=(-2,))
  agent = dqn.make_dqn(dqn.DQNConfig(), critic, 'sn', 6)
  state = agent.init(jax.random.PRNGKey(0), jnp.zeros(OBS_SHAPE, jnp.uint8))
  params, net_state, vectors = _converged(critic)
  state = state._replace(params=params, spectral=vectors, target_params=params, target_spectral=vectors)
  obs = _states()
  want = _normalised_apply(critic, params, net_state, vectors, obs)
  np.testing.assert_allclose(agent.q_values(state, obs), want, rtol=2e-3, atol=1e-4)
  greedy = int(jnp.argmax(want[0]))
  assert int(agent.act(state, jax.random.PRNGKey(1), obs[0], 0.0)) == greedy


W = np.array(
  [[1.0, -2.0, 0.5], [0.0, 3.0, 1.0], [2.0, 1.0, -1.0], [-1.0, 0.0, 2.0]], np.float32
)  # (state 4, actions 3)


def test_gradient_penalties_on_a_linear_critic_by_hand():
  q_fn = lambda s: s @ W  # dQ_i/ds = W[:, i] for every state
  states = jnp.asarray(np.random.default_rng(0).normal(size=(5, 4)), jnp.float32)
  col_norms = np.linalg.norm(W, axis=0)
  np.testing.assert_allclose(
    smoothness.gradient_penalty(q_fn, states, 'norm_of_sum'), np.linalg.norm(W.sum(axis=1)), rtol=1e-6
  )
  np.testing.assert_allclose(smoothness.gradient_penalty(q_fn, states, 'sum_of_norms'), col_norms.sum(), rtol=1e-6)
  best = np.argmax(np.asarray(states) @ W, axis=1)
  np.testing.assert_allclose(
    smoothness.gradient_penalty(q_fn, states, 'norm_of_max'), col_norms[best].mean(), rtol=1e-6
  )
  np.testing.assert_allclose(smoothness.max_jacobian_norm(q_fn, states), col_norms.max(), rtol=1e-6)
  with pytest.raises(ValueError, match='unknown gradient penalty'):
    smoothness.gradient_penalty(q_fn, states, 'l2')


def test_gradient_penalty_enters_the_loss():
  batch = _batch()
  critic = _critic(method='none')
  base = dqn.make_dqn(dqn.DQNConfig(), critic, 'none', 6)
  reg = method_lib.RegulariserConfig(gradient_penalty='sum_of_norms', penalty_coef=0.5)
  penalised = dqn.make_dqn(dqn.DQNConfig(), critic, 'none', 6, reg)
  state = base.init(jax.random.PRNGKey(0), jnp.zeros(OBS_SHAPE, jnp.uint8))
  _, m0 = base.learner_step(state, batch)
  _, m1 = penalised.learner_step(state, batch)
  q_fn = lambda obs: critic.apply(state.params, state.net_state, state.spectral, obs, True).q
  expected = 0.5 * smoothness.gradient_penalty(q_fn, jnp.asarray(batch.obs), 'sum_of_norms')
  np.testing.assert_allclose(m1['loss'] - m0['loss'], expected, rtol=1e-4)


def test_batch_norm_follows_every_hidden_relu_and_learns_statistics():
  cfg = method_lib.MethodConfig()
  critic = method_lib.make_critic(NET, cfg, OBS_SHAPE, 6, batch_norm=True)
  params, net_state, _ = critic.init(jax.random.PRNGKey(0), jnp.zeros(OBS_SHAPE))
  assert {'bn_conv_0', 'bn_conv_1', 'bn_hidden'} <= {k.split('/')[0] for k in params}
  agent = dqn.make_dqn(dqn.DQNConfig(), critic, 'none', 6)
  state = agent.init(jax.random.PRNGKey(0), jnp.zeros(OBS_SHAPE, jnp.uint8))
  new, _ = jax.jit(agent.learner_step)(state, _batch())
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), new.net_state, state.net_state)
  assert any(jax.tree.leaves(changed))


def test_measure_reports_every_layer():
  critic = _critic(layers=(-2,))
  params, _, vectors = _converged(critic)
  sigmas, vectors = jax.jit(critic.measure)(params, vectors)
  assert set(sigmas) == {'conv_0', 'conv_1', 'hidden', 'out'}
  for _ in range(60):
    sigmas, vectors = jax.jit(critic.measure)(params, vectors)
  for name, value in sigmas.items():
    assert float(value) == pytest.approx(_exact(params, name), rel=1e-3)


def test_layer_selection_errors_name_the_layers():
  with pytest.raises(ValueError, match=r'-4 = conv_0, -3 = conv_1, -2 = hidden, -1 = out'):
    critics.resolve_layers(NET, (7,))
  for bad in [(0,), (-5,), (-2, -2), ()]:
    with pytest.raises(ValueError, match='invalid layer selection'):
      critics.resolve_layers(NET, bad)
  assert critics.resolve_layers(NET, (-2, -3)) == ('conv_1', 'hidden')
  deeper = dataclasses.replace(NET, conv_layers=4)
  assert critics.resolve_layers(deeper, (-6,)) == ('conv_0',)


def test_layer_specs_follow_the_valid_padding_shapes():
  specs = critics.layer_specs(NET, OBS_SHAPE)
  assert [(s.name, s.kind, s.input_shape) for s in specs] == [
    ('conv_0', 'conv', (10, 10, 4)),
    ('conv_1', 'conv', (8, 8, 16)),
    ('hidden', 'dense', (576,)),
    ('out', 'dense', (128,)),
  ]
  with pytest.raises(ValueError, match='leave no spatial extent'):
    critics.layer_specs(dataclasses.replace(NET, conv_layers=5), OBS_SHAPE)
