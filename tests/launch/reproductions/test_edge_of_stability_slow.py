"""The edge-of-stability reproductions at their CPU scale: the directions thesis Sections 3.4-3.5 report, checked on
the numbers each wrote to `result.json` and, for some, on what its runs and flows wrote to disk."""

from __future__ import annotations

import json

import numpy as np
import pytest

from smoothrl.launch.reproductions import common
from smoothrl.launch.reproductions import edge_of_stability as eos


@pytest.fixture(scope='module')
def iris(tmp_path_factory):
  out = tmp_path_factory.mktemp('eos-iris')
  eos.run_iris(out, quick=False)
  return out, json.loads((out / common.RESULT_FILE).read_text())


@pytest.mark.slow
def test_lambda_0_rises_to_two_over_h(iris):
  out, result = iris
  # Progressive sharpening from well below 2/h, then the edge of stability: over the last quarter of training the
  # median λ_0 is within 10% of 2/h.
  assert result['lambda_0_initial'] < 0.5 * result['two_over_h'], result
  assert abs(result['lambda_0_window_ratio'] - 1) < 0.1, result
  # Read back from metrics.jsonl; the warm-started λ_0 of the last evaluation is the dense one of the final state.
  config = eos.iris_config(out, eos.IRIS_FULL)
  steps, lam = common.series(config, 'lambda_0')
  window = lam[-round(eos.IRIS_FULL.window * len(lam)) :]
  assert np.median(window) == pytest.approx(result['lambda_0_window_median'], rel=1e-9)
  assert result['lambda_0_final_run'] == pytest.approx(result['lambda_0_final_dense'], rel=1e-3)


@pytest.mark.slow
def test_loss_increases_come_with_positive_sc0_on_iris(iris):
  _, result = iris
  numbers = result['loss_vs_sc0']
  assert numbers['loss_increases'] >= 5, numbers
  assert numbers['increases_with_positive_sc0'] > 0.9, numbers
  assert numbers['increases_with_positive_sc0'] > numbers['positive_sc0_fraction'], numbers  # above the base rate
  assert numbers['auc_sc0_increase'] > 0.6, numbers


@pytest.mark.slow
def test_the_pf_has_the_smallest_local_error_at_the_edge_of_stability(iris):
  out, result = iris
  flows = result['flows']
  assert result['flow_window']['lambda_0_median'] > 0.9 * result['two_over_h'], result['flow_window']
  # Figure 3.13a: the PF is closer to the next GD iterate than the NGF and the IGR flow.
  assert flows['pf']['median_error'] < flows['igr']['median_error'] < flows['ngf']['median_error'], flows
  assert flows['pf']['smallest_error_fraction'] > 0.5, flows
  # Figure 3.13b: where GD's loss rises, the PF predicts the rise, the NGF (a descent flow) never does.
  if result['flow_window']['gd_loss_increases']:
    assert flows['pf']['predicts_increase_where_gd_increases'] > flows['ngf']['predicts_increase_where_gd_increases']
    assert flows['ngf']['predicts_increase_where_gd_increases'] == 0
  assert flows['pf']['median_abs_loss_error'] < flows['ngf']['median_abs_loss_error'], flows
  # Read back from flows.npz.
  with np.load(out / eos.FLOWS_FILE, allow_pickle=False) as z:
    assert float(np.median(z['pf/error'])) == pytest.approx(flows['pf']['median_error'], rel=1e-12)


@pytest.mark.slow
def test_the_spectrum_along_gd_is_largely_positive(iris):
  _, result = iris
  spectrum = result['spectrum']  # Figure A.8: few negative eigenvalues, and small ones
  assert spectrum['significant_negative_fraction'] < 0.1, spectrum
  assert spectrum['negative_mass_fraction'] < 0.2, spectrum
  assert spectrum['min_over_max'] > -0.25, spectrum


@pytest.fixture(scope='module')
def stability(tmp_path_factory):
  out = tmp_path_factory.mktemp('eos-stability')
  eos.run_stability(out, quick=False)
  return out, json.loads((out / common.RESULT_FILE).read_text())


@pytest.mark.slow
def test_loss_increases_come_with_large_positive_sc0(stability):
  _, result = stability
  numbers = result['loss_vs_sc0']
  assert result['lambda_0_max'] > result['two_over_h'], result  # the run reaches the edge of stability
  assert numbers['loss_increases'] >= 5, numbers
  # Figure 3.15: the loss rises only where Re sc_0 > 0, and where Re sc_0 is large: Re sc_0 at the increases
  # ranks above Re sc_0 elsewhere more often than chance (0.5) would have it.
  assert numbers['increases_with_positive_sc0'] > 0.9, numbers
  assert numbers['increases_with_positive_sc0'] >= numbers['positive_sc0_fraction'], numbers
  assert numbers['median_sc0_at_increases'] > numbers['median_sc0_elsewhere'], numbers
  assert numbers['auc_sc0_increase'] > 0.6, numbers


@pytest.mark.slow
def test_one_flipped_direction_destabilises_the_flow(stability):
  out, result = stability
  flip, ngf = result['flows']['flip'], result['flows']['ngf']
  # Figure 3.17: from the same edge-of-stability state the flip flow's loss and λ_0 increase; the NGF's loss falls.
  assert flip['loss_change'] > 0, flip
  assert flip['lambda_0_change'] > 0 and flip['lambda_0_late_median'] > flip['lambda_0_start'], flip
  assert ngf['loss_change'] < 0, ngf
  with np.load(out / eos.FLOWS_FILE, allow_pickle=False) as z:
    assert z['flip/loss'][0] == z['ngf/loss'][0]
    assert float(z['flip/loss'][-1] - z['flip/loss'][0]) == pytest.approx(flip['loss_change'], rel=1e-6)
