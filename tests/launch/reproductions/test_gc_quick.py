"""The Geometric Complexity reproductions (thesis Chapter 8): their helpers against closed forms, and the quick
versions writing their runs, figure and result, with numbers that are those in the run directories."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest

from smoothrl.launch.reproductions import common, gc
from smoothrl.networks import smoothness


def test_reproductions_are_named_and_described():
  assert [r.name for r in gc.REPRODUCTIONS] == ['gc-depth', 'gc-training', 'gc-regularisers', 'gc-rate-batch']
  assert [r.figure for r in gc.REPRODUCTIONS] == ['Figure 8.2', 'Figure 8.3', 'Figure 8.4', 'Figures 8.6, 8.7']
  for r in gc.REPRODUCTIONS:
    assert r.claim and 'proxy' in r.settings and callable(r.run)


def test_strictly_decreasing_and_first_at_or_below():
  assert gc.strictly_decreasing([3.0, 2.0, 1.0]) and gc.strictly_decreasing([1.0]) and gc.strictly_decreasing([])
  assert not gc.strictly_decreasing([3.0, 3.0, 1.0]) and not gc.strictly_decreasing([1.0, 2.0])
  records = [{'step': 0, 'loss': 2.0}, {'step': 10, 'loss': 0.5}, {'step': 20, 'loss': 0.1}]
  assert gc.first_at_or_below(records, 'loss', 0.5)['step'] == 10
  assert gc.first_at_or_below(records, 'loss', 0.3)['step'] == 20
  assert gc.first_at_or_below(records, 'loss', 0.01) is None


def test_interpolant_energy_by_hand():
  # Points (0, 0), (1, 1), (3, -1), given out of order: slopes 1 on [0, 1] and -1 on [1, 3], so
  # (1/3) ∫_0^3 s'² = (1/3)(1·1 + 1·2) = 1.
  assert gc.interpolant_energy([3.0, 0.0, 1.0], [-1.0, 0.0, 1.0]) == pytest.approx(1.0)
  # Two points: the squared slope of the line, (4 / 2)² = 4.
  assert gc.interpolant_energy([1.0, -1.0], [3.0, -1.0]) == pytest.approx(4.0)
  with pytest.raises(ValueError, match='distinct x'):
    gc.interpolant_energy([0.0, 0.0, 1.0], [0.0, 1.0, 2.0])
  with pytest.raises(ValueError, match='at least two points'):
    gc.interpolant_energy([0.0], [1.0])
  with pytest.raises(ValueError, match='at least two points'):
    gc.interpolant_energy([0.0, 1.0], [1.0])


def test_interpolant_energy_is_the_grid_gc_of_the_interpolant_and_the_least_of_any_fit():
  rng = np.random.default_rng(0)
  x = np.sort(rng.uniform(-1.0, 1.0, 7))
  y = rng.normal(size=7)
  points = gc.grid(float(x[0]), float(x[-1]), 20_001)
  # The interpolant's slope on each grid midpoint, its mean square: the grid GC of the interpolant.
  slopes = np.diff(y) / np.diff(x)
  on_grid = slopes[np.clip(np.searchsorted(x, points[:, 0]) - 1, 0, len(slopes) - 1)]
  assert gc.interpolant_energy(x, y) == pytest.approx(float(np.mean(on_grid**2)), rel=1e-3)
  # The polynomial through the same points (degree 6) has at least the interpolant's energy.
  coeffs = np.polyfit(x, y, len(x) - 1)
  poly = lambda xb: jnp.polyval(jnp.asarray(coeffs, jnp.float32), xb)
  np.testing.assert_allclose(np.polyval(coeffs, x), y, atol=1e-6)
  assert float(smoothness.geometric_complexity(poly, jnp.asarray(points))) > gc.interpolant_energy(x, y)


def test_grid_is_the_midpoint_rule():
  points = gc.grid(0.0, 2.0, 4)
  np.testing.assert_allclose(points[:, 0], [0.25, 0.75, 1.25, 1.75])
  # GC of x² on [0, 1] is the mean of (2x)², (1/1)∫_0^1 4x² = 4/3 (midpoint rule error 1/(3 n²)).
  square = lambda xb: xb**2
  value = float(smoothness.geometric_complexity(square, jnp.asarray(gc.grid(0.0, 1.0, 100))))
  assert value == pytest.approx(4 / 3 - 1 / (3 * 100**2), rel=1e-5)
  with pytest.raises(ValueError, match='low < high'):
    gc.grid(1.0, 1.0)


def _result(path):
  for name in (common.RESULT_FILE, common.FIGURE_FILE):
    assert (path / name).stat().st_size > 0
  return json.loads((path / common.RESULT_FILE).read_text())


def test_quick_depth_writes_runs_figure_and_result(tmp_path):
  gc.GC_DEPTH.run(tmp_path, True)
  result = _result(tmp_path)
  assert result['reproduction'] == 'gc-depth' and result['figure'] == 'Figure 8.2' and result['quick']
  assert set(result) >= {'claim', 'settings', 'proxy', 'depths', 'width', 'gc_points', 'initialisers', 'summary'}
  standard = result['initialisers']['standard']
  assert set(standard) >= {'mean', 'std', 'seeds', 'decreasing', 'first_over_last'}
  record = common.evals(common.fit_config(tmp_path, 'quick-standard-depth1-seed1'))[0]
  assert record['step'] == 0 and standard['seeds'][0][1] == record['gc'] > 0
  assert standard['mean'][0] == pytest.approx(np.mean(standard['seeds'][0]))


def test_quick_training_rebuilds_its_fits_from_the_run_directories(tmp_path):
  gc.GC_TRAINING.run(tmp_path, True)
  result = _result(tmp_path)
  assert result['reproduction'] == 'gc-training' and result['marks'] == {'start': 0, 'middle': 10, 'end': 20}
  assert set(result['summary']) >= {'gc_grows', 'gc_start_middle_end', 'train_loss_start_end', 'max_energy_ratio'}
  for seed in result['seeds']:
    run = common.fit_config(tmp_path, f'quick-fit-seed{seed["seed"]}')
    assert seed['gc_end'] == common.final(run, 'gc')
    # The fit rebuilt from final/ has the GC the run recorded on the same 10 points at its last step.
    assert seed['rebuilt_gc'] == pytest.approx(seed['gc_end'], rel=1e-4)
    assert seed['energy_ratio'] == pytest.approx(seed['fit_slope_energy'] / seed['interpolant_slope_energy'])
  fitted = gc.load_fit(tmp_path / 'runs' / 'quick-fit-seed0')
  x, y = fitted.dataset.x_train[:, 0], fitted.dataset.y_train[:, 0]
  assert x.shape == (10,) and result['seeds'][0]['interpolant_slope_energy'] == pytest.approx(
    gc.interpolant_energy(x, y)
  )


def test_quick_regularisers_writes_runs_figure_and_result(tmp_path):
  gc.GC_REGULARISERS.run(tmp_path, True)
  result = _result(tmp_path)
  assert result['reproduction'] == 'gc-regularisers' and set(result['regularisers']) == {'l2'}
  l2 = result['regularisers']['l2']
  assert l2['field'] == 'regulariser.l2' and l2['strengths'] == [1e-4]
  assert set(l2) >= {'gc', 'gc_seeds', 'test_accuracy', 'train_accuracy', 'below_none', 'decreasing'}
  assert result['none']['gc']['seeds'][1] == common.final(common.fit_config(tmp_path, 'quick-none-seed1'), 'gc')
  assert l2['gc_seeds'][0][0] == common.final(common.fit_config(tmp_path, 'quick-l2-0.0001-seed0'), 'gc')
  assert set(result['summary']) >= {'all_below_none', 'all_decreasing', 'gc_none', 'gc_l2'}


def test_quick_rate_batch_writes_runs_figure_and_result(tmp_path):
  gc.GC_RATE_BATCH.run(tmp_path, True)
  result = _result(tmp_path)
  lr, batch = result['learning_rate'], result['batch_size']
  assert lr['values'] == [0.05, 0.2] and batch['values'] == [64] and batch['examples'] == [64]
  assert lr['test_accuracy_seeds'][1][0] == common.final(
    common.fit_config(tmp_path, 'quick-lr0.2-batch64-seed0'), 'test_accuracy'
  )
  # The batch sweep's run at lr 0.05, batch 64 is the learning-rate sweep's.
  assert batch['gc_seeds'][0] == lr['gc_seeds'][0]
  assert set(lr['at_matched_train_loss']) == {'train_loss', 'gc', 'steps'}
  assert set(result['summary']) >= {'gc_falls_with_learning_rate', 'gc_rises_with_batch_size'}
