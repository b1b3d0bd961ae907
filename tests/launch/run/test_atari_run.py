"""Short Atari runs through the command line at the thesis presets, read back from the files they wrote."""

import json

import pytest
from chain_runs import interrupt_at

from smoothrl.envs import atari_scores
from smoothrl.launch import cli
from smoothrl.launch.run import checkpoint, host
from smoothrl.launch.run import config as config_lib
from smoothrl.launch.run.files import read_metrics

SHORT = [
  '--env',
  'atari/Pong',
  '--steps',
  '400',
  '--warmup-steps',
  '200',
  '--replay-capacity',
  '2000',
  '--eval-period',
  '400',
  '--eval-steps',
  '300',
  '--log-period',
  '200',
  '--sigma-log-period',
  '400',
  '--checkpoint-period',
  '0',
  '--no-progress',
  # Same parameters and outputs as the preset's patch convolutions (tests/test_critics.py), 20 s less compiling.
  '--conv-impl',
  'xla',
]


@pytest.mark.parametrize('preset', ['dqn-adam-atari', pytest.param('c51-atari', marks=pytest.mark.slow)])
def test_pong_at_a_preset_writes_raw_and_normalised_scores(tmp_path, preset):
  out = tmp_path / preset
  assert cli.main(['train', '--preset', preset, *SHORT, '--out', str(out)]) == 0
  config = config_lib.TrainConfig.from_dict(json.loads((out / 'config.json').read_text()))
  assert config.network.conv_channels == (32, 64, 64) and config.network.hidden == 512  # Table E.5
  assert config.dqn.target_update_period == 8_000 and config.dqn.learning_rate == 0.00025
  assert config.agent == ('c51' if preset == 'c51-atari' else 'dqn')
  assert config.dqn.loss == 'huber' or preset == 'c51-atari'
  evals = list(read_metrics(out / 'metrics.jsonl', 'eval'))
  assert [r['step'] for r in evals] == [400]
  record = evals[0]
  assert -21 <= record['return_mean'] <= 21  # a raw Pong score
  assert record['return_hns'] == pytest.approx(atari_scores.human_normalised_score('Pong', record['return_mean']))
  sigmas = list(read_metrics(out / 'metrics.jsonl', 'sigma'))[0]['sigma']
  assert set(sigmas) == {'conv_0', 'conv_1', 'conv_2', 'hidden', 'out'}


def test_unknown_atari_game_lists_the_games(capsys):
  assert cli.main(['train', '--env', 'atari/NotAGame']) == 2
  err = capsys.readouterr().err
  assert "unknown environment 'atari/NotAGame'" in err and 'atari/Pong' in err and 'atari/MontezumaRevenge' in err


@pytest.mark.slow
@pytest.mark.parametrize('protocol', ['noop', 'sticky'])
def test_a_stopped_pong_run_resumes_through_the_command_line_to_the_uninterrupted_result(tmp_path, protocol):
  """The frame replay, both emulators (with sticky actions, the action they repeat) and the no-op starts come back
  from the checkpoint exactly."""
  flags = [
    *SHORT,
    '--steps',
    '600',
    '--eval-period',
    '200',
    '--eval-steps',
    '100',
    '--sigma-log-period',
    '200',
    '--checkpoint-period',
    '200',
    '--protocol',
    protocol,
    '--max-episode-frames',
    '800',
  ]
  full, stopped = tmp_path / 'full', tmp_path / 'stopped'
  assert cli.main(['train', '--preset', 'dqn-adam-atari', *flags, '--out', str(full)]) == 0
  interrupt_at(500, lambda: cli.main(['train', '--preset', 'dqn-adam-atari', *flags, '--out', str(stopped)]), host)
  assert checkpoint.saved_step(stopped) == 400
  assert cli.main(['train', '--resume', str(stopped), '--no-progress']) == 0
  timeless = lambda out: [
    {k: v for k, v in r.items() if k not in ('elapsed', 'steps_per_sec')} for r in read_metrics(out / 'metrics.jsonl')
  ]
  assert timeless(full) == timeless(stopped)
  assert {r['kind'] for r in timeless(stopped)} == {'episode', 'train', 'sigma', 'eval'}
