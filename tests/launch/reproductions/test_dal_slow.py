"""The drift and DAL reproductions at their CPU scale: the directions thesis Section 3.7 reports, checked on the
numbers each wrote to `result.json` and, for one value each, on what its runs wrote to disk."""

from __future__ import annotations

import json

import numpy as np
import pytest

from smoothrl.launch.reproductions import common, dal


@pytest.mark.slow
def test_drift_follows_hg_norm_across_the_sweep(tmp_path):
  dal.run_drift(tmp_path, quick=False)
  result = json.loads((tmp_path / common.RESULT_FILE).read_text())
  per_rate = result['per_learning_rate']
  assert len(per_rate) == 10
  # Figures 3.21-3.22: a strong correlation with ‖Hg‖ at every learning rate ...
  assert result['min_corr_hg_norm'] > 0.9, per_rate
  # ... stronger than with either factor of ‖Hg‖ = (‖Hg‖/‖g‖)‖g‖ alone.
  assert result['mean_corr_hg_norm'] > result['mean_corr_hg_over_grad_norm'], result
  assert result['mean_corr_hg_norm'] > result['mean_corr_grad_norm'], result
  # Theorem 3.7.1: over the sweep, the measured drift tracks (h²/2)‖Hg‖.
  assert result['sweep_corr_estimate'] > 0.9
  # Read back from the run directory: the shown rate's correlation from its metrics.jsonl.
  config = next(c for c in dal.drift_configs(tmp_path, dal.DRIFT_FULL) if c.optimizer.learning_rate == 0.05)
  _, ngf = common.series(config, 'ngf_drift')
  steps, hg = common.series(config, 'hg_norm')
  assert steps[-1] == dal.DRIFT_FULL.steps and len(steps) == dal.DRIFT_FULL.steps // dal.DRIFT_FULL.log_period + 1
  assert np.corrcoef(ngf, hg)[0, 1] == pytest.approx(per_rate['0.05']['corr_hg_norm'], abs=1e-9)


@pytest.fixture(scope='module')
def dal_result(tmp_path_factory):
  out = tmp_path_factory.mktemp('dal')
  dal.run_dal(out, quick=False)
  result = json.loads((out / common.RESULT_FILE).read_text())
  summary = {
    k: (v['test_accuracy'], v['train_loss'], v['instability'])
    for k, v in {**result['fixed'], **result['dal_p']}.items()
  }
  return out, result, summary


@pytest.mark.slow
def test_dal_trains_stably_without_a_sweep(dal_result):
  out, result, summary = dal_result
  # Figure 3.23: DAL needs no sweep: it ends below the median fixed rate's loss, and climbs no more than the largest.
  assert result['direction']['dal_trains_without_sweep'], summary
  assert result['direction']['dal_as_stable_as_largest_rate'], summary
  # Read back from the run directories: DAL's mean final test accuracy over its seeds.
  runs = dal.dal_configs(out, dal.DAL_FULL)
  on_disk = np.mean([common.final(c, 'test_accuracy') for c in runs['dal']])
  assert on_disk == pytest.approx(result['dal']['test_accuracy'], abs=1e-9)


@pytest.mark.slow
def test_smaller_p_is_less_stable(dal_result):
  _, result, summary = dal_result
  assert result['direction']['smaller_p_less_stable'], summary  # Figure 3.26: more drift, less stability


_NOT_SHOWN = (
  'the proxy does not show it: on the digits ELU MLP (2 x 100, full batch, 500 steps, 3 seeds) ||H g_hat|| > 1, so '
  'smaller p takes larger rates (mean 0.62, 2.19, 3.29, 4.58 for p = 1, 0.75, 0.5, 0.25) and p <= 0.5 diverges on '
  'some seeds: DAL-0.5 reaches test accuracy 0.684 against 0.972 for the best fixed rate (docs/reproductions.md)'
)


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason=_NOT_SHOWN)
def test_dal_half_matches_the_best_fixed_rate(dal_result):
  _, result, summary = dal_result
  assert result['direction']['dal_half_matches_best_fixed'], summary  # Figure 3.25, within a percentage point


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason=_NOT_SHOWN)
def test_smaller_p_gives_higher_test_accuracy(dal_result):
  _, result, summary = dal_result
  assert result['direction']['smaller_p_higher_test_accuracy'], summary  # Figure 3.26
