"""End to end through the command line: the files a short run writes, and refusals before any work starts."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from smoothrl.launch import cli
from smoothrl.launch.run import config as config_lib
from smoothrl.launch.run.files import read_metrics


def test_short_minatar_run_writes_config_and_metrics(tmp_path, capsys):
  out = tmp_path / 'run'
  code = cli.main(
    [
      'train',
      '--agent',
      'dqn',
      '--env',
      'minatar/breakout',
      '--steps',
      '1500',
      '--seed',
      '3',
      '--warmup-steps',
      '500',
      '--eval-period',
      '1000',
      '--eval-steps',
      '300',
      '--log-period',
      '250',
      '--sigma-log-period',
      '500',
      '--method',
      'sn',
      '--layers',
      '-2,-3',
      '--learning-rate',
      '0.001',
      '--out',
      str(out),
      '--no-progress',
    ]
  )
  assert code == 0
  assert 'evaluation return' in capsys.readouterr().out

  config = config_lib.TrainConfig.from_dict(json.loads((out / 'config.json').read_text()))
  assert (config.steps, config.seed, config.env) == (1500, 3, 'minatar/breakout')
  assert config.method.method == 'sn' and config.method.layers == (-2, -3)
  assert config.dqn.learning_rate == 0.001 and config.dqn.gamma == 0.99  # flag and Table E.1 default

  records = list(read_metrics(out / 'metrics.jsonl'))
  assert all('step' in r for r in records)
  evals = [r for r in records if r['kind'] == 'eval']
  assert [r['step'] for r in evals] == [1000, 1500]
  assert all(r['epsilon'] == 0.001 and r['smoothness'] > 0 for r in evals)
  train = [r for r in records if r['kind'] == 'train']
  assert [r['step'] for r in train] == [750, 1000, 1250, 1500]  # learning starts after the 500 warm-up steps
  assert train[-1]['updates'] == (1500 - 500) // 4
  sigmas = [r for r in records if r['kind'] == 'sigma']
  assert [r['step'] for r in sigmas] == [500, 1000, 1500]
  assert set(sigmas[-1]['sigma']) == {'conv_0', 'conv_1', 'hidden', 'out'}
  assert sigmas[-1]['selected'] == ['conv_1', 'hidden']
  episodes = [r for r in records if r['kind'] == 'episode']
  assert episodes and all(r['return'] >= 0 and r['length'] > 0 for r in episodes)
  summary = json.loads((out / 'summary.json').read_text())
  assert summary['steps'] == 1500 and summary['final_eval'] == {k: evals[-1][k] for k in summary['final_eval']}


@pytest.mark.parametrize(
  'flags, message',
  [
    (
      ['--env', 'minatar/pong'],
      'valid: minatar/asterix, minatar/breakout, minatar/freeway, minatar/seaquest, minatar/space_invaders',
    ),
    (['--agent', 'ppo'], "unknown agent 'ppo'; valid: dqn"),
    (['--method', 'sn', '--layers', '7'], 'The critic has 4 layers, indexed from the output: -4 = conv_0'),
    (['--method', 'sn', '--layers', '-2,-2'], 'duplicate layer indices'),
    (['--method', 'weird'], "unknown method 'weird'"),
    (['--steps', '0'], 'steps must be a positive integer'),
    (['--seeds', '0-1', '--workers', '-1'], 'workers must be 0 (one per core) or positive'),
    (
      ['--seed', '-1'],
      'seed must be an integer from 0 to 4,293,967,292 (evaluation seeds it + 1,000,003, below 2**32), got -1',
    ),
    (['--seed', str(2**32)], 'got 4294967296'),
    (['--seeds', '4293967292-4293967293'], 'got 4293967293'),  # the first seed is the largest there is
    (['--env', 'atari/Pong', '--seed', str(2**31)], 'seed must be an integer from 0 to 2,146,483,644'),
  ],
)
def test_bad_input_is_refused_before_any_work(tmp_path, capsys, flags, message):
  out = tmp_path / 'never'
  assert cli.main(['train', '--out', str(out), *flags]) == 2
  err = capsys.readouterr().err
  assert message in err and 'Traceback' not in err
  assert err.strip().splitlines()[-1].startswith('smoothrl: ')
  assert not out.exists()


def test_bad_seeds_leave_no_default_run_directory(tmp_path, monkeypatch, capsys):
  monkeypatch.chdir(tmp_path)
  assert cli.main(['train', '--seed', '-1', '--steps', '100', '--no-progress']) == 2
  assert capsys.readouterr().err == (
    'smoothrl: invalid config: seed must be an integer from 0 to 4,293,967,292 '
    '(evaluation seeds it + 1,000,003, below 2**32), got -1\n'
  )
  assert not list(tmp_path.iterdir())


@pytest.mark.parametrize('where', ['file', 'file/sub', 'file/sub/deeper'])
def test_an_out_that_cannot_be_a_directory_is_refused(tmp_path, capsys, where):
  (tmp_path / 'file').write_text('not a directory')
  out = tmp_path / where
  assert cli.main(['train', '--out', str(out), '--steps', '100', '--no-progress']) == 2
  err = capsys.readouterr().err
  assert err.startswith('smoothrl: --out ') and 'is a file, not a directory' in err and len(err.splitlines()) == 1
  assert sorted(p.name for p in tmp_path.iterdir()) == ['file']
  assert (tmp_path / 'file').read_text() == 'not a directory'


def test_an_out_in_a_directory_without_write_permission_is_refused(tmp_path, capsys, monkeypatch):
  locked = tmp_path / 'locked'
  locked.mkdir()
  access = os.access
  # As root every directory is writable, so the directory says it is not, as a read-only one does.
  monkeypatch.setattr(
    os, 'access', lambda path, mode, **kw: False if Path(path) == locked else access(path, mode, **kw)
  )
  for out in (locked, locked / 'run'):
    assert cli.main(['train', '--out', str(out), '--steps', '100', '--no-progress']) == 2
    assert capsys.readouterr().err == f'smoothrl: --out {out}: cannot write in {locked}\n'
  assert not list(locked.iterdir())


@pytest.mark.skipif(os.geteuid() == 0, reason='root may write in any directory')
def test_a_read_only_directory_is_refused(tmp_path, capsys):
  locked = tmp_path / 'locked'
  locked.mkdir()
  locked.chmod(0o500)
  try:
    assert cli.main(['train', '--out', str(locked / 'run'), '--steps', '100', '--no-progress']) == 2
    assert 'cannot write in' in capsys.readouterr().err
  finally:
    locked.chmod(0o700)


def test_members_per_program_is_an_option_not_a_config_field():
  args = cli.parser().parse_args(['train', '--members-per-program', '2', '--seeds', '0-1'])
  assert [c.seed for c in cli.configs_from_args(args)] == [0, 1]


@pytest.mark.parametrize('command', [[], ['train'], ['sweep'], ['summary'], ['plot']])
def test_every_command_has_help(capsys, command):
  with pytest.raises(SystemExit) as info:
    cli.main([*command, '--help'])
  assert info.value.code == 0
  out = capsys.readouterr().out
  assert out.startswith(f'usage: smoothrl {command[0] if command else ""}'.rstrip())
  if not command:
    assert '95% confidence interval' in out  # the summary command's help, a literal '%'


def test_help_from_the_installed_command():
  script = Path(sys.executable).parent / 'smoothrl'
  command = [str(script)] if script.exists() else [sys.executable, '-m', 'smoothrl.launch.cli']
  proc = subprocess.run([*command, '--help'], capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.startswith('usage: smoothrl') and 'Traceback' not in proc.stderr
  for name in ('train', 'sweep', 'summary', 'plot'):
    assert name in proc.stdout


def test_runs_larger_than_the_accelerator_are_refused_before_any_work(tmp_path, capsys, monkeypatch):
  from smoothrl.launch.run import compiled  # pylint: disable=g-import-not-at-top

  monkeypatch.setattr(compiled.jax, 'default_backend', lambda: 'gpu')  # members vmapped, as on an accelerator
  monkeypatch.setattr(compiled, 'device_bytes', lambda: 2**20)
  out = tmp_path / 'never'
  assert cli.main(['train', '--runner', 'compiled', '--seeds', '0-1', '--out', str(out)]) == 2
  assert 'lower dqn.replay_capacity' in capsys.readouterr().err
  assert not out.exists()


def test_help_documents_the_flags():
  proc = subprocess.run(
    [sys.executable, '-m', 'smoothrl.launch.cli', 'train', '--help'], capture_output=True, text=True, timeout=120
  )
  assert proc.returncode == 0
  for flag in (
    '--agent',
    '--env',
    '--steps',
    '--seed',
    '--out',
    '--method',
    '--layers',
    '--lipschitz',
    '--learning-rate',
    '--adam-eps',
    '--target-update-period',
    '--eval-period',
    '--eval-steps',
  ):
    assert flag in proc.stdout


def test_seeds_after_one_that_diverged_still_run_and_the_exit_code_says_so(tmp_path, capsys):
  flags = [
    '--env',
    'chain/4',
    '--conv-layers',
    '0',
    '--steps',
    '400',
    '--warmup-steps',
    '50',
    '--log-period',
    '100',
    '--eval-period',
    '400',
    '--eval-steps',
    '20',
    '--sigma-log-period',
    '400',
    '--no-progress',
  ]
  assert cli.main(['train', *flags, '--learning-rate', '1e30', '--seeds', '0-1', '--out', str(tmp_path)]) == 1
  err = capsys.readouterr().err
  failed = [line.split(':')[0] for line in err.splitlines() if 'run failed: TrainingError: non-finite loss' in line]
  assert failed == ['seed 0', 'seed 1']
  statuses = [json.loads(p.read_text()) for p in sorted(tmp_path.glob('*/status.json'))]
  assert len(statuses) == 2 and all('non-finite loss' in s['error'] for s in statuses)
  # Every run failed: the summary is a table of failures, and there is nothing to plot.
  with pytest.warns(UserWarning, match='failed before its first evaluation'):
    assert cli.main(['summary', str(tmp_path)]) == 0
  table = capsys.readouterr().out.splitlines()
  assert table[0].split()[-1] == 'failed' and table[2].split()[-4:] == ['0', '—', '—', '2']
  with pytest.warns(UserWarning):
    assert cli.main(['plot', str(tmp_path)]) == 2
  assert '(2 failed: `smoothrl summary` lists them)' in capsys.readouterr().err
