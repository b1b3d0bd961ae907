"""Supervised runs on the shared platform: `smoothrl fit`, vmapped learning-rate × seed groups, sweeps that resume
after SIGKILL, failures that stop one member, and summaries and plots of the run directories."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from smoothrl.launch import cli
from smoothrl.launch.run import checkpoint, recorder, supervised
from smoothrl.launch.run import config as config_lib
from smoothrl.launch.run.files import CHECKPOINT_DIR, read_metrics
from smoothrl.launch.run.kind import TrainOptions

TIMELESS = ('elapsed',)


def _config(out, **fields):
  """A small digits run: an MLP of 32 units, full batch, 40 steps, an evaluation every 10."""
  base = supervised.FitConfig(out=str(out), steps=40, log_period=10, checkpoint_period=20)
  return config_lib.replace(
    base, **{'model.widths': (32,), 'metrics.gc_points': 64, 'optimizer.learning_rate': 0.1, **fields}
  )


def _evals(out):
  return [{k: v for k, v in r.items() if k not in TIMELESS} for r in read_metrics(out / 'metrics.jsonl')]


def test_fit_on_digits_with_dal_p_writes_the_rate_and_gc(tmp_path, capsys):
  out = tmp_path / 'digits'
  argv = ['fit', '--data', 'digits', '--model', 'mlp:32', '--optimizer', 'dal-p', '--p', '0.5', '--steps', '30']
  assert cli.main([*argv, '--log-period', '10', '--out', str(out), '--no-progress']) == 0
  assert 'test accuracy' in capsys.readouterr().out
  records = _evals(out)
  assert [r['step'] for r in records] == [0, 10, 20, 30] and all(r['kind'] == 'eval' for r in records)
  for r in records[1:]:  # after a step: the rate DAL took
    assert r['gc'] > 0 and 0 < r['dal_rate'] <= 5.0
    # DAL-0.5's rate is 2/‖Hĝ‖^0.5 of the batch it stepped on, the full batch here; the record's ‖Hg‖ and ‖g‖
    # are measured after the step, so the two agree only roughly.
    assert r['drift'] == pytest.approx(r['rate'] ** 2 / 2 * r['hg_norm'], rel=1e-5)
  assert json.loads((out / 'run.json').read_text()) == {'kind': 'supervised'}
  assert recorder.read_status(out) == {'state': 'done', 'step': 30}
  meta, leaves = checkpoint.load_model(out)
  assert meta['config']['optimizer']['name'] == 'dal-p' and leaves


def test_a_vmapped_group_matches_its_runs_one_after_another(tmp_path):
  configs = [
    _config(tmp_path / f'{mode}_{h}_{s}', seed=s, **{'optimizer.learning_rate': h})
    for mode in ('together', 'alone')
    for h in (0.05, 0.2)
    for s in (0, 1)
  ]
  together, alone = configs[:4], configs[4:]
  assert len({supervised.group(c) for c in configs}) == 1
  summaries = supervised.train(together, TrainOptions(show_progress=False, compiled=True))
  assert all(s['members_together'] == 4 for s in summaries)
  summaries = supervised.train(alone, TrainOptions(show_progress=False, compiled=False))
  assert all(s['members_together'] == 1 for s in summaries)
  for a, b in zip(together, alone):
    ra, rb = _evals(tmp_path / a.out), _evals(tmp_path / b.out)
    assert [r['step'] for r in ra] == [r['step'] for r in rb]
    for x, y in zip(ra, rb):
      for key in ('train_loss', 'test_accuracy', 'grad_norm', 'gc'):
        assert x[key] == pytest.approx(y[key], rel=2e-4, abs=1e-6), key
  finals = {(c.optimizer.learning_rate, c.seed): _evals(tmp_path / c.out)[-1]['train_loss'] for c in together}
  assert finals[(0.2, 0)] < finals[(0.05, 0)]  # the larger rate went further in 40 steps
  assert finals[(0.05, 0)] != finals[(0.05, 1)]  # seeds differ


def test_a_diverging_member_stops_alone(tmp_path):
  configs = [_config(tmp_path / name, **{'optimizer.learning_rate': h}) for name, h in (('ok', 0.1), ('big', 1e30))]
  summaries = supervised.train(configs, TrainOptions(show_progress=False, compiled=True))
  assert summaries[1]['state'] == 'failed' and 'non-finite loss' in summaries[1]['error']
  assert recorder.read_status(tmp_path / 'ok')['state'] == 'done'
  assert recorder.read_status(tmp_path / 'big')['state'] == 'failed'


def test_every_problem_of_a_config_is_listed_before_work(tmp_path):
  config = config_lib.replace(
    _config(tmp_path), steps=0, **{'data.name': 'digitz', 'optimizer.name': 'adamw', 'model.activation': 'gelu'}
  )
  with pytest.raises(config_lib.ConfigError) as e:
    supervised.validate(config)
  text = str(e.value)
  for word in ('steps', 'digitz', 'adamw', 'gelu'):
    assert word in text
  assert not (tmp_path / 'config.json').exists()


def test_a_learning_rate_is_ignored_by_dal_when_finding_repeats(tmp_path):
  a = _config(tmp_path, **{'optimizer.name': 'dal', 'optimizer.learning_rate': 0.1})
  b = config_lib.replace(a, **{'optimizer.learning_rate': 0.3})
  assert supervised.canonical(a) == supervised.canonical(b)
  sgd = config_lib.replace(a, **{'optimizer.name': 'sgd'})
  assert supervised.canonical(sgd) != supervised.canonical(config_lib.replace(sgd, **{'optimizer.learning_rate': 0.3}))


SPEC = """
name: digits-lr
kind: supervised
out: {out}
base:
  steps: 1200
  log_period: 100
  checkpoint_period: 300
  model.widths: [32]
  metrics.gc_points: 32
grid:
  optimizer.learning_rate: [0.05, 0.2]
  seed: [0, 1]
"""


def _sweep(spec, *flags):
  return subprocess.Popen(
    [sys.executable, '-m', 'smoothrl.launch.cli', 'sweep', str(spec), '--no-progress', *flags],
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )


def test_a_supervised_sweep_resumes_after_sigkill_and_plots(tmp_path):
  specs = {}
  for name in ('full', 'killed'):
    specs[name] = tmp_path / f'{name}.yaml'
    specs[name].write_text(SPEC.format(out=tmp_path / name))
  reference = _sweep(specs['full'], '--backend', 'compiled')
  victim = _sweep(specs['killed'], '--backend', 'compiled')
  runs = tmp_path / 'killed' / 'runs'
  deadline = time.time() + 240
  while time.time() < deadline:  # kill once every member has a checkpoint and training has moved past it
    dirs = [d for d in runs.glob('*') if (d / 'metrics.jsonl').exists()] if runs.exists() else []
    steps = [max((r['step'] for r in read_metrics(d / 'metrics.jsonl')), default=0) for d in dirs]
    whole = [(d / CHECKPOINT_DIR / 'manifest.json').exists() for d in dirs]
    if len(dirs) == 4 and all(whole) and min(steps) > 400:
      break
    time.sleep(0.05)
  else:
    pytest.fail('the sweep never reached its checkpoints')
  os.kill(victim.pid, signal.SIGKILL)
  victim.wait()
  assert all(recorder.read_status(d)['state'] == 'running' for d in runs.glob('*'))
  resumed = _sweep(specs['killed'], '--backend', 'compiled')
  assert resumed.wait(timeout=240) == 0, resumed.stderr.read()
  assert reference.wait(timeout=240) == 0, reference.stderr.read()
  for d in sorted((tmp_path / 'full' / 'runs').glob('*')):
    a, b = _evals(d), _evals(runs / d.name)
    assert [r['step'] for r in a] == [r['step'] for r in b] == list(range(0, 1201, 100))
    for x, y in zip(a, b):
      assert x['train_loss'] == pytest.approx(y['train_loss'], rel=1e-5)
      assert x['test_accuracy'] == pytest.approx(y['test_accuracy'], abs=1e-6)
  index = json.loads((tmp_path / 'killed' / 'index.json').read_text())
  assert index['counts']['done'] == 4

  plots = tmp_path / 'plots'
  plot = subprocess.run(
    [sys.executable, '-m', 'smoothrl.launch.cli', 'plot', str(tmp_path / 'killed'), '--out', str(plots)],
    capture_output=True,
    text=True,
  )
  assert plot.returncode == 0, plot.stderr
  assert list(plots.glob('*.png'))
  summary = subprocess.run(
    [sys.executable, '-m', 'smoothrl.launch.cli', 'summary', str(tmp_path / 'killed')], capture_output=True, text=True
  )
  assert summary.returncode == 0, summary.stderr
  assert 'digits' in summary.stdout and 'accuracy' in summary.stdout
  final = np.mean([_evals(d)[-1]['test_accuracy'] for d in runs.glob('*')])
  assert final > 0.9  # a 32-unit MLP learns the 8×8 digits in 1,200 full-batch steps
