"""GAN runs on the shared platform: the digits with the proxy classifier's features and sample grids, the ring's
mode coverage against the saved generator, validation before work, resume after a stop, and a sweep through the
command line that `summary` and `plot` read."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from matplotlib import image as mpimg

from smoothrl.gan import classifier, metrics, mixtures, networks
from smoothrl.launch import cli, kinds
from smoothrl.launch.run import checkpoint, gan, recorder
from smoothrl.launch.run import config as config_lib
from smoothrl.launch.run.files import read_metrics
from smoothrl.launch.run.kind import TrainOptions
from smoothrl.launch.sweeps import spec as sweep

OPTIONS = TrainOptions(show_progress=False)
TINY_CLASSIFIER = {
  'classifier.steps': 40,
  'classifier.channels': (4, 8),
  'classifier.feature_dim': 16,
  'classifier.batch_size': 64,
  'classifier.conv_impl': 'xla',
}
TINY_DCGAN = {
  'network.latent_dim': 4,
  'network.generator_channels': (4, 4),
  'network.discriminator_channels': (4, 4),
  'network.conv_impl': 'xla',
}
TINY_MLP = {'network.latent_dim': 4, 'network.generator_widths': (16,), 'network.discriminator_widths': (16,)}
TINY_GAN = {'gan.batch_size': 16, 'gan.eval_batch_size': 32}


def _records(out, kind):
  return [r for r in read_metrics(out / 'metrics.jsonl') if r['kind'] == kind]


def _without_elapsed(records):
  return [{k: v for k, v in r.items() if k != 'elapsed'} for r in records]


@pytest.fixture(scope='module')
def cache_dir(tmp_path_factory):
  """The classifier cache of this module's runs (never the user's)."""
  path = tmp_path_factory.mktemp('cache')
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv(classifier.CACHE_ENV, str(path))
    yield path / 'gan'


def _digits_config(out, **fields):
  base = config_lib.replace(gan.GanRunConfig(out=str(out)), **gan.PRESETS['digits'])
  fields = {
    'steps': 20,
    'log_period': 10,
    'eval_period': 10,
    'eval_samples': 64,
    'sample_grid': 4,
    'checkpoint_period': 0,
    'gan.method': 'none',
    'gan.adam_betas': None,
    **TINY_DCGAN,
    **TINY_GAN,
    **TINY_CLASSIFIER,
    **fields,
  }
  return config_lib.replace(base, **fields)


def _ring_config(out, **fields):
  base = config_lib.replace(gan.GanRunConfig(out=str(out)), **gan.PRESETS['ring'])
  fields = {
    'steps': 40,
    'log_period': 10,
    'eval_period': 20,
    'eval_samples': 400,
    'sample_grid': 1,
    'checkpoint_period': 20,
    'optimizer.discriminator_rate': 1e-2,
    'optimizer.generator_rate': 1e-2,
    **TINY_MLP,
    **TINY_GAN,
    **fields,
  }
  return config_lib.replace(base, **fields)


@pytest.fixture(scope='module')
def digits_run(tmp_path_factory, cache_dir):
  out = tmp_path_factory.mktemp('digits')
  config = _digits_config(out)
  gan.validate(config)
  return config, gan.train([config], OPTIONS)[0]


@pytest.fixture(scope='module')
def ring_run(tmp_path_factory):
  out = tmp_path_factory.mktemp('ring')
  config = _ring_config(out)
  gan.validate(config)
  return config, gan.train([config], OPTIONS)[0]


def test_a_digits_run_records_finite_proxies_and_draws_sample_grids(digits_run, cache_dir):
  config, summary = digits_run
  out = Path(config.out)
  evals = _records(out, 'eval')
  assert [r['step'] for r in evals] == [0, 10, 20]
  for r in evals:
    assert math.isfinite(r['fid_proxy']) and r['fid_proxy'] >= 0
    assert math.isfinite(r['kid_proxy']) and math.isfinite(r['kid_proxy_std'])
    assert r['sample_count'] == 64 and r['real_count'] == 64
    assert 0 <= r['entropy_data'] <= math.log(10) + 1e-6 and set(r['sigma']) == {'conv_0', 'conv_1', 'out'}
  trains = _records(out, 'train')
  assert [r['step'] for r in trains] == [10, 20]
  assert all(math.isfinite(r['d_loss']) and math.isfinite(r['g_loss']) and r['rho'] > 0 for r in trains)
  assert summary['final_eval'] == evals[-1] and summary['data'] == 'digits'
  # The classifier: trained once, cached, its accuracy written once.
  (cached,) = cache_dir.glob('digits-classifier-*.npz')
  stored = classifier.load_classifier(cached)
  (record,) = _records(out, 'classifier')
  assert record['step'] == 0 and record['cache'] == str(cached)
  assert summary['classifier_accuracy'] == record['classifier_accuracy'] == stored.test_accuracy
  meta, _ = checkpoint.load_model(out)
  assert meta['classifier_accuracy'] == stored.test_accuracy
  # One grid per evaluation, 4x4 samples of 8x8 pixels drawn on a 4-inch figure at 100 dpi.
  pngs = sorted((out / gan.SAMPLES_DIR).glob('*.png'))
  assert [p.name for p in pngs] == ['step_000000.png', 'step_000010.png', 'step_000020.png']
  assert all(mpimg.imread(p).shape == (400, 400, 4) for p in pngs)
  assert gan.image_grid(-np.ones((16, 8, 8, 1)), 4).shape == (35, 35, 1)


def test_a_second_digits_run_reads_the_cached_classifier(digits_run, cache_dir, tmp_path, monkeypatch):
  config, summary = digits_run
  (cached,) = cache_dir.glob('digits-classifier-*.npz')
  before = cached.stat().st_mtime_ns

  def retrain(*args, **kwargs):
    raise AssertionError('the classifier was trained again')

  monkeypatch.setattr(gan, '_PROGRAMS', {})  # a process that has built nothing yet
  monkeypatch.setattr(classifier, 'train_classifier', retrain)
  again = gan.train([config_lib.replace(config, out=str(tmp_path), seed=1)], OPTIONS)[0]
  assert cached.stat().st_mtime_ns == before
  assert again['classifier_accuracy'] == summary['classifier_accuracy']
  assert again['final_eval']['fid_proxy'] != summary['final_eval']['fid_proxy']  # another seed, other samples


def test_a_ring_run_records_the_mode_coverage_of_its_saved_generator(ring_run):
  config, summary = ring_run
  out = Path(config.out)
  final = _records(out, 'eval')[-1]
  assert final['step'] == 40 and final['num_modes'] == 8 and summary['features'] == 'raw 2-D coordinates'
  # The final generator from `final/`, sampled as the last evaluation samples it.
  nets = networks.make_networks(config.network)
  template = {
    'discriminator': jax.eval_shape(nets.discriminator.init, jax.random.PRNGKey(0)),
    'generator': jax.eval_shape(nets.generator.init, jax.random.PRNGKey(0)),
  }
  meta, leaves = checkpoint.load_model(out)
  params = checkpoint.restore(leaves, template, out)
  assert meta['config'] == json.loads(config.to_json())
  sample_key, real_key, _ = jax.random.split(gan.eval_key(config.seed, config.steps), 3)
  samples = np.asarray(nets.generator.sample(params['generator'], sample_key, config.eval_samples))
  ring = mixtures.ring()
  coverage = metrics.mode_coverage(samples, ring)
  assert final['modes_covered'] == coverage.modes_covered
  assert final['high_quality_fraction'] == pytest.approx(coverage.high_quality_fraction, abs=1e-12)
  real = np.asarray(ring.sample(real_key, config.eval_samples))
  assert final['fid_proxy'] == pytest.approx(metrics.fid_proxy(real, samples).value, rel=1e-5)
  # At initialisation the samples sit near the origin, far from the ring of radius 2.
  first = _records(out, 'eval')[0]
  assert first['high_quality_fraction'] == 0.0 and first['fid_proxy'] > 1.0
  assert (out / gan.SAMPLES_DIR / 'step_000040.png').is_file()


def test_every_problem_of_a_config_is_listed_before_any_work(tmp_path):
  bad = config_lib.replace(
    _ring_config(tmp_path / 'bad'),
    log_period=-1,
    eval_period=-5,
    checkpoint_period=-10,
    **{'data.name': 'rings', 'gan.method': 'divgrad', 'optimizer.eps_final': 1e-3},
  )
  with pytest.raises(config_lib.ConfigError) as info:
    gan.validate(bad)
  message = str(info.value)
  for part in (
    "data.name 'rings' is unknown; did you mean 'ring'?",
    'log_period must be a positive integer, got -1',
    'eval_period (-5) must be 0 or a positive multiple',
    'checkpoint_period (-10) must be 0 or a positive multiple',
    "gan.method 'divgrad' sets ε itself",
  ):
    assert part in message, (part, message)
  muleps = config_lib.replace(_ring_config(tmp_path), **{'gan.method': 'muleps', 'optimizer.eps_final': 1e-3})
  with pytest.raises(config_lib.ConfigError, match="'muleps' sets ε itself"):
    gan.validate(muleps)
  mismatch = config_lib.replace(_digits_config(tmp_path), **{'network.data_shape': (28, 28, 1)})
  with pytest.raises(config_lib.ConfigError, match=r"data_shape \(28, 28, 1\) does not fit data 'digits'"):
    gan.validate(mismatch)
  mixture = config_lib.replace(_ring_config(tmp_path), **{'data.name': 'digits'})
  with pytest.raises(config_lib.ConfigError) as info:
    gan.validate(mixture)
  assert 'whose examples are (8, 8, 1)' in str(info.value) and "takes network.kind 'dcgan', got 'mlp'" in str(
    info.value
  )
  assert not (tmp_path / 'bad').exists() and not list(tmp_path.iterdir())
  gan.validate(_ring_config(tmp_path, **{'optimizer.eps_final': 1e-3, 'gan.method': 'sn'}))  # plain Adam anneals


class _Stop(Exception):
  """The stop of a run just after its first checkpoint."""


def test_a_run_stopped_after_its_first_checkpoint_resumes_to_the_same_numbers(ring_run, tmp_path, monkeypatch):
  reference, _ = ring_run
  config = config_lib.replace(reference, out=str(tmp_path))
  save = recorder.Recorder.checkpoint

  def stop(self, step, trees, meta):
    save(self, step, trees, meta)
    raise _Stop

  monkeypatch.setattr(recorder.Recorder, 'checkpoint', stop)
  with pytest.raises(_Stop):
    gan.train([config], OPTIONS)
  monkeypatch.undo()
  assert recorder.read_status(tmp_path)['state'] == 'failed' and checkpoint.saved_step(tmp_path) == 20
  summary = gan.train([config], TrainOptions(show_progress=False, resume=True))[0]
  ref_out = Path(reference.out)
  for kind in ('train', 'eval'):
    assert _without_elapsed(_records(tmp_path, kind)) == _without_elapsed(_records(ref_out, kind))
  assert [r['step'] for r in _records(tmp_path, 'eval')] == [0, 20, 40]
  assert recorder.read_status(tmp_path)['state'] == 'done' and summary['final_eval']['step'] == 40
  assert gan.train([config], TrainOptions(show_progress=False, resume=True))[0] == summary  # finished: read back


def test_a_non_finite_loss_stops_the_run_alone(tmp_path):
  rates = {'optimizer.discriminator_rate': 1e30, 'optimizer.generator_rate': 1e30}
  config = _ring_config(tmp_path, steps=10, eval_period=0, checkpoint_period=0, **rates)
  config = config_lib.replace(config, **{'optimizer.name': 'sgd', 'gan.method': 'none'})
  summary = gan.train([config], OPTIONS)[0]
  assert summary['state'] == 'failed' and 'non-finite' in summary['error']


def test_sweeps_expand_gan_grids_and_summary_and_plot_read_gan_runs(ring_run, tmp_path, capsys):
  assert kinds.get('gan') is gan.KIND and kinds.of(gan.GanRunConfig()) is gan.KIND
  gan.validate(gan.GanRunConfig())  # the default config is a run
  for preset in gan.PRESETS.values():
    gan.validate(config_lib.replace(gan.GanRunConfig(), **preset))
  grid = {'gan.loss': ['saturating', 'non_saturating'], 'gan.method': ['none', 'sn'], 'seed': [0]}
  runs = sweep.expand(
    sweep.parse_spec({'name': 's', 'kind': 'gan', 'preset': 'ring', 'out': str(tmp_path), 'grid': grid})
  )
  assert sorted((r.config.gan.loss, r.config.gan.method) for r in runs) == [
    ('non_saturating', 'none'),
    ('non_saturating', 'sn'),
    ('saturating', 'none'),
    ('saturating', 'sn'),
  ]
  assert all(r.config.data.name == 'ring' and r.config.network.kind == 'mlp' for r in runs)
  with pytest.raises(sweep.SweepError, match="did you mean 'gan.loss'"):
    sweep.parse_spec({'name': 's', 'kind': 'gan', 'grid': {'gan.los': ['saturating']}})
  config, _ = ring_run
  assert cli.main(['summary', config.out]) == 0
  assert 'gan/ring' in capsys.readouterr().out
  assert cli.main(['plot', config.out, '--out', str(tmp_path / 'plots')]) == 0
  assert list((tmp_path / 'plots').glob('*.png'))


SPEC = """
name: ring-losses
kind: gan
preset: ring
out: {out}
base:
  steps: 4
  log_period: 2
  eval_period: 2
  eval_samples: 100
  sample_grid: 1
  checkpoint_period: 2
  network.latent_dim: 4
  network.generator_widths: [16]
  network.discriminator_widths: [16]
  gan.batch_size: 16
  gan.eval_batch_size: 32
grid:
  gan.loss: [saturating, non_saturating]
  gan.method: [none, sn]
  seed: [0]
"""


@pytest.mark.slow
def test_a_gan_sweep_runs_from_the_command_line_and_summary_and_plot_read_it(tmp_path, capsys):
  assert kinds.get('gan') is gan.KIND
  spec = tmp_path / 'spec.yaml'
  spec.write_text(SPEC.format(out=tmp_path / 'sweep'))
  done = subprocess.run(
    [sys.executable, '-m', 'smoothrl.launch.cli', 'sweep', str(spec), '--workers', '1', '--no-progress'],
    capture_output=True,
    text=True,
  )
  assert done.returncode == 0, done.stderr
  runs = sorted((tmp_path / 'sweep' / 'runs').iterdir())
  assert len(runs) == 4
  configs = [json.loads((r / 'config.json').read_text()) for r in runs]
  assert sorted((c['gan']['loss'], c['gan']['method']) for c in configs) == [
    ('non_saturating', 'none'),
    ('non_saturating', 'sn'),
    ('saturating', 'none'),
    ('saturating', 'sn'),
  ]
  for r in runs:
    assert recorder.read_status(r)['state'] == 'done'
    assert [e['step'] for e in _records(r, 'eval')] == [0, 2, 4]
  assert cli.main(['summary', str(tmp_path / 'sweep')]) == 0
  printed = capsys.readouterr().out
  assert 'gan/ring' in printed
  assert cli.main(['plot', str(tmp_path / 'sweep'), '--out', str(tmp_path / 'plots')]) == 0
  assert list((tmp_path / 'plots').glob('*.png'))
