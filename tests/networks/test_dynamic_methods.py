"""Methods and layers as traced values: the dynamic critic and optimiser against the static ones, and compiled groups
that mix methods."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from chain_runs import chain_config, interrupt_at, records, run_chain

from smoothrl.agents import c51, dqn
from smoothrl.agents.replay import Transitions
from smoothrl.envs.jax_chain import JaxChain
from smoothrl.launch.run import checkpoint, compiled
from smoothrl.launch.run import config as config_lib
from smoothrl.networks import critics
from smoothrl.networks import method as method_lib

NET = critics.NetworkConfig(conv_layers=1, conv_channels=4, hidden=16)  # conv_0 (-3), hidden (-2), out (-1)
OBS_SHAPE = (5, 5, 2)
NUM_ACTIONS = 3
DQN_CONFIG = dqn.DQNConfig(batch_size=8, target_update_period=8, update_period=4, learning_rate=1e-2, adam_eps=1e-2)


def _batch(seed: int) -> Transitions:
  rng = np.random.default_rng(seed)
  return Transitions(
    jnp.asarray(rng.normal(size=(8, *OBS_SHAPE)), jnp.float32),
    jnp.asarray(rng.integers(0, NUM_ACTIONS, 8), jnp.int32),
    jnp.asarray(rng.normal(size=8), jnp.float32),
    jnp.asarray(rng.integers(0, 2, 8), jnp.float32),
    jnp.asarray(rng.normal(size=(8, *OBS_SHAPE)), jnp.float32),
  )


def _agent(
  config: dqn.DQNConfig, method: method_lib.MethodConfig, dynamic: method_lib.DynamicMethod | None, agent: str
) -> dqn.DQN:
  width = NUM_ACTIONS * (config.num_atoms if agent == 'c51' else 1)
  critic = method_lib.make_critic(NET, method, OBS_SHAPE, width, dynamic=dynamic)
  how = method.method if dynamic is None else dynamic
  if agent == 'c51':
    return c51.make_c51(config, critic, how, NUM_ACTIONS)
  return dqn.make_dqn(config, critic, how, NUM_ACTIONS)


def _train(agent: dqn.DQN, state: dqn.DQNState, batches: Transitions):
  """Learner steps on the stacked `batches`, with the critic's output before each."""

  def step(state, batch):
    out = agent.critic.apply(state.params, state.net_state, state.spectral, batch.obs)
    state, metrics = agent.learner_step(state, batch)
    return state, (out.q, out.rho, metrics)

  return jax.lax.scan(step, state, batches)


@functools.cache
def _static_run(config: dqn.DQNConfig, method: method_lib.MethodConfig, agent: str):
  return jax.jit(lambda state, batches: _train(_agent(config, method, None, agent), state, batches))


@functools.cache
def _dynamic_run(config: dqn.DQNConfig, statics: method_lib.MethodConfig, agent: str):
  """One compiled program for every method and layer selection that shares `statics`' other fields."""
  return jax.jit(lambda dm, state, batches: _train(_agent(config, statics, dm, agent), state, batches))


@functools.cache
def _initial(config: dqn.DQNConfig, agent: str) -> dqn.DQNState:
  """A state whose weights are large enough for sigma > K, so SN acts; the optimiser state is set per method."""
  state = _agent(config, method_lib.MethodConfig(), None, agent).init(jax.random.PRNGKey(0), jnp.zeros(OBS_SHAPE))
  params = jax.tree.map(lambda p: 3.0 * p, state.params)
  return state._replace(params=params, target_params=params, opt_state=None)


def _start(config: dqn.DQNConfig, agent: str, method: str | method_lib.DynamicMethod) -> dqn.DQNState:
  state = _initial(config, agent)
  return state._replace(opt_state=dqn.make_optimizer(config, method)[0].init(state.params))


def _assert_same_run(method: method_lib.MethodConfig, config: dqn.DQNConfig = DQN_CONFIG, agent: str = 'dqn'):
  batches = jax.tree.map(lambda *xs: jnp.stack(xs), *[_batch(i) for i in range(3)])
  dm = method_lib.dynamic_method(method, NET)
  static_state, (static_q, static_rho, static_metrics) = _static_run(config, method, agent)(
    _start(config, agent, method.method), batches
  )
  statics = dataclasses.replace(method, method='none', layers=(-1,))
  dynamic_state, (dynamic_q, dynamic_rho, dynamic_metrics) = _dynamic_run(config, statics, agent)(
    dm, _start(config, agent, dm), batches
  )
  np.testing.assert_allclose(static_q, dynamic_q, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(static_rho, dynamic_rho, rtol=1e-6)
  for k in static_metrics:
    np.testing.assert_allclose(static_metrics[k], dynamic_metrics[k], rtol=1e-5, err_msg=k)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
    (static_state.params, static_state.spectral),
    (dynamic_state.params, dynamic_state.spectral),
  )
  assert (np.asarray(static_rho) == 1.0).all() == (method.method == 'none')


@pytest.mark.parametrize('layers', [(-2,), (-1, -3)])
@pytest.mark.parametrize('method', method_lib.METHODS)
def test_dynamic_critic_and_optimiser_equal_the_static_ones(method, layers):
  _assert_same_run(method_lib.MethodConfig(method=method, layers=layers, lipschitz=1.5))


@pytest.mark.parametrize(
  'method',
  [
    method_lib.MethodConfig(method='sn', layers=(-1, -2), sn_always=True, lipschitz=2.0),
    method_lib.MethodConfig(method='sn', layers=(-2,), sn_grad_through_sigma=True),
    method_lib.MethodConfig(method='divgrad', layers=(-3, -2, -1), power_iterations=2),
  ],
)
def test_dynamic_path_keeps_the_static_sn_options(method):
  _assert_same_run(method)


@pytest.mark.parametrize('method', ['divgrad', 'muleps'])
def test_dynamic_optimiser_with_eps_inside_the_root(method):
  _assert_same_run(
    method_lib.MethodConfig(method=method, layers=(-2, -3)), dataclasses.replace(DQN_CONFIG, eps_placement='inside')
  )


@pytest.mark.parametrize('method', ['divout', 'muleps'])
def test_dynamic_c51_equals_the_static_one(method):
  config = c51.c51_config(DQN_CONFIG, c51.SupportConfig(num_atoms=5, v_min=-2.0, v_max=2.0))
  _assert_same_run(method_lib.MethodConfig(method=method, layers=(-1,)), config, agent='c51')


def test_dynamic_method_of_a_config():
  dm = method_lib.dynamic_method(method_lib.MethodConfig(method='divout', layers=(-1, -3)), NET)
  assert int(dm.method_id) == method_lib.METHODS.index('divout')
  assert np.asarray(dm.layer_mask).tolist() == [True, False, True]  # conv_0, hidden, out
  none = method_lib.dynamic_method(method_lib.MethodConfig(method='none', layers=(-1,)), NET)
  assert not np.asarray(none.layer_mask).any()  # 'none' selects nothing, as the static critic: rho = 1
  with pytest.raises(ValueError, match='out of range'):
    method_lib.dynamic_method(method_lib.MethodConfig(method='sn', layers=(-4,)), NET)
  with pytest.raises(ValueError, match='3 layers'):
    method_lib.make_critic(
      NET,
      method_lib.MethodConfig(),
      OBS_SHAPE,
      NUM_ACTIONS,
      dynamic=method_lib.DynamicMethod(jnp.int32(1), jnp.ones(2, bool)),
    )


# ----------------------------------------------------------------------------
# Compiled groups that mix methods and layers.
# ----------------------------------------------------------------------------

MIXED = [
  (0, 'none', (-1,), 3e-3),
  (1, 'sn', (-2,), 3e-3),
  (2, 'divout', (-1,), 1e-3),
  (3, 'divgrad', (-1, -2), 3e-3),
  (4, 'muleps', (-2,), 3e-3),
]


def _chain_config(out, **fields):
  return chain_config(out, **{'steps': 800, 'dqn.epsilon_decay_steps': 400, **fields})


def _mixed(out, **fields):
  return [
    _chain_config(
      out / f'{method}{seed}',
      seed=seed,
      **{'method.method': method, 'method.layers': layers, 'dqn.learning_rate': lr, **fields},
    )
    for seed, method, layers, lr in MIXED
  ]


def _assert_same_metrics(a, b, rtol=1e-4):
  assert records(a, 'episode') == records(b, 'episode')
  x, y = records(a, 'train'), records(b, 'train')
  assert [r['step'] for r in x] == [r['step'] for r in y] and x
  for r, s in zip(x, y):
    assert r['updates'] == s['updates']
    np.testing.assert_allclose([r['loss'], r['q_mean'], r['rho']], [s['loss'], s['q_mean'], s['rho']], rtol=rtol)
  x, y = records(a, 'sigma'), records(b, 'sigma')
  assert [r['selected'] for r in x] == [r['selected'] for r in y] and x
  for r, s in zip(x, y):
    assert sorted(r['sigma']) == sorted(s['sigma']) == ['hidden', 'out']
    np.testing.assert_allclose(
      [r['sigma'][k] for k in sorted(r['sigma'])], [s['sigma'][k] for k in sorted(s['sigma'])], rtol=rtol
    )
  x, y = records(a, 'eval'), records(b, 'eval')
  assert [(r['step'], r['episodes'], r['return_mean']) for r in x] == [
    (s['step'], s['episodes'], s['return_mean']) for s in y
  ]


@pytest.fixture(scope='module')
def mixed_group(tmp_path_factory):
  """The MIXED members trained together, as one vmapped program."""
  together = _mixed(tmp_path_factory.mktemp('together'))
  return together, run_chain(together, vmap_members=True)


_ALONE: dict[int, config_lib.TrainConfig] = {}


def _alone(i: int, tmp_path_factory) -> config_lib.TrainConfig:
  """Member `i` of MIXED trained alone through a static program (once per test session)."""
  if i not in _ALONE:
    config = _mixed(tmp_path_factory.mktemp('alone'))[i]
    assert run_chain([config])[0]['members_together'] == 1
    _ALONE[i] = config
  return _ALONE[i]


# Two members in the default suite (SN and DIVOUT change the critic); the other three in the slow set.
@pytest.mark.parametrize(
  'i',
  [pytest.param(i, id=m[1], marks=[] if m[1] in ('sn', 'divout') else [pytest.mark.slow]) for i, m in enumerate(MIXED)],
)
def test_a_member_of_a_mixed_group_equals_its_static_run_alone(i, mixed_group, tmp_path_factory):
  together, summaries = mixed_group
  assert [s['members_together'] for s in summaries] == [len(MIXED)] * len(MIXED)  # one program for all
  _assert_same_metrics(together[i].out, _alone(i, tmp_path_factory).out)
  expected = [[], ['hidden'], ['out'], ['hidden', 'out'], ['hidden']][i]
  assert all(r['selected'] == expected for r in records(together[i].out, 'sigma'))
  rho = records(together[i].out, 'train')[-1]['rho']
  assert rho == 1.0 if MIXED[i][1] == 'none' else rho != 1.0


def test_programs_are_static_unless_a_vmapped_group_mixes_methods(tmp_path, monkeypatch):
  mixed = _mixed(tmp_path)
  same = [mixed[1], config_lib.replace(mixed[1], seed=7, out=str(tmp_path / 'sn7'), **{'dqn.learning_rate': 1e-3})]
  none = [mixed[0], config_lib.replace(mixed[0], seed=8, out=str(tmp_path / 'none8'), **{'method.layers': (-2,)})]
  runs = []

  def record(program, configs, *args):
    runs.append((program.dynamic, program.config.method.method, len(configs), id(program)))
    return [{'members_together': len(configs)}] * len(configs)

  monkeypatch.setattr(compiled, '_train_group', record)
  run_chain(mixed, vmap_members=True)
  run_chain(same, vmap_members=True)
  run_chain(none, vmap_members=True)  # 'none' ignores its layers
  run_chain(mixed[:2] + same, vmap_members=False)
  assert [r[:3] for r in runs] == [
    (True, 'none', 5),
    (False, 'sn', 2),
    (False, 'none', 2),
    (False, 'none', 1),
    (False, 'sn', 1),
    (False, 'sn', 1),
    (False, 'sn', 1),
  ]
  assert runs[4][3] == runs[5][3] == runs[6][3]  # one program per method and layers, shared one after another


def test_structure_key_groups_methods_and_layers_together(tmp_path):
  base = _chain_config(tmp_path)
  key = compiled.structure_key(base)
  for fields in (
    {'method.method': 'none'},
    {'method.method': 'divgrad', 'method.layers': (-1, -2)},
    {'method.method': 'muleps', 'method.layers': (-1,), 'method.lipschitz': 3.0, 'seed': 4},
  ):
    assert compiled.structure_key(config_lib.replace(base, **fields)) == key, fields
  for fields in (
    {'method.sn_always': True},
    {'method.power_iterations': 2},
    {'method.sn_grad_through_sigma': True},
    {'network.hidden': 16},
    {'agent': 'c51'},
    {'dqn.eps_placement': 'inside'},
  ):
    assert compiled.structure_key(config_lib.replace(base, **fields)) != key, fields


def test_a_checkpoint_resumes_in_a_program_of_the_other_kind(tmp_path, tmp_path_factory):
  """A member checkpointed inside a mixed (dynamic) group finishes alone (static) as if never stopped."""
  together = [c for c in _mixed(tmp_path, checkpoint_period=400) if c.method.method in ('none', 'divgrad')]

  interrupt_at(600, lambda: run_chain(together, vmap_members=True))  # the checkpoint at 400 exists, 800 not yet
  member = together[0]  # 'none': plain Adam alone, whose optimiser state differs in structure from the group's
  saved = checkpoint.load(member.out)
  env = JaxChain(4)
  program = lambda dynamic: compiled.Program(member, env, env, lambda c, hp: compiled.build_agent(c, hp, env), dynamic)
  written, static = (compiled.member_shapes(program(dynamic), member) for dynamic in (True, False))
  carry = checkpoint.restore(saved.leaves['carry'], written, member.out)  # the checkpoint's leaves, by their layout
  assert saved.step == 400 and len(carry.agent.opt_state) == 3
  # The static program's optimiser state has another structure around the same leaves, which it restores onto.
  assert jax.tree.structure(static.agent.opt_state) != jax.tree.structure(written.agent.opt_state)
  assert run_chain([member], resume=True)[0]['members_together'] == 1
  _assert_same_metrics(_alone(0, tmp_path_factory).out, member.out)


@pytest.mark.slow
def test_checkpoints_of_static_programs_resume_together_in_a_dynamic_one(tmp_path, tmp_path_factory):
  """The other way round: members checkpointed alone (static) finish together in a mixed (dynamic) group."""
  members = [
    (i, c) for i, c in enumerate(_mixed(tmp_path, checkpoint_period=400)) if c.method.method in ('none', 'divgrad')
  ]
  for _, member in members:
    interrupt_at(600, lambda member=member: run_chain([member]))
    assert checkpoint.saved_step(member.out) == 400
  summaries = run_chain([c for _, c in members], vmap_members=True, resume=True)
  assert [s['members_together'] for s in summaries] == [2, 2]
  for i, member in members:
    _assert_same_metrics(_alone(i, tmp_path_factory).out, member.out)
