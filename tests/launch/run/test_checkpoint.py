"""Pickle-free checkpoints: every stateful object's own state goes through a checkpoint and continues exactly, a
crafted or damaged checkpoint is refused without running anything or touching the run, a resumed host run ends as
an uninterrupted one, and a finished run's final parameters rebuild its agent."""

import json
import os
import pickle
import re
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest
from chain_runs import interrupt_at

from smoothrl import envs
from smoothrl.agents import device_replay, dqn
from smoothrl.agents.frame_replay import FrameReplayBuffer
from smoothrl.envs.atari import AtariEnv
from smoothrl.envs.chain import ChainEnv
from smoothrl.envs.minatar import GAMES, MinAtarEnv
from smoothrl.launch import cli
from smoothrl.launch.run import checkpoint, host, policy, recorder
from smoothrl.launch.run import config as config_lib
from smoothrl.launch.run.checkpoint import CheckpointError
from smoothrl.launch.run.files import CHECKPOINT_DIR, LEGACY_CHECKPOINT_FILE, METRICS_FILE, MODEL_DIR, read_metrics

SMOOTHRL = Path(__file__).resolve().parents[3] / 'smoothrl'


def _through_checkpoint(directory, obj):
  """`obj.get_state()` as a checkpoint holds it: written (arrays to .npz, metadata to the JSON manifest) and read
  back; returns what `set_state` takes."""
  arrays, meta = obj.get_state()
  checkpoint.write(directory, arrays, {'obj': meta})
  saved = checkpoint.read(directory)
  return {name: leaves[0] for name, leaves in saved.leaves.items()}, saved.meta['obj']


def _same_state(a, b):
  """`a` and `b` save the same state: every array and every metadata value."""
  (x, meta_x), (y, meta_y) = a.get_state(), b.get_state()
  assert sorted(x) == sorted(y) and json.loads(json.dumps(meta_x)) == json.loads(json.dumps(meta_y))
  for name in x:
    np.testing.assert_array_equal(x[name], y[name], err_msg=name)


def _same_steps(a, b, actions):
  for i, action in enumerate(actions):
    x, y = a.step(action), b.step(action)
    assert (x.step_type, x.reward, x.discount) == (y.step_type, y.reward, y.discount), i
    np.testing.assert_array_equal(x.observation, y.observation, err_msg=f'step {i}')


# (a) Every stateful object: get_state -> a checkpoint -> set_state on a fresh object -> the same future.


@pytest.mark.parametrize('game', GAMES)
@pytest.mark.parametrize('max_episode_steps', [None, 37])
def test_minatar_continues_exactly_after_a_round_trip(tmp_path, game, max_episode_steps):
  make = lambda: MinAtarEnv(game, seed=3, max_episode_steps=max_episode_steps)
  env, rng = make(), np.random.default_rng(0)
  env.reset()
  for _ in range(300):  # over episode ends: the sticky action and the random state carry over them
    env.step(int(rng.integers(6)))
  restored = make()
  restored.set_state(*_through_checkpoint(tmp_path, env))
  _same_state(env, restored)
  _same_steps(env, restored, [int(a) for a in rng.integers(0, 6, 1_500)])


def test_minatar_refuses_a_field_it_cannot_save_exactly_and_a_state_of_other_settings(tmp_path):
  env = MinAtarEnv('asterix', seed=1)
  env.reset()
  env.raw_env.env.extra = object()  # as a game of another minatar version might hold
  with pytest.raises(TypeError, match=r'game\.extra is a builtins\.object'):
    env.get_state()
  env.raw_env.env.extra = env.raw_env.env.entities  # one list in two fields would come back as two lists
  with pytest.raises(TypeError, match=r'game\.extra and game\.entities are one object'):
    env.get_state()
  del env.raw_env.env.extra
  state = _through_checkpoint(tmp_path, env)
  with pytest.raises(ValueError, match='cannot be restored'):
    MinAtarEnv('asterix', seed=2).set_state(*state)  # the evaluation environment's state into the training one's
  other = MinAtarEnv('asterix', seed=1)
  other.raw_env.env.extra = 0
  with pytest.raises(ValueError, match='another version of minatar'):
    other.set_state(*state)


def test_chain_continues_exactly_after_a_round_trip(tmp_path):
  env, rng = ChainEnv(5, max_episode_steps=7), np.random.default_rng(0)
  env.reset()
  for _ in range(23):
    env.step(int(rng.integers(2)))
  restored = ChainEnv(5, max_episode_steps=7)
  restored.set_state(*_through_checkpoint(tmp_path, env))
  _same_state(env, restored)
  _same_steps(env, restored, [int(a) for a in rng.integers(0, 2, 200)])
  with pytest.raises(ValueError, match='cannot be restored'):
    ChainEnv(6).set_state(*env.get_state())


@pytest.mark.parametrize('at_episode_end', [False, True])
def test_jax_minatar_continues_exactly_after_a_round_trip(tmp_path, at_episode_end):
  make = lambda: envs.make('jax-minatar/breakout', seed=2)
  env, rng = make(), np.random.default_rng(0)
  env.reset()
  for _ in range(120):
    ts = env.step(int(rng.integers(6)))
  while at_episode_end and not ts.last():  # saved between an episode's end and the reset that starts the next
    ts = env.step(int(rng.integers(6)))
  restored = make()
  restored.set_state(*_through_checkpoint(tmp_path, env))
  _same_state(env, restored)
  _same_steps(env, restored, [int(a) for a in rng.integers(0, 6, 400)])
  with pytest.raises(ValueError, match='key'):
    envs.make('jax-minatar/breakout', seed=3).set_state(*env.get_state())


@pytest.mark.parametrize('protocol', ['noop', 'sticky'])
def test_atari_continues_exactly_after_a_round_trip(tmp_path, protocol):
  make = lambda: AtariEnv('Breakout', seed=5, protocol=protocol, max_episode_frames=2_000)
  env, rng = make(), np.random.default_rng(0)
  env.reset()
  for _ in range(700):  # two truncated episodes and part of a third: no-op starts drawn, sticky actions taken
    env.step(int(rng.integers(4)))
  restored = make()
  restored.set_state(*_through_checkpoint(tmp_path, env))
  _same_state(env, restored)
  _same_steps(env, restored, [int(a) for a in rng.integers(0, 4, 800)])
  assert (restored.episode_score, restored.lives, restored.last_noops) == (env.episode_score, env.lives, env.last_noops)
  with pytest.raises(ValueError, match='cannot be restored'):
    AtariEnv('Breakout', seed=6, protocol=protocol).set_state(*env.get_state())


def test_atari_sticky_actions_repeat_the_saved_action(tmp_path):
  """ALE's state omits the action sticky actions repeat; here it was UP, where a restored emulator would repeat
  NOOP on the first frames and the chicken would fall a step behind."""
  make = lambda: AtariEnv('Freeway', seed=5, protocol='sticky')
  env = make()
  env.reset()
  for _ in range(9):
    env.step(1)  # UP
  restored = make()
  restored.set_state(*_through_checkpoint(tmp_path, env))
  _same_state(env, restored)
  _same_steps(env, restored, [0] * 100)


def test_host_replay_samples_the_same_after_a_round_trip(tmp_path):
  replay, rng = device_replay.HostReplay(50, (3,), np.float32), np.random.default_rng(0)
  obs = lambda: rng.normal(size=3).astype(np.float32)
  replay.start_episode(obs())
  for t in range(70):  # wrapped around
    replay.add(t % 4, float(t), float(t % 9 != 8), obs())
  restored = device_replay.HostReplay(50, (3,), np.float32)
  restored.set_state(*_through_checkpoint(tmp_path, replay))
  _same_state(replay, restored)
  for _ in range(10):  # the newest observation starts the next transition in both
    replay.add(1, 0.5, 1.0, x := obs())
    restored.add(1, 0.5, 1.0, x)
  assert len(restored) == len(replay) == 50
  for i in range(5):
    key = jax.random.PRNGKey(i)
    a, b = device_replay.sample(replay.buffer, key, 16), device_replay.sample(restored.buffer, key, 16)
    jax.tree.map(np.testing.assert_array_equal, a, b)
  with pytest.raises(ValueError, match=r'obs is float32\[50, 3\], this buffer holds float32\[40, 3\]'):
    device_replay.HostReplay(40, (3,), np.float32).set_state(*replay.get_state())


def test_frame_replay_samples_the_same_after_a_round_trip(tmp_path):
  shape = (3, 2)

  def play(buffer, episodes, seed):
    frames = np.random.default_rng(seed)
    for length in episodes:
      stack = np.zeros((*shape, 4), np.uint8)
      stack[..., -1] = frames.integers(1, 255, shape)
      buffer.start_episode(stack)
      for t in range(length):
        stack = np.concatenate([stack[..., 1:], frames.integers(1, 255, (*shape, 1)).astype(np.uint8)], -1)
        buffer.add(t % 3, float(t), float(t != length - 1), stack)

  replay = FrameReplayBuffer(30, shape, 4, check_stacks=True)
  play(replay, [9, 14, 12], seed=1)  # wrapped around, episodes cut by the wrap
  restored = FrameReplayBuffer(30, shape, 4, check_stacks=True)
  restored.set_state(*_through_checkpoint(tmp_path, replay))
  _same_state(replay, restored)
  for buffer in (replay, restored):
    play(buffer, [6], seed=2)
  assert len(restored) == len(replay)
  for seed in range(5):
    a, b = replay.sample(np.random.default_rng(seed), 16), restored.sample(np.random.default_rng(seed), 16)
    jax.tree.map(np.testing.assert_array_equal, a, b)
  with pytest.raises(ValueError, match='cannot be restored'):
    FrameReplayBuffer(31, shape, 4).set_state(*replay.get_state())


# (b) Checkpoints crafted to run code when unpickled are refused, unread.


class _Touch:
  """Unpickled, creates the file `path` (as a crafted checkpoint could run anything)."""

  def __init__(self, path):
    self.path = str(path)

  def __reduce__(self):
    return os.system, (f'touch {self.path}',)


def _chain_config(out, **fields):
  cfg = config_lib.TrainConfig(
    env='chain/4',
    out=str(out),
    steps=600,
    log_period=100,
    eval_period=200,
    eval_steps=30,
    sigma_log_period=200,
    checkpoint_period=200,
  )
  return config_lib.replace(
    cfg,
    **{'network.conv_layers': 0, 'network.hidden': 16, 'dqn.warmup_steps': 50, 'dqn.replay_capacity': 500, **fields},
  )


@pytest.fixture(scope='module')
def stopped_run(tmp_path_factory):
  """A chain run stopped at step 500, its last checkpoint at 400."""
  cfg = _chain_config(tmp_path_factory.mktemp('stopped') / 'run')
  interrupt_at(500, lambda: host.train(cfg, show_progress=False), host)
  assert checkpoint.saved_step(cfg.out) == 400
  return cfg


def _copy(run, tmp_path):
  """A copy of the run directory of `run` in `tmp_path`, and its config there."""
  shutil.copytree(run.out, tmp_path / 'run')
  cfg = config_lib.replace(run, out=str(tmp_path / 'run'))
  (tmp_path / 'run' / 'config.json').write_text(cfg.to_json())
  return cfg


def test_a_pickle_checkpoint_is_refused_unread(tmp_path, stopped_run):
  proof, sentinel = tmp_path / 'PROOF', tmp_path / 'SENTINEL'
  pickle.loads(pickle.dumps(_Touch(proof)))
  assert proof.exists()  # the payload is live: unpickling it runs its command
  cfg = _copy(stopped_run, tmp_path)
  (Path(cfg.out) / LEGACY_CHECKPOINT_FILE).write_bytes(pickle.dumps(_Touch(sentinel)))
  for load in (checkpoint.load, checkpoint.saved_step):
    with pytest.raises(CheckpointError, match='checkpoint.pkl is a pickle checkpoint'):
      load(cfg.out)
  with pytest.raises(CheckpointError, match='unpickling can run code'):
    host.train(cfg, show_progress=False, resume=True)
  assert not sentinel.exists()


def test_an_arrays_file_holding_an_object_array_is_refused_unread(tmp_path, stopped_run):
  proof, sentinel = tmp_path / 'PROOF', tmp_path / 'SENTINEL'
  np.savez(tmp_path / 'proof.npz', x=np.array([_Touch(proof)], dtype=object))
  np.load(tmp_path / 'proof.npz', allow_pickle=True)['x']
  assert proof.exists()  # the payload is live: loading it with pickle allowed runs its command

  cfg = _copy(stopped_run, tmp_path)
  directory = Path(cfg.out) / CHECKPOINT_DIR
  manifest = json.loads((directory / 'manifest.json').read_text())
  arrays = directory / manifest['arrays']
  with np.load(arrays) as z:
    contents = dict(z)
  contents['state/0'] = np.array([_Touch(sentinel)], dtype=object)  # a pickled array where a leaf should be
  with open(arrays, 'wb') as f:
    np.savez(f, **contents)
  # A manifest that vouches for it, as a crafted checkpoint's would.
  manifest.update(bytes=arrays.stat().st_size, sha256=checkpoint._sha256(arrays))
  manifest['digest'] = checkpoint._digest(manifest)
  (directory / 'manifest.json').write_text(json.dumps(manifest))
  metrics = (Path(cfg.out) / METRICS_FILE).read_bytes()

  with pytest.raises(CheckpointError, match=re.escape(str(arrays)) + ' cannot be read safely'):
    checkpoint.load(cfg.out)
  with pytest.raises(CheckpointError, match='cannot be read safely'):
    host.train(cfg, show_progress=False, resume=True)
  assert not sentinel.exists()
  assert (Path(cfg.out) / METRICS_FILE).read_bytes() == metrics


# (c) A damaged checkpoint is refused naming its file, and the run is left as it was.


def _truncate(directory):
  arrays = next(directory.glob('arrays-*.npz'))
  arrays.write_bytes(arrays.read_bytes()[: arrays.stat().st_size // 2])
  return arrays, 'is truncated or corrupted'


def _flip_a_byte(directory):
  arrays = next(directory.glob('arrays-*.npz'))
  data = bytearray(arrays.read_bytes())
  data[len(data) // 2] ^= 0x01
  arrays.write_bytes(bytes(data))
  return arrays, 'is truncated or corrupted'


def _garble_manifest(directory):
  path = directory / 'manifest.json'
  text = path.read_bytes()
  path.write_bytes(text[:40] + b'\x00\xff garbled \xfe' + text[60:])
  return path, 'is not a readable manifest'


def _alter_manifest(directory):  # still JSON: an earlier step
  path = directory / 'manifest.json'
  text = path.read_text()
  assert text.count('"step": 400') == 1
  path.write_text(text.replace('"step": 400', '"step": 200'))
  return path, 'is altered or corrupted'


@pytest.mark.parametrize('damage', [_truncate, _flip_a_byte, _garble_manifest, _alter_manifest])
def test_a_damaged_checkpoint_is_refused_naming_its_file_and_the_run_is_untouched(
  tmp_path, stopped_run, damage, capsys
):
  cfg = _copy(stopped_run, tmp_path)
  path, problem = damage(Path(cfg.out) / CHECKPOINT_DIR)
  metrics = (Path(cfg.out) / METRICS_FILE).read_bytes()
  expected = re.escape(str(path)) + '.*' + problem
  with pytest.raises(CheckpointError, match=expected):
    host.train(cfg, show_progress=False, resume=True)
  assert cli.main(['train', '--resume', cfg.out, '--no-progress']) == 2
  assert re.search(expected, capsys.readouterr().err)
  assert (Path(cfg.out) / METRICS_FILE).read_bytes() == metrics
  status = recorder.read_status(cfg.out)
  assert status['state'] == 'failed' and problem in status['error']


def test_an_environment_state_that_does_not_fit_is_refused_and_the_run_is_untouched(tmp_path, stopped_run, capsys):
  cfg = _copy(stopped_run, tmp_path)
  saved = checkpoint.load(cfg.out)
  saved.meta['eval_env']['settings']['max_episode_steps'] = 99  # as a chain of other settings would have saved
  checkpoint.save(cfg.out, saved.step, saved.leaves, saved.meta)
  metrics = (Path(cfg.out) / METRICS_FILE).read_bytes()
  expected = (
    r'the checkpoint in .* does not fit this run: its eval_env state: ValueError: a saved state of '
    r'ChainEnv\(.*\) cannot be restored into ChainEnv\(n=4, max_episode_steps=16, image=False\); remove '
    r'.*checkpoint to start the run afresh'
  )
  with pytest.raises(config_lib.ConfigError, match=expected):
    host.train(cfg, show_progress=False, resume=True)
  assert cli.main(['train', '--resume', cfg.out, '--no-progress']) == 2
  assert re.search(expected, capsys.readouterr().err)
  assert (Path(cfg.out) / METRICS_FILE).read_bytes() == metrics


# (d) A run directory of the earlier (pickle) format is refused by --resume, saying how to restart it.


def test_a_run_of_the_earlier_format_is_refused_by_resume_and_says_how_to_restart(tmp_path, capsys):
  sentinel = tmp_path / 'SENTINEL'
  cfg = _chain_config(tmp_path / 'old')
  out = Path(cfg.out)
  out.mkdir()
  (out / 'config.json').write_text(cfg.to_json())
  (out / 'status.json').write_text(json.dumps({'state': 'running', 'step': 200}))
  (out / METRICS_FILE).write_text(
    ''.join(json.dumps({'step': s, 'kind': 'train', 'loss': 0.5}) + '\n' for s in (100, 200, 300))
  )
  (out / LEGACY_CHECKPOINT_FILE).write_bytes(pickle.dumps({'step': 200, 'state': _Touch(sentinel)}))
  metrics = (out / METRICS_FILE).read_bytes()

  assert cli.main(['train', '--resume', str(out), '--no-progress']) == 2
  err = capsys.readouterr().err
  assert f'{out / LEGACY_CHECKPOINT_FILE} is a pickle checkpoint of an earlier smoothrl version' in err
  assert f'remove {out / LEGACY_CHECKPOINT_FILE}, then run smoothrl train --resume {out}' in err
  assert not sentinel.exists() and (out / METRICS_FILE).read_bytes() == metrics

  (out / LEGACY_CHECKPOINT_FILE).unlink()  # as the message says: the run starts again from step 0
  assert cli.main(['train', '--resume', str(out), '--no-progress']) == 0
  assert recorder.read_status(out) == {'state': 'done', 'step': 600}
  assert [r['step'] for r in read_metrics(out / METRICS_FILE, 'train')] == list(range(100, 601, 100))


# A resumed host run ends as an uninterrupted one, on every kind of environment.


def _timeless(records):
  return [{k: v for k, v in r.items() if k not in ('elapsed', 'steps_per_sec')} for r in records]


def _resume_config(env, out):
  if env.startswith('chain/'):
    return _chain_config(out)
  cfg = config_lib.TrainConfig(
    env=env,
    out=str(out),
    steps=600,
    log_period=100,
    eval_period=200,
    eval_steps=60,
    sigma_log_period=200,
    checkpoint_period=200,
    smoothness_states=16,
  )
  fields = {'network.conv_layers': 1, 'network.hidden': 16}
  if env.startswith('atari/'):  # sticky actions (the emulator's repeated action must come back too), short games
    fields = {
      'network.conv_layers': 0,
      'network.hidden': 16,
      'atari.protocol': 'sticky',
      'atari.max_episode_frames': 600,
    }
  return config_lib.replace(
    cfg,
    **{
      'dqn.warmup_steps': 100,
      'dqn.replay_capacity': 300,
      'dqn.batch_size': 8,
      'dqn.target_update_period': 48,
      **fields,
    },
  )


@pytest.mark.parametrize(
  'env', ['chain/4', 'minatar/breakout', 'jax-minatar/breakout', pytest.param('atari/Freeway', marks=pytest.mark.slow)]
)
def test_a_resumed_host_run_ends_as_an_uninterrupted_one(tmp_path, env):
  full, stopped = _resume_config(env, tmp_path / 'full'), _resume_config(env, tmp_path / 'stopped')
  host.train(full, show_progress=False)
  interrupt_at(500, lambda: host.train(stopped, show_progress=False), host)
  assert checkpoint.saved_step(stopped.out) == 400
  summary = host.train(stopped, show_progress=False, resume=True)

  a, b = list(read_metrics(Path(full.out) / METRICS_FILE)), list(read_metrics(Path(stopped.out) / METRICS_FILE))
  assert _timeless(a) == _timeless(b)  # episodes, losses, sigmas and evaluations: the same values, each once
  assert {r['kind'] for r in b} >= {'episode', 'train', 'sigma', 'eval'}
  expected = json.loads((Path(full.out) / 'summary.json').read_text())
  assert {k: summary[k] for k in ('episodes', 'updates', 'final_eval')} == {
    k: expected[k] for k in ('episodes', 'updates', 'final_eval')
  }
  for x, y in zip(checkpoint.load_model(full.out)[1], checkpoint.load_model(stopped.out)[1]):
    np.testing.assert_array_equal(x, y)  # the same final parameters
  assert not (Path(stopped.out) / CHECKPOINT_DIR).exists()


# (e) A finished run keeps its agent.


def test_a_finished_run_keeps_the_agent_of_its_last_training_state(tmp_path, monkeypatch):
  cfg = _chain_config(tmp_path / 'run', steps=1_000, eval_period=500, checkpoint_period=500)
  last = []
  record = policy.model_record
  monkeypatch.setattr(policy, 'model_record', lambda config, state, *a: last.append(state) or record(config, state, *a))
  interrupt_at(700, lambda: host.train(cfg, show_progress=False), host)
  with pytest.raises(config_lib.ConfigError, match='no final parameters'):
    policy.load(cfg.out)  # unfinished: a checkpoint, no final/
  host.train(cfg, show_progress=False, resume=True)
  assert (Path(cfg.out) / MODEL_DIR / 'manifest.json').exists()

  agent = policy.load(cfg.out)
  states = np.eye(4, dtype=np.float32)
  expected = host.build_agent(cfg, ChainEnv(4)).q_values(dqn.actor_state(last[-1]), states)
  np.testing.assert_array_equal(agent.q_values(states), expected)
  actions = [int(agent.act(jax.random.PRNGKey(0), s)) for s in states]
  assert actions == [int(a) for a in np.argmax(expected, axis=-1)]  # greedy on the last training state's values


# No load path unpickles.


def test_no_source_file_unpickles():
  unsafe = re.compile(
    r'^\s*(import|from)\s+(c?pickle|dill|cloudpickle|joblib|shelve)\b|pickle\.loads?\(|'
    r'allow_pickle\s*=\s*True|Unpickler',
    re.MULTILINE,
  )
  found = [
    f'{path.relative_to(SMOOTHRL.parent)}: {m.group(0).strip()}'
    for path in sorted(SMOOTHRL.rglob('*.py'))
    for m in unsafe.finditer(path.read_text(encoding='utf-8'))
  ]
  assert not found, found
  assert len(list(SMOOTHRL.rglob('*.py'))) > 20  # the tree was found
