"""The compiled runner: device replay, equivalence with the host runner, member independence."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from chain_runs import chain_config, chain_program, interrupt_at, member_bytes, records, run_chain

from smoothrl.agents import device_replay
from smoothrl.agents.replay import Transitions
from smoothrl.envs.jax_chain import JaxChain
from smoothrl.launch.run import checkpoint, compiled, grouping, host, recorder
from smoothrl.launch.run import config as config_lib
from smoothrl.launch.run.files import MetricsWriter


def _transition(i):
  return Transitions(
    jnp.full((2,), i, jnp.int32), jnp.int32(i % 3), jnp.float32(i), jnp.float32(i % 2), jnp.full((2,), i + 1, jnp.int32)
  )


def test_device_replay_wraps_around_and_samples_only_written_slots():
  buffer = device_replay.init(5, (2,), jnp.int32)
  add = jax.jit(device_replay.add)
  for i in range(3):
    buffer = add(buffer, _transition(i))
  batch = device_replay.sample(buffer, jax.random.PRNGKey(0), 300)
  assert set(np.asarray(batch.obs[:, 0]).tolist()) == {0, 1, 2}
  for i in range(3, 12):
    buffer = add(buffer, _transition(i))
  batch = jax.jit(device_replay.sample, static_argnums=2)(buffer, jax.random.PRNGKey(1), 500)
  ids = np.asarray(batch.obs[:, 0])
  assert set(ids.tolist()) == {7, 8, 9, 10, 11}  # the newest five
  np.testing.assert_array_equal(batch.next_obs[:, 0], ids + 1)
  np.testing.assert_array_equal(batch.reward, ids.astype(np.float32))
  np.testing.assert_array_equal(batch.action, ids % 3)
  assert int(buffer.size) == 5 and int(buffer.head) == 12 % 5


def test_host_replay_holds_what_the_device_buffer_does():
  held, device = device_replay.HostReplay(4, (2,), jnp.int32), device_replay.init(4, (2,), jnp.int32)
  with pytest.raises(RuntimeError, match='start_episode'):
    held.add(0, 0.0, 1.0, np.zeros(2, np.int32))
  held.start_episode(np.full(2, 0, np.int32))
  for i in range(6):  # two episodes, the second starting at observation 10
    if i == 3:
      held.start_episode(np.full(2, 10, np.int32))
    first = 10 if i >= 3 else 0
    obs, next_obs = np.full(2, first + i % 3, np.int32), np.full(2, first + i % 3 + 1, np.int32)
    held.add(i % 3, float(i), float(i != 2), next_obs)
    device = device_replay.add(
      device, Transitions(obs, jnp.int32(i % 3), jnp.float32(i), jnp.float32(i != 2), next_obs)
    )
  assert len(held) == 4
  jax.tree.map(np.testing.assert_array_equal, held.buffer, device)


def test_jax_chain_matches_the_dm_env_chain():
  from smoothrl.envs.chain import ChainEnv  # pylint: disable=g-import-not-at-top

  jenv, env = JaxChain(3, max_episode_steps=5), ChainEnv(3, max_episode_steps=5)
  obs, state = jenv.reset(jax.random.PRNGKey(0))
  timestep = env.reset()
  for action in [1, 0, 0, 0, 1, 1, 1, 1, 1, 1]:
    np.testing.assert_array_equal(obs, timestep.observation)
    next_obs, obs, state, reward, terminal, truncated = jenv.step_autoreset(jax.random.PRNGKey(0), state, action)
    timestep = env.step(action)
    np.testing.assert_array_equal(next_obs, timestep.observation)
    assert float(reward) == timestep.reward and bool(terminal) == (timestep.last() and timestep.discount == 0)
    assert bool(terminal | truncated) == timestep.last()
    if timestep.last():
      timestep = env.reset()


@pytest.mark.parametrize('env', ['chain/4', 'jax-minatar/breakout'])
def test_host_and_compiled_runners_take_the_same_updates(tmp_path, env):
  """On one JAX-native environment and seed, the Python loop and the scan see the same episodes and updates."""
  fields = {} if env.startswith('chain') else {'network.conv_layers': 2, 'network.hidden': 64}
  loop = chain_config(tmp_path / 'host', env=env, runner='host', steps=1_200, **fields)
  scan = config_lib.replace(loop, out=str(tmp_path / 'scan'), runner='compiled')
  host.train(loop, show_progress=False)
  compiled.train_grid([scan], show_progress=False)
  episodes = records(loop.out, 'episode')
  assert len(episodes) >= 20 and episodes == records(scan.out, 'episode')
  a, b = records(loop.out, 'train'), records(scan.out, 'train')
  assert [r['step'] for r in a] == [r['step'] for r in b] == list(range(400, 1_201, 200))
  for x, y in zip(a, b):
    assert x['updates'] == y['updates']
    np.testing.assert_allclose([x['loss'], x['q_mean'], x['rho']], [y['loss'], y['q_mean'], y['rho']], rtol=1e-5)
  for x, y in zip(records(loop.out, 'sigma'), records(scan.out, 'sigma')):
    np.testing.assert_allclose(list(x['sigma'].values()), list(y['sigma'].values()), rtol=1e-5)


def test_a_single_member_runs_unbatched_with_the_vmapped_results():
  traced = []

  def f(x, scale):
    traced.append(x['a'].shape)
    return {'b': x['a'] * scale}, x['a'].sum()

  over = compiled._over_members(f, (0, None))
  one, two = {'a': jnp.arange(3.0)[None]}, {'a': jnp.arange(6.0).reshape(2, 3)}
  out, total = over(one, 2.0)
  assert traced == [(3,)]
  np.testing.assert_array_equal(out['b'], [[0.0, 2.0, 4.0]])
  np.testing.assert_array_equal(total, [3.0])
  out, total = over(two, 2.0)
  assert traced[-1] == (3,) and len(traced) == 2
  np.testing.assert_array_equal(out['b'], 2.0 * two['a'])
  np.testing.assert_array_equal(total, [3.0, 12.0])


def test_members_are_independent_and_learn(tmp_path):
  alone = chain_config(tmp_path / 'alone', seed=0)
  together = [
    chain_config(tmp_path / f'm{s}', seed=s, **{'dqn.learning_rate': lr, 'method.lipschitz': k})
    for s, lr, k in [(0, 3e-3, 1.0), (1, 1e-3, 2.0), (2, 3e-3, 1.0)]
  ]
  run_chain([alone])
  summaries = run_chain(together, vmap_members=True)
  assert all(s['members_together'] == 3 for s in summaries)
  assert records(alone.out, 'episode') == records(together[0].out, 'episode')
  for x, y in zip(records(alone.out, 'train'), records(together[0].out, 'train')):
    np.testing.assert_allclose(x['loss'], y['loss'], rtol=1e-4)
  # Members really differ (seed, learning rate, K), and each wrote its own evaluations.
  assert records(together[0].out, 'episode') != records(together[1].out, 'episode')
  assert all([r['step'] for r in records(c.out, 'eval')] == [800, 1_600] for c in together)


def test_sequential_members_reuse_the_program(tmp_path):
  configs = [chain_config(tmp_path / f's{s}', seed=s) for s in (0, 1)]
  summaries = run_chain(configs, vmap_members=False)
  assert [s['members_together'] for s in summaries] == [1, 1]
  assert records(configs[0].out, 'episode') != records(configs[1].out, 'episode')


def test_vmapped_members_fill_the_device_program_by_program(tmp_path, monkeypatch):
  configs = [chain_config(tmp_path / f'm{s}', seed=s) for s in range(3)]
  member = member_bytes(configs[0])
  # A device whose memory share holds two members' carries and not three.
  monkeypatch.setattr(compiled, 'device_bytes', lambda: int(2.5 * member / grouping.MEMORY_SHARE))
  summaries = run_chain(configs, vmap_members=True)
  assert [s['members_together'] for s in summaries] == [2, 2, 1]
  assert all([r['step'] for r in records(c.out, 'eval')] == [800, 1_600] for c in configs)


def test_device_memory_per_member(tmp_path, monkeypatch):
  sizes = {n: member_bytes(chain_config(tmp_path, **{'dqn.replay_capacity': n})) for n in (2_000, 3_000)}
  # A transition: two float32 one-hot observations of 4 states, an int32 action, float32 reward and discount.
  assert sizes[3_000] - sizes[2_000] == 1_000 * (2 * 4 * 4 + 4 + 4 + 4)
  assert compiled.members_per_program(100, None) is None
  assert compiled.members_per_program(100, 1_000) == 5
  monkeypatch.setattr(compiled, 'device_bytes', lambda: sizes[2_000])
  with pytest.raises(config_lib.ConfigError, match='lower dqn.replay_capacity'):
    run_chain([chain_config(tmp_path / 'big')], vmap_members=True)
  assert not (tmp_path / 'big').exists()  # refused before anything was written
  with pytest.raises(config_lib.ConfigError, match='at least 1'):
    run_chain([chain_config(tmp_path / 'none')], vmap_members=True, max_members=0)


def test_the_program_updates_its_carry_in_place(tmp_path):
  config = chain_config(tmp_path)
  program = chain_program(config)
  hp = jax.tree.map(lambda x: x[None], compiled.HParams.of(config))
  carry = program.init(hp, jax.random.PRNGKey(0)[None])
  calls = {
    'warmup': lambda c: program.warmup(hp, c, 0, 200)[0],
    'train_chunk': lambda c: program.train_chunk(hp, c, 200, 10)[0],
    'measure': lambda c: program.measure(hp, c)[1],
  }
  for name, call in calls.items():
    before = carry
    carry = call(carry)
    assert all(x.is_deleted() for x in jax.tree.leaves(before.replay)), name  # donated, not copied per call
  assert int(carry.replay.size[0]) == 220


def test_compiled_runner_validation(tmp_path):
  with pytest.raises(config_lib.ConfigError, match='multiples of dqn.update_period'):
    compiled.validate(chain_config(tmp_path, **{'dqn.warmup_steps': 201}))
  with pytest.raises(config_lib.ConfigError, match='group them by structure'):
    run_chain([chain_config(tmp_path / 'a'), chain_config(tmp_path / 'b', **{'network.hidden': 16})])
  with pytest.raises(config_lib.ConfigError, match='no JAX-native version'):
    compiled.make_env('atari/Pong')


def test_compiled_run_resumes_from_its_checkpoint(tmp_path):
  full = chain_config(tmp_path / 'full', checkpoint_period=400)
  crashed = chain_config(tmp_path / 'crashed', checkpoint_period=400)
  run_chain([full])

  running = []  # checkpoints at 400, 800 and 1200 exist by step 1,400
  interrupt_at(1_400, lambda: run_chain([crashed]), before=lambda: running.append(recorder.read_status(crashed.out)))
  assert running == [{'state': 'running', 'step': 1_200}]  # where a resume would continue
  stopped = {'state': 'failed', 'step': 1_400, 'error': 'KeyboardInterrupt: stopped'}
  assert recorder.read_status(crashed.out) == stopped
  assert checkpoint.load(crashed.out).step == 1_200

  summary = run_chain([crashed], resume=True)[0]
  assert summary['steps'] == 1_600 and recorder.read_status(crashed.out)['state'] == 'done'
  timeless = lambda rs: [{k: v for k, v in r.items() if k not in ('elapsed', 'steps_per_sec')} for r in rs]
  for kind in ('episode', 'sigma', 'eval'):
    assert timeless(records(full.out, kind)) == timeless(records(crashed.out, kind)), kind
  a, b = records(full.out, 'train'), records(crashed.out, 'train')
  assert [r['step'] for r in a] == [r['step'] for r in b]
  for x, y in zip(a, b):
    np.testing.assert_allclose(x['loss'], y['loss'], rtol=1e-5)
  assert run_chain([crashed], resume=True)[0] == summary  # finished: nothing new


def test_an_interrupted_run_ends_its_progress_line_and_closes_its_files(tmp_path, monkeypatch, terminal):
  closed, close = [], MetricsWriter.close
  monkeypatch.setattr(MetricsWriter, 'close', lambda self: closed.append(self.path) or close(self))
  monkeypatch.setattr(sys, 'stderr', terminal)
  configs = [chain_config(tmp_path / f'm{s}', seed=s) for s in range(2)]
  env = JaxChain(4)
  interrupt_at(
    1_000,
    lambda: compiled.train(
      configs, lambda name: env, lambda c, hp: compiled.build_agent(c, hp, env), vmap_members=True
    ),
  )
  assert terminal.getvalue().startswith('\r[') and terminal.getvalue().endswith('\x1b[K\n')
  assert sorted(map(str, closed)) == [f'{c.out}/metrics.jsonl' for c in configs]


def test_a_checkpoint_that_does_not_fit_the_run_is_refused_before_any_work(tmp_path):
  config = chain_config(tmp_path, checkpoint_period=400)
  interrupt_at(1_000, lambda: run_chain([config]))
  saved = checkpoint.load(config.out)
  carry = checkpoint.restore(saved.leaves['carry'], compiled.member_shapes(chain_program(config), config), config.out)
  replay = carry.replay  # as a checkpoint written with another observation layout would hold
  data = replay.data._replace(obs=replay.data.obs[:, :-1])
  checkpoint.save(config.out, saved.step, {'carry': carry._replace(replay=replay._replace(data=data))}, saved.meta)
  metrics = (tmp_path / 'metrics.jsonl').read_text()

  with pytest.raises(
    config_lib.ConfigError,
    match=r': replay\.data\.obs is float32\[2000, 3\], the run needs '
    r'float32\[2000, 4\]; remove .*checkpoint to start the run afresh',
  ):
    run_chain([config], resume=True)
  assert (tmp_path / 'metrics.jsonl').read_text() == metrics  # nothing touched
  status = recorder.read_status(config.out)
  assert status['state'] == 'failed' and 'does not fit this run' in status['error']


def test_a_diverging_member_stops_alone_and_the_others_resume_together(tmp_path):
  fields = lambda s: {'checkpoint_period': 400, **({'dqn.learning_rate': 1e30} if s == 1 else {})}
  group = [chain_config(tmp_path / f'm{s}', seed=s, **fields(s)) for s in range(3)]
  reference = [chain_config(tmp_path / f'r{s}', seed=s, **fields(s)) for s in (0, 2)]
  run_chain(reference, vmap_members=True)

  # Member 1's loss is NaN at its first log (step 400): it stops there, before its first checkpoint.
  interrupt_at(1_400, lambda: run_chain(group, vmap_members=True))
  diverged = recorder.read_status(group[1].out)
  assert diverged['state'] == 'failed' and 'non-finite loss nan at step 400' in diverged['error']
  assert [recorder.read_status(c.out)['error'] for c in (group[0], group[2])] == ['KeyboardInterrupt: stopped'] * 2
  assert [checkpoint.saved_step(c.out) for c in group] == [1_200, None, 1_200]
  before = [r for r in records(group[0].out, 'train') if r['step'] <= 1_200]

  summaries = run_chain(group, vmap_members=True, resume=True)
  assert summaries[1] == recorder.read_status(group[1].out) == diverged  # retried afresh, alone, stopped again
  assert not (tmp_path / 'm1' / 'summary.json').exists() and not records(group[1].out, 'train')
  assert [summaries[i]['members_together'] for i in (0, 2)] == [2, 2]  # resumed from 1,200, without member 1
  assert [r for r in records(group[0].out, 'train') if r['step'] <= 1_200] == before  # not run again
  returns = lambda out: [r['return_mean'] for r in records(out, 'eval')]
  for config, ref in zip((group[0], group[2]), reference):  # the NaN lane left the others as they would be
    assert records(config.out, 'episode') == records(ref.out, 'episode')
    assert returns(config.out) == returns(ref.out)
    assert [r['step'] for r in records(config.out, 'train')] == [r['step'] for r in records(ref.out, 'train')]
    for x, y in zip(records(config.out, 'train'), records(ref.out, 'train')):
      np.testing.assert_allclose(x['loss'], y['loss'], rtol=1e-4)
