"""Sweep execution: local processes, the compiled runner and a Ray cluster run the same spec; nothing is redone."""

import concurrent.futures
import json
import os
import re
import sys
import types

import pytest

from smoothrl.launch.run import compiled, recorder
from smoothrl.launch.run.files import read_metrics
from smoothrl.launch.sweeps import backends
from smoothrl.launch.sweeps import spec as sweep


def _spec(out, grid=None, **base):
  return sweep.parse_spec(
    {
      'name': 'chain',
      'out': str(out),
      'base': {
        'env': 'chain/4',
        'steps': 400,
        'eval_period': 400,
        'eval_steps': 20,
        'log_period': 100,
        'sigma_log_period': 200,
        'checkpoint_period': 0,
        'network.conv_layers': 0,
        'network.hidden': 16,
        'dqn.warmup_steps': 100,
        'dqn.update_period': 2,
        **base,
      },
      'grid': grid or {'method.method': ['none', 'sn'], 'seed': [0, 1]},
    }
  )


def _index(out):
  return json.loads((out / backends.INDEX).read_text())


def test_local_sweep_runs_everything_once(tmp_path):
  spec = _spec(tmp_path / 'sweep')
  counts = backends.run_sweep(spec, workers=2, show_progress=False)
  assert counts == {'pending': 0, 'running': 0, 'done': 4, 'failed': 0}
  index = _index(tmp_path / 'sweep')
  assert [r['values'] for r in index['runs']] == [
    {'method.method': m, 'seed': s} for m in ('none', 'sn') for s in (0, 1)
  ]
  for run in sweep.expand(spec):
    assert [r['step'] for r in read_metrics(f'{run.out}/metrics.jsonl', 'eval')] == [400]
  stamps = {r.name: os.stat(f'{r.out}/metrics.jsonl').st_mtime_ns for r in sweep.expand(spec)}
  assert backends.run_sweep(spec, workers=2, show_progress=False)['done'] == 4  # a second invocation: nothing new
  assert stamps == {r.name: os.stat(f'{r.out}/metrics.jsonl').st_mtime_ns for r in sweep.expand(spec)}


def test_a_failed_run_is_recorded_and_does_not_stop_the_sweep(tmp_path):
  spec = _spec(tmp_path / 'sweep', grid={'seed': [0, 1, 2]})
  runs = sweep.expand(spec)
  broken = runs[1]
  os.makedirs(broken.out)  # a stale directory holding another run: this member fails before it starts
  (tmp_path / 'sweep' / 'runs' / broken.name / 'config.json').write_text(runs[0].config.to_json())
  counts = backends.run_sweep(spec, workers=1, show_progress=False)
  assert counts['done'] == 2 and counts['failed'] == 1
  failed = [r for r in _index(tmp_path / 'sweep')['runs'] if r['state'] == 'failed']
  assert [r['name'] for r in failed] == [broken.name] and 'different config' in failed[0]['error']
  assert backends.run_sweep(spec, workers=1, show_progress=False)['failed'] == 1  # left alone without retry
  os.remove(f'{broken.out}/config.json')
  assert backends.run_sweep(spec, workers=1, retry_failed=True, show_progress=False)['done'] == 3
  assert recorder.read_status(broken.out)['state'] == 'done'


def test_compiled_backend_runs_a_grid_of_one_structure(tmp_path):
  spec = _spec(tmp_path / 'sweep', grid={'dqn.learning_rate': [1e-3, 3e-3], 'seed': [0, 1]})
  assert backends.run_sweep(spec, backend='compiled', show_progress=False)['done'] == 4  # one worker per core
  for run in sweep.expand(spec):
    summary = json.loads(open(f'{run.out}/summary.json').read())
    assert summary['runner'] == 'compiled' and summary['steps'] == 400


def test_a_diverging_run_of_the_compiled_backend_fails_alone(tmp_path, capsys):
  from smoothrl.launch import cli  # pylint: disable=g-import-not-at-top

  base = {
    'env': 'chain/4',
    'steps': 400,
    'eval_period': 400,
    'eval_steps': 20,
    'log_period': 100,
    'sigma_log_period': 200,
    'checkpoint_period': 0,
    'network.conv_layers': 0,
    'network.hidden': 16,
    'dqn.warmup_steps': 100,
    'dqn.update_period': 2,
  }
  # Each worker's share starts with a run whose loss turns NaN; the runs after it in the share still run.
  code = cli.main(
    [
      'sweep',
      '--grid',
      'dqn.learning_rate=1e30,1e-3',
      '--grid',
      'seed=0-1',
      '--backend',
      'compiled',
      '--workers',
      '2',
      '--out',
      str(tmp_path),
      '--no-progress',
      *[arg for k, v in base.items() for arg in ('--set', f'{k}={v}')],
    ]
  )
  assert code == 1
  out, err = capsys.readouterr()
  assert ': 2 done, 2 failed, 0 pending; index in' in out
  named = [line.split(': ')[1] for line in err.splitlines() if line.startswith('  failed: ')]
  assert len(named) == 2 and all('non-finite loss' in line for line in err.splitlines() if 'failed: ' in line)
  for run in _index(tmp_path)['runs']:
    status = recorder.read_status(run['out'])
    if run['values']['dqn.learning_rate'] == 1e30:
      assert run['state'] == 'failed' and run['name'] in named and 'non-finite loss' in status['error']
      assert 0 < status['step'] == recorder.last_recorded_step(run['out'])
      assert not os.path.exists(f'{run["out"]}/summary.json')
    else:
      assert run['state'] == 'done' and status == {'state': 'done', 'step': 400}
  # The learning rates vary only through the diverged runs: the heatmaps show them, marked.
  assert cli.main(['plot', str(tmp_path), '--out', str(tmp_path / 'figs')]) == 0
  assert {'sensitivity_final.png', 'sensitivity_best.png'} <= {p.name for p in (tmp_path / 'figs').iterdir()}
  capsys.readouterr()
  assert cli.main(['summary', str(tmp_path)]) == 0  # the table counts them: both seeds of lr 1e30, no scores
  lines = capsys.readouterr().out.split('\n\n')[0].splitlines()  # the table, before the aggregates
  assert lines[0].split()[-1] == 'failed'
  assert [line.split()[-4:] for line in lines if 'lr=1e30' in line] == [['0', '—', '—', '2']]
  assert [line.split()[3] + line.split()[-1] for line in lines if 'lr=0.001' in line] == ['20']


def test_a_crash_of_the_compiled_backend_fails_the_run_it_hit(tmp_path, monkeypatch):
  spec = _spec(tmp_path / 'sweep', grid={'seed': [0, 1, 2]})
  train_members, calls = compiled._train_members, []

  def crash_the_second(*args):
    calls.append(args)
    if len(calls) == 2:
      raise RuntimeError('device lost')
    return train_members(*args)

  monkeypatch.setattr(compiled, '_train_members', crash_the_second)
  counts = backends.run_sweep(spec, backend='compiled', workers=1, show_progress=False)
  assert counts == {'pending': 1, 'running': 0, 'done': 1, 'failed': 1}  # the third never started
  assert [r['state'] for r in _index(tmp_path / 'sweep')['runs']] == ['done', 'failed', 'pending']
  assert recorder.read_status(sweep.expand(spec)[1].out)['error'] == 'RuntimeError: device lost'
  monkeypatch.undo()
  assert backends.run_sweep(spec, backend='compiled', workers=1, retry_failed=True, show_progress=False)['done'] == 3


def test_an_interrupted_sweep_ends_its_progress_line(tmp_path, monkeypatch, terminal):
  def interrupted(kind, todo, index, progress, submitter, capacity=None):
    progress.update(running=1)
    raise KeyboardInterrupt

  monkeypatch.setattr(backends, '_run_pool', interrupted)
  monkeypatch.setattr(sys, 'stderr', terminal)
  with pytest.raises(KeyboardInterrupt):
    backends.run_sweep(_spec(tmp_path / 'sweep'), workers=1)
  assert terminal.getvalue().startswith('\r[') and terminal.getvalue().endswith('\x1b[K\n')


def test_ray_backend_on_a_local_cluster(tmp_path):
  import ray  # pylint: disable=g-import-not-at-top

  ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
  try:
    spec = _spec(tmp_path / 'sweep', grid={'seed': [0, 1]})
    assert backends.run_sweep(spec, backend='ray', show_progress=False)['done'] == 2
    assert _index(tmp_path / 'sweep')['backend'] == 'ray'
    for run in sweep.expand(spec):
      assert recorder.read_status(run.out) == {'state': 'done', 'step': 400}
  finally:
    ray.shutdown()


def test_a_negative_worker_count_is_refused_before_anything_runs(tmp_path):
  with pytest.raises(ValueError, match='workers must be 0'):
    backends.run_sweep(_spec(tmp_path / 'sweep'), workers=-1, show_progress=False)
  assert not (tmp_path / 'sweep').exists()


def test_unknown_backend_is_refused(tmp_path):
  with pytest.raises(ValueError, match='unknown backend'):
    backends.run_sweep(_spec(tmp_path), backend='slurm')


def test_plot_and_summary_commands_read_a_finished_sweep(tmp_path, capsys):
  from smoothrl.launch import cli  # pylint: disable=g-import-not-at-top

  # The shape of specs/smoke.yaml: 2 methods x 2 learning rates x 2 seeds.
  spec = _spec(
    tmp_path / 'sweep', grid={'method.method': ['none', 'sn'], 'dqn.learning_rate': [1e-3, 3e-3], 'seed': [0, 1]}
  )
  assert backends.run_sweep(spec, backend='compiled', show_progress=False)['done'] == 8
  assert cli.main(['plot', str(tmp_path / 'sweep'), '--out', str(tmp_path / 'figs')]) == 0
  written = sorted(p.name for p in (tmp_path / 'figs').glob('*.png'))
  assert written == [
    'aggregate_intervals.png',
    'learning_curves.png',
    'method_bars.png',
    'performance_profiles.png',
    'sensitivity_best.png',
    'sensitivity_final.png',
  ]
  for name in written:
    assert (tmp_path / 'figs' / name).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert (tmp_path / 'figs' / name).with_suffix('.pdf').read_bytes()[:5] == b'%PDF-'
    assert b'<svg' in (tmp_path / 'figs' / name).with_suffix('.svg').read_bytes()[:1000]
  capsys.readouterr()
  assert cli.main(['summary', str(tmp_path / 'sweep')]) == 0
  table = capsys.readouterr().out.split('\n\n')[0]  # the table, before the aggregates
  finals = {}
  for run in sweep.expand(spec):
    last = list(read_metrics(f'{run.out}/metrics.jsonl', 'eval'))[-1]['return_mean']
    key = (run.config.method.method, run.config.dqn.learning_rate)
    finals.setdefault(key, []).append(last)
  assert len(table.strip().splitlines()) == 2 + 4  # header, rule, one row per method x lr setting
  for values in finals.values():
    assert f'{sum(values) / 2:.2f}' in table


class _FakeRay:
  """What `_RayPool` uses of Ray, recording the resources asked for; each task 'finishes' at once, unrun."""

  def __init__(self):
    self.initialized, self.init_kwargs, self.options, self.calls = False, None, None, []

  def is_initialized(self):
    return self.initialized

  def init(self, **kwargs):
    self.initialized, self.init_kwargs = True, kwargs

  def remote(self, **options):
    self.options = options

    def decorate(fn):
      fake = self

      class Task:
        def remote(self, *args):
          fake.calls.append((fn.__name__, args[0]))
          future = concurrent.futures.Future()
          future.set_result({'state': 'pending', 'step': 0})
          return types.SimpleNamespace(future=lambda: future)

      return Task()

    return decorate


@pytest.fixture
def fake_ray(monkeypatch):
  ray = _FakeRay()
  monkeypatch.setitem(sys.modules, 'ray', ray)
  return ray


def test_the_ray_backend_asks_for_the_resources_of_each_run(tmp_path, fake_ray):
  spec = _spec(tmp_path / 'sweep', grid={'seed': [0, 1]})
  backends.run_sweep(
    spec, backend='ray', address='ray://head:10001', show_progress=False, cpus_per_run=2, gpus_per_run=0.5
  )
  assert fake_ray.options == {'num_cpus': 2, 'num_gpus': 0.5, 'max_retries': 0}
  assert fake_ray.init_kwargs == {'address': 'ray://head:10001', 'log_to_driver': False}
  assert fake_ray.calls == [('_train_one', 'rl')] * 2
  backends.run_sweep(spec, backend='ray', show_progress=False)  # defaults: one CPU, no GPU
  assert fake_ray.options == {'num_cpus': 1, 'num_gpus': 0, 'max_retries': 0}


def test_gpus_per_run_from_the_command_line(tmp_path, fake_ray, capsys):
  from smoothrl.launch import cli  # pylint: disable=g-import-not-at-top

  args = [
    'sweep',
    '--grid',
    'seed=0-1',
    '--set',
    'env=chain/4',
    '--set',
    'network.conv_layers=0',
    '--out',
    str(tmp_path / 'sweep'),
    '--no-progress',
  ]
  assert cli.main([*args, '--backend', 'ray', '--gpus-per-run', '0.25', '--cpus-per-run', '4']) == 0
  assert fake_ray.options == {'num_cpus': 4.0, 'num_gpus': 0.25, 'max_retries': 0}
  capsys.readouterr()
  fake_ray.options = None
  for flags, problem in (
    (['--gpus-per-run', '1'], 'smoothrl: --gpus-per-run is an option of the ray backend, not of the local one'),
    (['--backend', 'compiled', '--cpus-per-run', '2'], 'smoothrl: --cpus-per-run is an option of the ray backend'),
  ):
    out = tmp_path / 'never'
    assert cli.main([*args[:-3], '--out', str(out), '--no-progress', *flags]) == 2
    assert capsys.readouterr().err.startswith(problem)
    assert not out.exists() and fake_ray.options is None
  for value in ('-1', 'nan', 'inf', 'lots'):
    with pytest.raises(SystemExit) as info:
      cli.main([*args, '--backend', 'ray', '--gpus-per-run', value])
    assert info.value.code == 2
    assert 'argument --gpus-per-run: expected a number >= 0' in capsys.readouterr().err


@pytest.mark.parametrize(
  'resources, problem',
  [
    ({'gpus_per_run': -1}, 'gpus_per_run must be a finite number >= 0, got -1'),
    ({'cpus_per_run': float('nan')}, 'cpus_per_run must be a finite number >= 0, got nan'),
    ({'gpus_per_run': 1, 'backend': 'local'}, 'gpus_per_run is an option of the ray backend, not of the local one'),
  ],
)
def test_bad_resources_are_refused_before_anything_is_written(tmp_path, fake_ray, resources, problem):
  resources = {'backend': 'ray', **resources}
  with pytest.raises(ValueError, match=re.escape(problem)):
    backends.run_sweep(_spec(tmp_path / 'sweep'), show_progress=False, **resources)
  assert not (tmp_path / 'sweep').exists() and fake_ray.options is None


def test_a_sweep_directory_that_cannot_be_one_is_refused(tmp_path):
  (tmp_path / 'file').write_text('x')
  for out in ('file', 'file/sub'):
    with pytest.raises(ValueError, match='is a file, not a directory'):
      backends.run_sweep(_spec(tmp_path / out), show_progress=False)
  (tmp_path / 'sweep').mkdir()
  (tmp_path / 'sweep' / 'runs').write_text('x')
  with pytest.raises(ValueError, match='runs is a file, not a directory'):
    backends.run_sweep(_spec(tmp_path / 'sweep'), show_progress=False)
  assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob('*')) == ['file', 'sweep', 'sweep/runs']


def test_the_compiled_backend_refuses_runs_it_cannot_compile_before_writing(tmp_path):
  spec = _spec(tmp_path / 'sweep', steps=401)  # not a whole number of learner iterations (update period 2)
  with pytest.raises(ValueError, match=r'the compiled runner needs multiples of dqn.update_period \(2\): steps'):
    backends.run_sweep(spec, backend='compiled', show_progress=False)
  assert not (tmp_path / 'sweep').exists()


def test_a_spec_file_with_another_out(tmp_path, monkeypatch, capsys):
  from smoothrl.launch import cli  # pylint: disable=g-import-not-at-top

  monkeypatch.setattr(
    backends,
    '_process_submitter',  # the run in this process
    lambda workers: lambda: concurrent.futures.ThreadPoolExecutor(1),
  )
  monkeypatch.chdir(tmp_path)
  (tmp_path / 'spec.yaml').write_text(
    'name: moved\nout: runs/default\nbase: {env: chain/4, steps: 200, eval_period: 200, eval_steps: 20, '
    'log_period: 100, sigma_log_period: 200, checkpoint_period: 0, network.conv_layers: 0, network.hidden: 8, '
    'dqn.warmup_steps: 100}\ngrid: {seed: [0]}\n'
  )
  assert cli.main(['sweep', 'spec.yaml', '--out', 'elsewhere', '--no-progress']) == 0
  assert 'index in elsewhere/index.json' in capsys.readouterr().out
  assert not (tmp_path / 'runs').exists()
  assert _index(tmp_path / 'elsewhere')['runs'][0]['state'] == 'done'
  assert recorder.read_status(tmp_path / 'elsewhere/runs/seed=0') == {'state': 'done', 'step': 200}
  assert (tmp_path / 'elsewhere/spec.yaml').read_text().startswith('name: moved\nout: elsewhere\n')


def test_a_sweep_counts_as_running_only_what_its_workers_run(tmp_path, monkeypatch, terminal):
  running_at_once, running = [], set()
  set_state = backends.Index.set

  def recorded(self, run, state):
    (running.add if state['state'] == 'running' else running.discard)(run.name)
    running_at_once.append(len(running))
    set_state(self, run, state)

  def train_one(kind_name, config_data):  # a run that finishes at once, in a thread
    os.makedirs(config_data['out'])
    recorder.write_status(config_data['out'], 'done', config_data['steps'])
    return {'state': 'done', 'step': config_data['steps']}

  monkeypatch.setattr(backends.Index, 'set', recorded)
  monkeypatch.setattr(backends, '_train_one', train_one)
  monkeypatch.setattr(backends, '_process_submitter', lambda workers: lambda: concurrent.futures.ThreadPoolExecutor(2))
  monkeypatch.setattr(sys, 'stderr', terminal)
  spec = _spec(tmp_path / 'sweep', grid={'seed': list(range(8))})
  assert backends.run_sweep(spec, workers=2)['done'] == 8
  assert max(running_at_once) == 2  # not 8: the other runs wait for a worker
  shown = [int(n) for n in re.findall(r'running (\d+)', terminal.getvalue())]
  assert shown and max(shown) == 2 and shown[-1] == 0
