"""The Geometric Complexity reproductions at their CPU scale (thesis Chapter 8): each asserts the thesis' direction on
the numbers of its result.json and checks some of them against the run directories."""

from __future__ import annotations

import json

import numpy as np
import pytest

from smoothrl.launch.reproductions import common, gc

pytestmark = pytest.mark.slow


def _run(reproduction, path):
  reproduction.run(path, False)
  result = json.loads((path / common.RESULT_FILE).read_text())
  assert (path / common.FIGURE_FILE).stat().st_size > 0 and not result['quick']
  return result


def test_gc_at_initialisation_falls_with_depth(tmp_path):
  result = _run(gc.GC_DEPTH, tmp_path)
  assert result['depths'] == list(range(1, 9)) and result['width'] == 500 and result['gc_points'] == 100
  for init in gc.INITIALISERS:
    means = result['initialisers'][init]['mean']
    assert gc.strictly_decreasing(means), (init, means)
    assert means[0] > 10 * means[-1], (init, means)
    for d, seeds in zip((1, 8), (result['initialisers'][init]['seeds'][0], result['initialisers'][init]['seeds'][-1])):
      for seed, value in zip((0, 1, 2), seeds):
        record = common.evals(common.fit_config(tmp_path, f'{init}-depth{d}-seed{seed}'))[0]
        assert record['step'] == 0 and record['gc'] == value


def test_gc_grows_in_training_while_the_fit_stays_simple(tmp_path):
  result = _run(gc.GC_TRAINING, tmp_path)
  start, middle, end = result['summary']['gc_start_middle_end']
  assert start < middle < end, (start, middle, end)
  assert result['at']['end']['train_loss']['mean'] < 1e-2 * result['at']['start']['train_loss']['mean']
  # Simple: within a factor 2 of the least mean squared slope of any function through the 10 points.
  for seed in result['seeds']:
    assert seed['energy_ratio'] < 2.0, seed
    run = common.fit_config(tmp_path, f'fit-seed{seed["seed"]}')
    assert seed['gc_middle'] == next(r['gc'] for r in common.evals(run) if r['step'] == 10_000)
    assert seed['rebuilt_gc'] == pytest.approx(common.final(run, 'gc'), rel=1e-4)


def test_explicit_regularisers_lower_gc(tmp_path):
  result = _run(gc.GC_REGULARISERS, tmp_path)
  none = result['none']['gc']['mean']
  assert none == pytest.approx(
    np.mean([common.final(common.fit_config(tmp_path, f'none-seed{s}'), 'gc') for s in range(3)])
  )
  for name, (_, strengths) in gc.REGULARISERS.items():
    r = result['regularisers'][name]
    assert r['strengths'] == list(strengths)
    assert all(g < none for g in r['gc']), (name, none, r['gc'])
    assert gc.strictly_decreasing(r['gc']), (name, r['gc'])
  z = gc.REGULARISERS['jacobian'][1][-1]
  run = common.fit_config(tmp_path, f'jacobian-{z:g}-seed2')
  assert result['regularisers']['jacobian']['gc_seeds'][-1][2] == common.final(run, 'gc')


@pytest.fixture(scope='module')
def rate_batch(tmp_path_factory):
  path = tmp_path_factory.mktemp('gc-rate-batch')
  return path, _run(gc.GC_RATE_BATCH, path)


@pytest.mark.xfail(
  strict=True,
  reason='the proxy does not show Figure 8.6: on the digits MLP (batch 64, 2,000 SGD steps, 3 seeds) GC rises with '
  'the learning rate (452, 930, 1507, 2042 at 0.02, 0.05, 0.1, 0.2; also at a matched train loss: 452, 478, 492, '
  '524), while test accuracy rises as the thesis reports (docs/reproductions.md)',
)
def test_larger_learning_rates_lower_gc(rate_batch):
  path, result = rate_batch
  lr = result['learning_rate']
  assert lr['values'] == [0.02, 0.05, 0.1, 0.2]
  run = common.fit_config(path, 'lr0.2-batch64-seed1')
  assert lr['gc_seeds'][-1][1] == common.final(run, 'gc')
  assert lr['test_accuracy'][-1] > lr['test_accuracy'][0], lr['test_accuracy']
  assert gc.strictly_decreasing(lr['gc']), lr['gc']


def test_smaller_batches_lower_gc(rate_batch):
  path, result = rate_batch
  batch = result['batch_size']
  assert batch['values'] == [16, 64, 256, 0] and batch['examples'][-1] == 1347
  run = common.fit_config(path, 'lr0.02-batchfull-seed0')
  assert batch['gc_seeds'][-1][0] == common.final(run, 'gc')
  assert gc.strictly_decreasing(batch['gc'][::-1]), batch['gc']
  assert batch['test_accuracy'][0] > batch['test_accuracy'][-1], batch['test_accuracy']
