"""C51: the projection and loss by hand, expected values, DIVOUT as a softmax temperature, and learning a chain."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from smoothrl import envs
from smoothrl.agents import c51, dqn
from smoothrl.agents.replay import ReplayBuffer, Transitions
from smoothrl.networks import critics, smoothness, spectral
from smoothrl.networks import method as method_lib

CHAIN_NET = critics.NetworkConfig(conv_layers=0, hidden=16)
_loss = jax.jit(c51.categorical_loss)
_loss_grad = jax.jit(jax.grad(c51.categorical_loss))


def _softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _project(support, reward, discount, probs):
  """Bellemare et al. (2017) Eq 7 in numpy: probs on r + discount * z, projected onto z."""
  shifted = np.clip(reward + discount * support, support[0], support[-1])
  weights = np.clip(1.0 - np.abs(shifted[:, None] - support[None, :]) / (support[1] - support[0]), 0.0, 1.0)
  return probs @ weights


def _targets_from_gradient(logits, actions, rewards, discounts, target_logits, support):
  """The projected targets, read off the loss gradient: d CE / d logits = (softmax(logits) - target) / B."""
  batch = len(actions)
  grad = _loss_grad(logits, actions, rewards, discounts, target_logits, support)
  taken = np.arange(batch), np.asarray(actions)
  return _softmax(np.asarray(logits))[taken] - batch * np.asarray(grad)[taken]


def test_config_extends_dqn_config():
  base = {f.name: f.default for f in dataclasses.fields(dqn.DQNConfig)}
  cfg = c51.C51Config()
  assert {k: getattr(cfg, k) for k in base} == base
  assert (cfg.num_atoms, cfg.v_min, cfg.v_max) == (51, -10.0, 10.0)
  np.testing.assert_allclose(c51.atoms(cfg)[:3], [-10.0, -9.6, -9.2], rtol=1e-6)
  with pytest.raises(ValueError, match='v_min < v_max'):
    c51.C51Config(v_min=1.0, v_max=1.0)
  with pytest.raises(ValueError, match='at least 2 atoms'):
    c51.C51Config(num_atoms=1)


def test_projection_and_loss_by_hand():
  """Support z = (-1, 0, 1); three transitions whose shifted atoms fall between atoms, on one, and off the support."""
  z = jnp.array([-1.0, 0.0, 1.0])
  log = lambda *p: np.log(np.array(p, np.float32))
  # Transition 0: r = 0.25, gamma * discount = 0.5. At s' action 0 has p = (1/4, 1/4, 1/2), mean 1/4, and action 1
  # has p = (1/2, 1/4, 1/4), mean -1/4, so a* = 0. Its atoms move to (-0.25, 0.25, 0.75):
  #   -0.25 -> 1/4 on -1, 3/4 on 0;  0.25 -> 3/4 on 0, 1/4 on 1;  0.75 -> 1/4 on 0, 3/4 on 1, so
  #   target = 1/4 (1/4, 3/4, 0) + 1/4 (0, 3/4, 1/4) + 1/2 (0, 1/4, 3/4) = (1/16, 1/2, 7/16).
  # Online p(s, a=1) = (1/4, 1/2, 1/4): CE = -(1/16 + 7/16) ln(1/4) - 1/2 ln(1/2) = 1.5 ln 2.
  # Transition 1: terminal (discount 0), r = 0.4: every atom moves to 0.4 -> target (0, 0.6, 0.4) whatever the
  #   target network says. Online p(s, a=0) uniform: CE = ln 3.
  # Transition 2: r = -3, gamma * discount = 0.5: atoms at -3.5, -3, -2.5, all clipped to -1 -> target (1, 0, 0).
  #   Online p(s, a=0) = (1/2, 1/4, 1/4): CE = ln 2.
  logits = jnp.asarray(
    np.stack(
      [
        np.stack([log(0.6, 0.2, 0.2), log(0.25, 0.5, 0.25)]),
        np.stack([np.zeros(3, np.float32), log(0.1, 0.1, 0.8)]),
        np.stack([log(0.5, 0.25, 0.25), log(0.2, 0.2, 0.6)]),
      ]
    )
  )
  target_logits = jnp.asarray(
    np.stack(
      [
        np.stack([log(0.25, 0.25, 0.5), log(0.5, 0.25, 0.25)]),
        np.stack([log(0.3, 0.3, 0.4), log(0.7, 0.2, 0.1)]),
        np.stack([log(0.3, 0.3, 0.4), log(0.7, 0.2, 0.1)]),
      ]
    )
  )
  actions = jnp.array([1, 0, 0])
  rewards = jnp.array([0.25, 0.4, -3.0])
  discounts = jnp.array([0.5, 0.0, 0.5])
  want_targets = [[1 / 16, 1 / 2, 7 / 16], [0.0, 0.6, 0.4], [1.0, 0.0, 0.0]]
  want_loss = (1.5 * np.log(2) + np.log(3) + np.log(2)) / 3
  args = (logits, actions, rewards, discounts, target_logits, z)
  np.testing.assert_allclose(_loss(*args), want_loss, rtol=1e-5)
  np.testing.assert_allclose(_targets_from_gradient(*args), want_targets, atol=1e-5)


def test_terminal_transitions_project_onto_the_reward_alone():
  z = jnp.linspace(-2.0, 2.0, 5)  # spacing 1
  rng = np.random.default_rng(0)
  rewards = jnp.array([0.5, -1.25, 2.0, 3.7, 0.0])
  want = [[0, 0, 0.5, 0.5, 0], [0.25, 0.75, 0, 0, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 1], [0, 0, 1, 0, 0]]
  for seed in range(3):  # whatever the target network's distributions
    target_logits = jnp.asarray(np.random.default_rng(seed).normal(size=(5, 2, 5)) * 3, jnp.float32)
    logits = jnp.asarray(rng.normal(size=(5, 2, 5)), jnp.float32)
    got = _targets_from_gradient(logits, jnp.array([0, 1, 0, 1, 0]), rewards, jnp.zeros(5), target_logits, z)
    np.testing.assert_allclose(got, want, atol=1e-5)


@functools.cache
def _chain_agent(method='none', num_atoms=5, regulariser=method_lib.RegulariserConfig()):
  """A small C51 agent on one-hot chain states, built and jitted once per argument set."""
  cfg = c51.C51Config(num_atoms=num_atoms, v_min=-1.0, v_max=1.0, gamma=0.9, update_period=4, target_update_period=8)
  critic = method_lib.make_critic(CHAIN_NET, method_lib.MethodConfig(method=method), (4,), 2 * num_atoms)
  agent = c51.make_c51(cfg, critic, method, 2, regulariser)
  return cfg, agent, agent.init(jax.random.PRNGKey(0), jnp.zeros(4)), jax.jit(agent.learner_step)


def _batch(size=8, seed=0):
  rng = np.random.default_rng(seed)
  eye = np.eye(4, dtype=np.float32)
  return Transitions(
    eye[rng.integers(0, 4, size)],
    rng.integers(0, 2, size).astype(np.int32),
    rng.normal(size=size).astype(np.float32) * 0.5,
    rng.integers(0, 2, size).astype(np.float32),
    eye[rng.integers(0, 4, size)],
  )


def test_q_values_are_expected_values_and_act_is_greedy_on_them():
  _, agent, state, _ = _chain_agent()
  state = state._replace(params=jax.tree.map(lambda p: p * 5 + 0.1, state.params))  # well away from uniform
  obs = jnp.eye(4)
  out = np.asarray(jax.jit(agent.critic.apply)(state.params, state.net_state, state.spectral, obs).q)
  want = (_softmax(out.reshape(4, 2, 5)) * np.linspace(-1, 1, 5)).sum(-1)
  np.testing.assert_allclose(jax.jit(agent.q_values)(state, obs), want, rtol=1e-5, atol=1e-6)
  act = jax.jit(agent.act)
  for i in range(4):
    assert int(act(dqn.actor_state(state), jax.random.PRNGKey(i), obs[i], 0.0)) == int(np.argmax(want[i]))


def test_learner_step_loss_matches_numpy_reference():
  cfg, agent, state, step = _chain_agent()
  state = state._replace(target_params=jax.tree.map(lambda p: p * 3 + 0.2, state.params))
  batch = _batch()
  support = np.linspace(-1, 1, 5)
  apply = lambda params, obs: np.asarray(agent.critic.apply(params, state.net_state, state.spectral, obs).q).reshape(
    -1, 2, 5
  )
  probs, next_probs = _softmax(apply(state.params, batch.obs)), _softmax(apply(state.target_params, batch.next_obs))
  losses, q_taken = [], []
  for b in range(len(batch.action)):
    greedy = np.argmax(next_probs[b] @ support)
    target = _project(support, batch.reward[b], cfg.gamma * batch.discount[b], next_probs[b, greedy])
    losses.append(-np.sum(target * np.log(probs[b, batch.action[b]])))
    q_taken.append(probs[b, batch.action[b]] @ support)
  new, metrics = step(state, batch)
  np.testing.assert_allclose(metrics['loss'], np.mean(losses), rtol=1e-5)
  np.testing.assert_allclose(metrics['q_mean'], np.mean(q_taken), rtol=1e-5, atol=1e-6)
  assert float(metrics['rho']) == 1.0 and float(metrics['grad_norm']) > 0
  assert int(new.updates) == 1


def test_target_network_refreshes_every_period():
  _, _, state, step = _chain_agent()  # update_period 4, target_update_period 8: every 2 updates
  equal = lambda a, b: jax.tree.all(jax.tree.map(lambda x, y: bool(jnp.all(x == y)), a, b))
  for i in range(1, 5):
    previous = state.target_params
    state, _ = step(state, _batch(seed=i))
    assert equal(state.target_params, state.params) == (i % 2 == 0)
    assert equal(state.target_params, previous) == (i % 2 == 1)


def test_gradient_penalty_acts_on_expected_values():
  reg = method_lib.RegulariserConfig(gradient_penalty='sum_of_norms', penalty_coef=0.5)
  _, base, state, step = _chain_agent()
  _, _, _, penalised_step = _chain_agent(regulariser=reg)
  batch = _batch()
  _, m0 = step(state, batch)
  _, m1 = penalised_step(state, batch)
  q_fn = lambda obs: base.q_values(state, obs)
  expected = 0.5 * smoothness.gradient_penalty(q_fn, jnp.asarray(batch.obs), 'sum_of_norms')
  np.testing.assert_allclose(m1['loss'] - m0['loss'], expected, rtol=1e-4)


def test_wrong_output_width_fails_at_init():
  critic = method_lib.make_critic(CHAIN_NET, method_lib.MethodConfig(), (4,), 2)
  agent = c51.make_c51(c51.C51Config(num_atoms=5), critic, 'none', 2)
  with pytest.raises(ValueError, match=r'num_actions \* num_atoms = 2 \* 5 = 10, got 2'):
    agent.init(jax.random.PRNGKey(0), jnp.zeros(4))


def test_divout_is_a_softmax_temperature_rho():
  """DIVOUT divides the logits by rho = exact sigma(hidden) * sigma(out): p = softmax(plain_logits / rho)."""
  num_actions, num_atoms = 2, 5
  make = lambda method: method_lib.make_critic(
    CHAIN_NET, method_lib.MethodConfig(method=method, layers=(-1, -2)), (4,), num_actions * num_atoms
  )
  critic, plain = make('divout'), make('none')
  cfg = c51.C51Config(num_atoms=num_atoms, v_min=-1.0, v_max=1.0)
  agent = c51.make_c51(cfg, critic, 'divout', num_actions)
  state = agent.init(jax.random.PRNGKey(0), jnp.zeros(4))
  params = jax.tree.map(lambda p: p * 3.0, state.params)  # sigma > 1
  vectors = state.spectral
  advance = jax.jit(critic.advance)
  for _ in range(300):
    vectors = advance(params, vectors)
  state = state._replace(params=params, target_params=params, spectral=vectors, target_spectral=vectors)
  specs = {s.name: s for s in critic.specs}
  rho = float(
    spectral.exact_sigma(specs['hidden'], params['hidden']['w'])
    * spectral.exact_sigma(specs['out'], params['out']['w'])
  )
  assert rho > 2.0
  obs = jnp.asarray(np.random.default_rng(1).normal(size=(6, 4)), jnp.float32)
  plain_logits = np.asarray(plain.apply(params, state.net_state, vectors, obs).q).reshape(6, num_actions, num_atoms)
  out = agent.critic.apply(params, state.net_state, vectors, obs)
  assert float(out.rho) == pytest.approx(rho, rel=1e-3)
  probs = _softmax(np.asarray(out.q).reshape(6, num_actions, num_atoms))
  want = _softmax(plain_logits / rho)
  np.testing.assert_allclose(probs, want, rtol=2e-3, atol=1e-6)
  # A temperature, not a value scaling: Q = sum_j softmax(o / rho)_j z_j, not (sum_j softmax(o)_j z_j) / rho.
  support = np.linspace(-1.0, 1.0, num_atoms)
  np.testing.assert_allclose(agent.q_values(state, obs), want @ support, rtol=2e-3, atol=1e-5)
  # The loss sees the same tempered distributions online and in the target.
  batch = Transitions(
    obs[:-1],
    np.arange(5, dtype=np.int32) % num_actions,
    np.linspace(-1, 1, 5, dtype=np.float32),
    np.ones(5, np.float32),
    obs[1:],
  )
  _, metrics = jax.jit(agent.learner_step)(state, batch)
  want_loss = _loss(
    jnp.asarray(plain_logits[:-1] / rho),
    batch.action,
    batch.reward,
    cfg.gamma * batch.discount,
    jnp.asarray(plain_logits[1:] / rho),
    jnp.asarray(support, jnp.float32),
  )
  np.testing.assert_allclose(metrics['loss'], want_loss, rtol=2e-3)


@pytest.mark.parametrize('method', ['sn', pytest.param('none', marks=pytest.mark.slow)])
def test_c51_learns_a_chain_with_known_optimum(method):
  """chain/4: always-right earns 1 in 4 steps, so Q*(s0, right) = gamma^3.

  The support [0, 1.5] with 31 atoms (spacing 0.05) covers every return of the chain (all in [0, 1]); the projection
  keeps the mean of targets inside the support, so the expected values converge to Q* itself.
  """
  steps, warmup = 1_000, 100
  cfg = c51.C51Config(
    num_atoms=31,
    v_min=0.0,
    v_max=1.5,
    warmup_steps=warmup,
    epsilon_decay_steps=500,
    epsilon_end=0.1,
    update_period=1,
    target_update_period=100,
    learning_rate=3e-3,
    replay_capacity=5_000,
  )
  env = envs.make('chain/4', seed=0)
  net = dataclasses.replace(CHAIN_NET, hidden=32)
  critic = method_lib.make_critic(net, method_lib.MethodConfig(method=method), (4,), 2 * cfg.num_atoms)
  agent = c51.make_c51(cfg, critic, method, 2)
  timestep = env.reset()
  state = agent.init(jax.random.PRNGKey(0), jnp.asarray(timestep.observation))
  act, learner_step = jax.jit(agent.act), jax.jit(agent.learner_step)
  schedule = dqn.epsilon_schedule(cfg)
  replay = ReplayBuffer(cfg.replay_capacity, (4,), np.float32)
  replay.start_episode(timestep.observation)
  rng, key = np.random.default_rng(0), jax.random.PRNGKey(1)
  for t in range(steps):
    key, sub = jax.random.split(key)
    action = int(act(dqn.actor_state(state), sub, jnp.asarray(timestep.observation), schedule(t)))
    timestep = env.step(action)
    replay.add(action, timestep.reward, timestep.discount, timestep.observation)
    if timestep.last():
      timestep = env.reset()
      replay.start_episode(timestep.observation)
    if t >= warmup:
      state, metrics = learner_step(state, replay.sample(rng, cfg.batch_size))
  assert np.isfinite(float(metrics['loss']))
  # The greedy policy walks right to the goal in 4 steps.
  timestep, ret = env.reset(), 0.0
  for _ in range(4):
    timestep = env.step(int(act(dqn.actor_state(state), key, jnp.asarray(timestep.observation), 0.0)))
    ret += timestep.reward
  assert timestep.last() and ret == 1.0
  q = np.asarray(agent.q_values(state, jnp.eye(4)))
  np.testing.assert_allclose(q[:, 1], cfg.gamma ** np.arange(3, -1, -1), atol=0.02)
