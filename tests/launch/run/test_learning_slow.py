"""Learning checks on MinAtar, one short run per method (the slow set: `make test-slow`)."""

import pytest

from smoothrl.launch.run import config as config_lib
from smoothrl.launch.run import host
from smoothrl.launch.run.files import read_metrics

BREAKOUT_RANDOM = 0.52  # thesis Table E.2


@pytest.mark.slow
@pytest.mark.parametrize('method', ['none', 'sn', 'divout', 'divgrad', 'muleps'])
def test_each_method_learns_breakout(tmp_path, method):
  cfg = config_lib.replace(
    config_lib.preset('minatar-quick'),
    out=str(tmp_path),
    steps=40_000,
    eval_period=20_000,
    eval_steps=5_000,
    seed=1,
    **{'method.method': method, 'method.layers': (-2,)},
  )
  summary = host.train(cfg, show_progress=False)
  evals = list(read_metrics(tmp_path / 'metrics.jsonl', 'eval'))
  assert evals[-1] == {**evals[-1], **summary['final_eval']}
  assert summary['final_eval']['return_mean'] > 2 * BREAKOUT_RANDOM, summary['final_eval']


@pytest.mark.slow
@pytest.mark.parametrize('agent', ['dqn', 'c51'])
def test_compiled_runner_learns_breakout(tmp_path, agent):
  from smoothrl.launch.run import compiled  # pylint: disable=g-import-not-at-top

  cfg = config_lib.replace(
    config_lib.preset('minatar-quick'),
    out=str(tmp_path),
    steps=40_000,
    eval_period=20_000,
    eval_steps=5_000,
    seed=1,
    runner='compiled',
    agent=agent,
    **{'method.method': 'sn', 'method.layers': (-2,)},
  )
  (summary,) = compiled.train_grid([cfg], show_progress=False)
  assert summary['final_eval']['return_mean'] > 2 * BREAKOUT_RANDOM, summary['final_eval']
