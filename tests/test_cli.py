"""End to end through the command line: the files a short run writes, and refusals before any work starts."""

import json
import subprocess
import sys

import pytest

from smoothrl.launch import cli
from smoothrl.launch.run import config as config_lib
from smoothrl.launch.run.files import read_metrics


def test_short_minatar_run_writes_config_and_metrics(tmp_path, capsys):
  out = tmp_path / 'run'
  code = cli.main(['train', '--agent', 'dqn', '--env', 'minatar/breakout', '--steps', '1500', '--seed', '3',
                   '--warmup-steps', '500', '--eval-period', '1000', '--eval-steps', '300', '--log-period', '250',
                   '--sigma-log-period', '500', '--method', 'sn', '--layers', '-2,-3', '--learning-rate', '0.001',
                   '--out', str(out), '--no-progress'])
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


@pytest.mark.parametrize('flags, message', [
    (['--env', 'minatar/pong'], 'valid: minatar/asterix, minatar/breakout, minatar/freeway, minatar/seaquest, '
                                'minatar/space_invaders'),
    (['--agent', 'ppo'], "unknown agent 'ppo'; valid: dqn"),
    (['--method', 'sn', '--layers', '7'], 'The critic has 4 layers, indexed from the output: -4 = conv_0'),
    (['--method', 'sn', '--layers', '-2,-2'], 'duplicate layer indices'),
    (['--method', 'weird'], "unknown method 'weird'"),
    (['--steps', '0'], 'steps must be a positive integer'),
    (['--seeds', '0-1', '--workers', '-1'], 'workers must be 0 (one per core) or positive'),
])
def test_bad_input_is_refused_before_any_work(tmp_path, capsys, flags, message):
  out = tmp_path / 'never'
  assert cli.main(['train', '--out', str(out), *flags]) == 2
  assert message in capsys.readouterr().err
  assert not out.exists()


def test_runs_larger_than_the_accelerator_are_refused_before_any_work(tmp_path, capsys, monkeypatch):
  from smoothrl.launch.run import compiled  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(compiled.jax, 'default_backend', lambda: 'gpu')  # members vmapped, as on an accelerator
  monkeypatch.setattr(compiled, 'device_bytes', lambda: 2**20)
  out = tmp_path / 'never'
  assert cli.main(['train', '--runner', 'compiled', '--seeds', '0-1', '--out', str(out)]) == 2
  assert 'lower dqn.replay_capacity' in capsys.readouterr().err
  assert not out.exists()


def test_help_documents_the_flags():
  proc = subprocess.run([sys.executable, '-m', 'smoothrl.launch.cli', 'train', '--help'], capture_output=True,
                        text=True, timeout=120)
  assert proc.returncode == 0
  for flag in ('--agent', '--env', '--steps', '--seed', '--out', '--method', '--layers', '--lipschitz',
               '--learning-rate', '--adam-eps', '--target-update-period', '--eval-period', '--eval-steps'):
    assert flag in proc.stdout


def test_seeds_after_one_that_diverged_still_run_and_the_exit_code_says_so(tmp_path, capsys):
  flags = ['--env', 'chain/4', '--conv-layers', '0', '--steps', '400', '--warmup-steps', '50', '--log-period', '100',
           '--eval-period', '400', '--eval-steps', '20', '--sigma-log-period', '400', '--no-progress']
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
