"""Nothing lost: a run killed with SIGKILL resumes to the same result; failures are recorded with their reason."""

import json
import os
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
from chain_runs import interrupt_at
from tensorboardX.proto import event_pb2

from smoothrl.launch.run import checkpoint, host, recorder
from smoothrl.launch.run import config as config_lib
from smoothrl.launch.run.files import CHECKPOINT_DIR, LEGACY_CHECKPOINT_FILE, read_metrics

MANIFEST = f'{CHECKPOINT_DIR}/manifest.json'  # there once a checkpoint is whole

FLAGS = [
  '--env',
  'minatar/breakout',
  '--steps',
  '3000',
  '--warmup-steps',
  '500',
  '--eval-period',
  '1000',
  '--eval-steps',
  '200',
  '--log-period',
  '500',
  '--sigma-log-period',
  '1000',
  '--checkpoint-period',
  '1000',
  '--seed',
  '4',
  '--no-progress',
]


def _cli(*args, **kwargs):
  return subprocess.Popen(
    [sys.executable, '-m', 'smoothrl.launch.cli', 'train', *args],
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
    **kwargs,
  )


def _timeless(records):
  return [{k: v for k, v in r.items() if k not in ('elapsed', 'steps_per_sec')} for r in records]


def test_sigkill_mid_run_resumes_to_the_uninterrupted_result(tmp_path):
  full, killed = tmp_path / 'full', tmp_path / 'killed'
  reference = _cli(*FLAGS, '--out', str(full))
  victim = _cli(*FLAGS, '--out', str(killed))
  deadline = time.time() + 300
  while time.time() < deadline:  # kill once a checkpoint exists and training has moved past it
    steps = [r['step'] for r in read_metrics(killed / 'metrics.jsonl')] if (killed / 'metrics.jsonl').exists() else []
    if (killed / MANIFEST).exists() and steps and max(steps) > 2000:
      break
    time.sleep(0.2)
  else:
    pytest.fail('the run never reached its checkpoint')
  os.kill(victim.pid, signal.SIGKILL)
  victim.wait()
  saved = checkpoint.load(killed).step  # what a killed run leaves behind: where a resume continues
  assert saved >= 1000 and recorder.read_status(killed) == {'state': 'running', 'step': saved}

  resumed = _cli('--resume', str(killed), '--no-progress')
  assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
  assert reference.wait(timeout=300) == 0, reference.stderr.read()

  a, b = list(read_metrics(full / 'metrics.jsonl')), list(read_metrics(killed / 'metrics.jsonl'))
  assert _timeless(a) == _timeless(b)  # same episodes, losses, sigmas and evaluations, each written once
  train = [r['step'] for r in b if r['kind'] == 'train']
  assert train == list(range(1000, 3001, 500))
  assert json.loads((killed / 'summary.json').read_text())['steps'] == 3000
  assert recorder.read_status(killed) == {'state': 'done', 'step': 3000}
  assert not (killed / CHECKPOINT_DIR).exists()

  again = _cli('--resume', str(killed), '--no-progress')  # a finished run is left alone
  assert again.wait(timeout=120) == 0
  assert _timeless(list(read_metrics(killed / 'metrics.jsonl'))) == _timeless(b)


def test_non_finite_loss_stops_the_run_with_its_reason(tmp_path):
  cfg = config_lib.replace(
    config_lib.TrainConfig(
      env='chain/4',
      out=str(tmp_path),
      steps=400,
      log_period=100,
      eval_period=400,
      eval_steps=20,
      sigma_log_period=400,
      checkpoint_period=0,
    ),
    **{
      'network.conv_layers': 0,
      'dqn.warmup_steps': 50,
      'dqn.learning_rate': 1e30,
      'dqn.gamma': 1.0,
      'dqn.adam_eps': 1e-30,
    },
  )
  with pytest.raises(config_lib.TrainingError, match='non-finite loss'):
    host.train(cfg, show_progress=False)
  status = recorder.read_status(tmp_path)
  assert status['state'] == 'failed' and 'non-finite loss' in status['error']
  assert 0 < status['step'] == recorder.last_recorded_step(tmp_path) < 400  # how far it got


def test_a_diverging_run_stops_alone_among_several(tmp_path):
  cfg = config_lib.replace(
    config_lib.TrainConfig(
      env='chain/4',
      steps=400,
      log_period=100,
      eval_period=400,
      eval_steps=20,
      sigma_log_period=400,
      checkpoint_period=0,
    ),
    **{'network.conv_layers': 0, 'dqn.warmup_steps': 50},
  )
  diverging = config_lib.replace(cfg, out=str(tmp_path / 'nan'), **{'dqn.learning_rate': 1e30})
  fine = config_lib.replace(cfg, out=str(tmp_path / 'fine'))
  failed, done = host.train_many([diverging, fine], show_progress=False)
  assert failed == recorder.read_status(diverging.out) and 'non-finite loss' in failed['error']
  assert done['steps'] == 400 and recorder.read_status(fine.out) == {'state': 'done', 'step': 400}


def test_resume_refuses_a_different_config(tmp_path):
  cfg = config_lib.TrainConfig(
    env='chain/4',
    out=str(tmp_path),
    steps=200,
    log_period=100,
    eval_period=200,
    eval_steps=10,
    sigma_log_period=200,
    checkpoint_period=0,
  )
  cfg = config_lib.replace(cfg, **{'network.conv_layers': 0, 'dqn.warmup_steps': 50})
  host.train(cfg, show_progress=False)
  with pytest.raises(config_lib.ConfigError, match='different config'):
    host.train(config_lib.replace(cfg, seed=1), show_progress=False, resume=True)


def test_resume_refuses_a_checkpoint_that_does_not_fit_the_run(tmp_path):
  cfg = config_lib.TrainConfig(
    env='chain/4',
    out=str(tmp_path),
    steps=400,
    log_period=100,
    eval_period=400,
    eval_steps=10,
    sigma_log_period=400,
    checkpoint_period=200,
  )
  cfg = config_lib.replace(cfg, **{'network.conv_layers': 0, 'network.hidden': 16, 'dqn.warmup_steps': 50})

  interrupt_at(300, lambda: host.train(cfg, show_progress=False), host)
  saved = checkpoint.load(tmp_path)
  assert saved.step == 200
  paths = [leaf['path'] for leaf in checkpoint.read_manifest(tmp_path / CHECKPOINT_DIR)['trees']['state']]
  state = list(saved.leaves['state'])  # as a checkpoint of a critic with another hidden width would hold
  w = paths.index(".params['hidden']['w']")
  state[w] = state[w][:, :8]
  checkpoint.save(tmp_path, saved.step, {**saved.leaves, 'state': state}, saved.meta)
  metrics = (tmp_path / 'metrics.jsonl').read_text()

  with pytest.raises(
    config_lib.ConfigError,
    match=r"params\['hidden'\]\['w'\] is float32\[4, 8\], the run needs "
    r'float32\[4, 16\]; remove .*checkpoint to start the run afresh',
  ):
    host.train(cfg, show_progress=False, resume=True)
  assert (tmp_path / 'metrics.jsonl').read_text() == metrics  # the records after the checkpoint kept
  status = recorder.read_status(tmp_path)
  assert status['state'] == 'failed' and 'does not fit this run' in status['error']


def test_a_checkpoint_holds_its_step_in_its_manifest_and_a_pickle_one_is_refused(tmp_path):
  params = np.arange(4.0)
  assert checkpoint.saved_step(tmp_path) is None and checkpoint.load(tmp_path) is None
  checkpoint.save(tmp_path, 300, {'params': params}, {'episodes': 2})
  assert json.loads((tmp_path / MANIFEST).read_text())['step'] == 300  # read alone, without the arrays
  assert checkpoint.saved_step(tmp_path) == 300
  saved = checkpoint.load(tmp_path)
  assert (saved.step, saved.meta) == (300, {'episodes': 2})
  np.testing.assert_array_equal(saved.leaves['params'][0], params)
  for arrays in (tmp_path / CHECKPOINT_DIR).glob('arrays-*.npz'):
    arrays.unlink()
  assert checkpoint.saved_step(tmp_path) == 300  # the manifest alone
  with pytest.raises(checkpoint.CheckpointError, match='is missing'):
    checkpoint.load(tmp_path)
  (tmp_path / LEGACY_CHECKPOINT_FILE).write_bytes(b'\x80\x05K\xc8.')  # a pickle, as earlier versions wrote: never read
  for read in (checkpoint.saved_step, checkpoint.load):
    with pytest.raises(checkpoint.CheckpointError, match='pickle checkpoint of an earlier smoothrl version'):
      read(tmp_path)


def _board(directory):
  """(tag, step) of the scalars TensorBoard shows from `directory`'s event files, read in the order written: a
  SessionLog START at step s purges the scalars at steps >= s written before it (tensorboardX's `purge_step`)."""
  shown = []
  for name in sorted(os.listdir(directory)):
    data, offset = (directory / name).read_bytes(), 0
    while offset < len(data):
      (length,) = struct.unpack('<Q', data[offset : offset + 8])
      event = event_pb2.Event.FromString(data[offset + 12 : offset + 12 + length])
      offset += 16 + length
      if event.HasField('session_log') and event.session_log.status == event_pb2.SessionLog.START:
        shown = [(tag, step) for tag, step in shown if step < event.step]
      shown += [(value.tag, event.step) for value in event.summary.value]
  return shown


def test_a_resumed_run_shows_each_step_once_in_tensorboard(tmp_path):
  cfg = config_lib.TrainConfig(
    env='chain/4',
    steps=400,
    log_period=100,
    eval_period=400,
    eval_steps=10,
    sigma_log_period=100,
    checkpoint_period=200,
    tensorboard=True,
  )
  cfg = config_lib.replace(cfg, **{'network.conv_layers': 0, 'network.hidden': 16, 'dqn.warmup_steps': 50})
  whole = config_lib.replace(cfg, out=str(tmp_path / 'whole'))
  host.train(whole, show_progress=False)
  stopped = config_lib.replace(cfg, out=str(tmp_path / 'stopped'))
  interrupt_at(300, lambda: host.train(stopped, show_progress=False), host)  # records up to 300, checkpoint at 200
  host.train(stopped, show_progress=False, resume=True)
  shown = _board(tmp_path / 'stopped' / 'tensorboard')
  assert len(shown) == len(set(shown))  # no step twice
  for tag in {tag for tag, _ in shown}:
    steps = [step for t, step in shown if t == tag]
    assert steps == sorted(steps)  # none going backwards
  assert sorted(shown) == sorted(_board(tmp_path / 'whole' / 'tensorboard'))
