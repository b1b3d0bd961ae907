"""The thesis' formulas checked against independent references: the smoothness measure (Appendix E.2.2), the learner's
power iteration and the target network's vectors (Section 7.3), the epsilon-greedy distribution (Eq 7.6) and the
number of states the smoothness of an evaluation is measured on."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from smoothrl import envs
from smoothrl.agents import c51, dqn
from smoothrl.agents.replay import Transitions
from smoothrl.launch.run import config as config_lib
from smoothrl.launch.run import host
from smoothrl.launch.run.files import read_metrics
from smoothrl.networks import critics, smoothness, spectral
from smoothrl.networks import method as method_lib

CHAIN_NET = critics.NetworkConfig(conv_layers=0, hidden=16)  # hidden (-2, 4 -> 16), out (-1, 16 -> actions)


# ----------------------------------------------------------------------------
# The smoothness measure: max over states s and actions i of ||dQ_i/ds||_2 (Eq E.1).
# ----------------------------------------------------------------------------


def _conv_critic_q_fn():
  """A non-linear critic (conv, ReLU, dense, ReLU, out) with nonzero biases, and states on which it is not linear."""
  net = critics.NetworkConfig(conv_layers=1, conv_channels=4, hidden=16)
  critic = method_lib.make_critic(net, method_lib.MethodConfig(), (5, 5, 2), 3)
  rng = np.random.default_rng(0)
  states = rng.normal(size=(6, 5, 5, 2)).astype(np.float32)
  params, net_state, vectors = critic.init(jax.random.PRNGKey(0), jnp.asarray(states[0]))
  # Nonzero biases, so that the ReLUs' patterns, and the Jacobians, differ between states.
  params = jax.tree.map(lambda p: p + 0.3 * jnp.asarray(rng.normal(size=p.shape), p.dtype) * (p.ndim == 1), params)
  # States of different sizes: near zero the biases set the pattern, far from it the weights do.
  states = states * np.array([0.05, 0.2, 1.0, 1.0, 3.0, 1.0], np.float32)[:, None, None, None]
  return (lambda obs: critic.apply(params, net_state, vectors, obs).q), states


def _reference_norms(q_fn, states):
  """||dQ_i/ds|| per state and action from `jax.jacobian` of one state at a time and `np.linalg.norm`: the
  Frobenius norm of dQ_i/ds over the state's entries, the thesis' 'Euclidean norm of the Jacobian' (E.2.2)."""
  norms = []
  for s in states:
    jac = np.asarray(jax.jacobian(lambda x: q_fn(x[None])[0])(jnp.asarray(s)))  # (actions, *state_shape)
    norms.append([np.linalg.norm(jac[i]) for i in range(jac.shape[0])])  # ord=None: the 2-norm of the flattening
  return np.asarray(norms)


def test_smoothness_measure_matches_per_state_jacobians_of_a_relu_conv_critic():
  q_fn, states = _conv_critic_q_fn()
  want = _reference_norms(q_fn, states)
  assert want.shape == (6, 3)
  # States on which the maximum and the mean over states and actions differ clearly, so a mean would not pass.
  assert want.max() > 1.4 * want.mean() and want.max() > 1.4 * want.max(axis=1).mean()
  np.testing.assert_allclose(smoothness.jacobian_norms(q_fn, jnp.asarray(states)), want, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(float(smoothness.max_jacobian_norm(q_fn, jnp.asarray(states))), want.max(), rtol=1e-5)
  # The measure is per action, not of the whole Jacobian: the norm over actions as well is larger.
  whole = max(np.linalg.norm(row) for row in want)
  assert float(smoothness.max_jacobian_norm(q_fn, jnp.asarray(states))) < 0.9 * whole


# ----------------------------------------------------------------------------
# The learner's power iteration, and the target network's vectors.
# ----------------------------------------------------------------------------


def _sn_agent(update_period=4, target_update_period=12, warmup_steps=8, on_acting=False, power_iterations=1):
  """DQN with SN[-2] on the chain's dense critic: the vector of 'hidden' advances, the one of 'out' is unused."""
  method = method_lib.MethodConfig(
    method='sn', layers=(-2,), power_iterations=power_iterations, power_iteration_on_acting=on_acting
  )
  critic = method_lib.make_critic(CHAIN_NET, method, (4,), 2)
  config = dqn.DQNConfig(
    update_period=update_period,
    target_update_period=target_update_period,
    warmup_steps=warmup_steps,
    learning_rate=3e-2,
  )
  agent = dqn.make_dqn(config, critic, 'sn', 2)
  return agent, agent.init(jax.random.PRNGKey(0), jnp.eye(4)[0]), critic


def _batch(size=16, seed=0):
  rng = np.random.default_rng(seed)
  eye = np.eye(4, dtype=np.float32)
  return Transitions(
    eye[rng.integers(0, 4, size)],
    rng.integers(0, 2, size).astype(np.int32),
    rng.normal(size=size).astype(np.float32),
    np.ones(size, np.float32),
    eye[rng.integers(0, 4, size)],
  )


def _hidden_spec(critic):
  return next(s for s in critic.specs if s.name == 'hidden')


def test_each_learner_step_takes_one_power_iteration_step_on_the_parameters_it_starts_from():
  agent, state, critic = _sn_agent()
  step = jax.jit(agent.learner_step)
  spec = _hidden_spec(critic)
  initial = np.asarray(state.spectral['hidden'])
  v = state.spectral['hidden']
  for k in range(1, 6):
    w = state.params['hidden']['w']  # the weights this update starts from
    v = spectral.power_iteration(spec, w, v, 1)
    state, _ = step(state, _batch(seed=k))
    np.testing.assert_allclose(state.spectral['hidden'], v, rtol=1e-5, atol=1e-6, err_msg=f'after update {k}')
    assert not bool(jnp.all(state.params['hidden']['w'] == w)), 'the weights should change between updates'
  assert np.linalg.norm(np.asarray(state.spectral['hidden']) - initial) > 1e-2
  # The unselected layer's vector is not iterated by the learner.
  np.testing.assert_array_equal(state.spectral['out'], agent.init(jax.random.PRNGKey(0), jnp.eye(4)[0]).spectral['out'])


def test_learner_sigma_converges_to_the_exact_spectral_norm():
  agent, state, critic = _sn_agent()
  agent = agent._replace(learner_step=jax.jit(agent.learner_step))
  spec = _hidden_spec(critic)
  exact = lambda s: float(np.linalg.norm(np.asarray(s.params['hidden']['w']), 2))
  estimate = lambda s: float(spectral.sigma(spec, s.params['hidden']['w'], s.spectral['hidden']))
  first_error = abs(estimate(state) - exact(state)) / exact(state)
  for k in range(40):
    state, _ = agent.learner_step(state, _batch(seed=k))
  assert first_error > 0.05  # a random start vector is far from the top singular vector
  assert abs(estimate(state) - exact(state)) / exact(state) < 2e-3


def test_target_spectral_vectors_are_copied_at_each_target_refresh_only():
  agent, state, _ = _sn_agent(update_period=4, target_update_period=12)  # a refresh every 3 updates
  step = jax.jit(agent.learner_step)
  initial = np.asarray(state.target_spectral['hidden'])
  np.testing.assert_array_equal(initial, state.spectral['hidden'])
  last_copy = initial
  for i in range(1, 8):
    state, _ = step(state, _batch(seed=i))
    online, target = np.asarray(state.spectral['hidden']), np.asarray(state.target_spectral['hidden'])
    assert not np.array_equal(online, last_copy), f'the online vector should advance at update {i}'
    if i % 3 == 0:
      np.testing.assert_array_equal(target, online, err_msg=f'target vectors not refreshed at update {i}')
      last_copy = online
    else:
      np.testing.assert_array_equal(target, last_copy, err_msg=f'target vectors should be frozen after update {i}')
  assert not np.array_equal(last_copy, initial)


# ----------------------------------------------------------------------------
# Power iteration on acting passes (MethodConfig.power_iteration_on_acting).
# ----------------------------------------------------------------------------


@pytest.mark.parametrize('power_iterations', [1, 2])
def test_power_iteration_on_acting_replays_the_acting_passes_on_the_weights_they_saw(power_iterations):
  """update_period 4, warm-up 10: the first update follows 12 acting steps on the initial weights, each later one 4
  on the weights of the update before; every pass, acting or learning, takes `power_iterations` steps."""
  agent, state, critic = _sn_agent(update_period=4, warmup_steps=10, on_acting=True, power_iterations=power_iterations)
  plain, plain_state, _ = _sn_agent(update_period=4, warmup_steps=10, power_iterations=power_iterations)
  spec = _hidden_spec(critic)
  start = plain_state.spectral['hidden']  # the same key: the vector before any pass
  np.testing.assert_array_equal(state.params['hidden']['w'], plain_state.params['hidden']['w'])
  # init replays the warm-up's acting passes but the last update_period (the first update replays those): 8 passes.
  v = spectral.power_iteration(spec, state.params['hidden']['w'], start, 8 * power_iterations)
  np.testing.assert_allclose(state.spectral['hidden'], v, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(state.target_spectral['hidden'], state.spectral['hidden'])
  step = jax.jit(agent.learner_step)
  for k in range(1, 4):
    # 4 acting passes and the update's own, all on the weights this update starts from.
    v = spectral.power_iteration(spec, state.params['hidden']['w'], v, 5 * power_iterations)
    state, _ = step(state, _batch(seed=k))
    np.testing.assert_allclose(state.spectral['hidden'], v, rtol=1e-5, atol=1e-6, err_msg=f'after update {k}')
  # Off, init leaves the vector as drawn and an update advances it one pass.
  np.testing.assert_array_equal(plain_state.spectral['hidden'], start)
  after, _ = jax.jit(plain.learner_step)(plain_state, _batch(seed=1))
  np.testing.assert_allclose(
    after.spectral['hidden'],
    spectral.power_iteration(spec, plain_state.params['hidden']['w'], start, power_iterations),
    rtol=1e-5,
    atol=1e-6,
  )


def test_acting_passes_count_what_the_runners_act_before_each_update():
  on = method_lib.make_critic(CHAIN_NET, method_lib.MethodConfig(method='sn', power_iteration_on_acting=True), (4,), 2)
  off = method_lib.make_critic(CHAIN_NET, method_lib.MethodConfig(method='sn'), (4,), 2)
  cfg = dqn.DQNConfig()  # Table E.1: update every 4 steps, warm-up 5,000: the first update at step 5,004
  assert dqn.acting_passes(cfg, on) == (4, 5_000)
  assert dqn.acting_passes(dqn.DQNConfig(warmup_steps=10, update_period=4), on) == (4, 8)  # first update at 12
  assert dqn.acting_passes(cfg, off) == (0, 0)


def test_c51_advances_on_acting_passes_too():
  method = method_lib.MethodConfig(method='sn', layers=(-2,), power_iteration_on_acting=True)
  critic = method_lib.make_critic(CHAIN_NET, method, (4,), 2 * 5)
  cfg = c51.C51Config(num_atoms=5, v_min=0.0, v_max=2.0, update_period=2, warmup_steps=4)
  agent = c51.make_c51(cfg, critic, 'sn', 2)
  state = agent.init(jax.random.PRNGKey(0), jnp.eye(4)[0])
  spec = _hidden_spec(critic)
  start = critic.init(jax.random.PRNGKey(0), jnp.eye(4)[0])[2]['hidden']  # dqn.init's key goes to critic.init
  v = spectral.power_iteration(spec, state.params['hidden']['w'], start, 4)  # warm-up: 6 acting steps, 2 replayed
  np.testing.assert_allclose(state.spectral['hidden'], v, rtol=1e-5, atol=1e-6)
  v = spectral.power_iteration(spec, state.params['hidden']['w'], v, 3)
  state, _ = jax.jit(agent.learner_step)(state, _batch())
  np.testing.assert_allclose(state.spectral['hidden'], v, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------
# The epsilon-greedy action distribution.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize('epsilon', [0.2, 0.7])
def test_epsilon_greedy_distribution_is_greedy_plus_uniform_exploration(epsilon):
  """P(a) = (1 - eps) [a = greedy] + eps / |A|: a uniform action with probability eps, as snrl and Dopamine act.

  (Thesis Eq 7.6 writes 1 - eps for the greedy action and eps / (|A| - 1) for the others; with 5 actions and 20,000
  draws this test tells the two apart, as it does swapping eps and 1 - eps or never exploring.)
  """
  num_actions, draws = 5, 20_000
  critic = method_lib.make_critic(CHAIN_NET, method_lib.MethodConfig(), (4,), num_actions)
  agent = dqn.make_dqn(dqn.DQNConfig(), critic, 'none', num_actions)
  state = agent.init(jax.random.PRNGKey(0), jnp.eye(4)[0])
  obs = jnp.eye(4)[2]
  greedy = int(jnp.argmax(agent.q_values(state, obs[None])[0]))
  keys = jax.random.split(jax.random.PRNGKey(7), draws)
  actions = jax.jit(jax.vmap(lambda k: agent.act(dqn.actor_state(state), k, obs, jnp.float32(epsilon))))(keys)
  counts = np.bincount(np.asarray(actions), minlength=num_actions)
  probs = np.full(num_actions, epsilon / num_actions)
  probs[greedy] += 1.0 - epsilon
  chi2 = float(np.sum((counts - draws * probs) ** 2 / (draws * probs)))
  assert chi2 < stats.chi2.ppf(0.999, num_actions - 1), (counts, draws * probs)
  thesis_eq_7_6 = np.where(np.arange(num_actions) == greedy, 1.0 - epsilon, epsilon / (num_actions - 1))
  assert float(np.sum((counts - draws * thesis_eq_7_6) ** 2 / (draws * thesis_eq_7_6))) > stats.chi2.ppf(0.999, 4)


# ----------------------------------------------------------------------------
# The number of states the smoothness of an evaluation is measured on (TrainConfig.smoothness_states).
# ----------------------------------------------------------------------------


def _spy_on_smoothness(monkeypatch):
  """Records the shape of the states every smoothness measure of `host` sees, and the values it returns."""
  seen = []
  real = host.smoothness_fn

  def spy(agent):
    measure = real(agent)

    def recorded(actor, states):
      value = measure(actor, states)
      seen.append((np.shape(states), float(value)))
      return value

    return recorded

  monkeypatch.setattr(host, 'smoothness_fn', spy)
  return seen


def test_evaluation_smoothness_uses_smoothness_states_states(tmp_path, monkeypatch):
  seen = _spy_on_smoothness(monkeypatch)
  cfg = config_lib.replace(
    config_lib.TrainConfig(
      env='chain/4',
      out=str(tmp_path),
      steps=120,
      eval_period=120,
      eval_steps=60,
      smoothness_states=7,
      log_period=40,
      sigma_log_period=40,
      checkpoint_period=0,
    ),
    **{
      'network.conv_layers': 0,
      'network.hidden': 8,
      'dqn.warmup_steps': 40,
      'dqn.epsilon_decay_steps': 80,
      'dqn.batch_size': 8,
      'dqn.replay_capacity': 200,
    },
  )
  host.train(cfg, show_progress=False)
  evals = list(read_metrics(tmp_path / 'metrics.jsonl', 'eval'))
  assert [shape for shape, _ in seen] == [(7, 4)]  # 7 of the 60 visited states, one-hot over the chain's 4
  assert len(evals) == 1 and evals[0]['smoothness'] == pytest.approx(seen[0][1])


def test_evaluate_measures_a_uniform_sample_of_the_visited_states_or_all_of_them():
  cfg = config_lib.replace(config_lib.TrainConfig(env='chain/4'), **{'network.conv_layers': 0, 'network.hidden': 8})
  env = envs.make(cfg.env, seed=0)
  agent = host.build_agent(cfg, env)
  state = agent.init(jax.random.PRNGKey(0), jnp.asarray(env.reset().observation))
  acting = host._Acting(agent, lambda t: jnp.float32(1.0))  # pylint: disable=protected-access
  measured = []
  measure = lambda actor, states: measured.append(np.asarray(states)) or 0.5
  for num_states, want in ((5, 5), (30, 30), (100, 30)):
    record = host.evaluate(state, env, 30, acting, jax.random.PRNGKey(1), measure, np.random.default_rng(0), num_states)
    assert measured[-1].shape == (want, 4) and record['smoothness'] == 0.5
    assert np.all(measured[-1].sum(axis=1) == 1.0)  # visited chain states
  # The measure itself is the maximum over those states (Eq E.1).
  real = host.smoothness_fn(agent)
  q_fn = lambda o: agent.q_values(dqn.actor_state(state), o)
  np.testing.assert_allclose(
    float(real(dqn.actor_state(state), jnp.asarray(measured[-1]))),
    _reference_norms(q_fn, measured[-1]).max(),
    rtol=1e-5,
  )


def test_validate_checks_the_new_options():
  config_lib.validate(config_lib.replace(config_lib.TrainConfig(), **{'method.power_iteration_on_acting': True}))
  for fields, message in (
    ({'network.obs_scale': 0.0}, 'network.obs_scale must be a positive number'),
    ({'network.obs_scale': '1/255'}, 'network.obs_scale must be a positive number'),
    ({'method.power_iteration_on_acting': 'yes'}, 'power_iteration_on_acting must be true'),
  ):
    with pytest.raises(config_lib.ConfigError, match=message):
      config_lib.validate(config_lib.replace(config_lib.TrainConfig(), **fields))
