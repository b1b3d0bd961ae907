"""The Dirac-GAN reproduction at its full length: the directions thesis Figure 4.5, Sections 4.5.1, 4.7 and B.6
report, checked on the numbers written to `result.json`, and those numbers against the run directories."""

from __future__ import annotations

import json

import numpy as np
import pytest

from smoothrl.launch.reproductions import common, dirac_gan


@pytest.fixture(scope='module')
def full(tmp_path_factory):
  out = tmp_path_factory.mktemp('dirac')
  dirac_gan.run(out, quick=False)
  return out, json.loads((out / common.RESULT_FILE).read_text())


@pytest.mark.slow
def test_simultaneous_spirals_out_as_the_modified_flow_predicts(full):
  _, result = full
  d, sim = result['direction'], result['runs']['simultaneous']
  # Figure 4.5a, Eqs 4.38-4.39: the flow keeps θ² + φ², the iterates and the modified flow spiral out together.
  assert d['simultaneous_spirals_out'] and d['flow_conserves_radius'] and d['modified_flow_spirals_out'], sim
  assert d['modified_flow_tracks_simultaneous'] and d['pf_tracks_simultaneous'], sim
  assert d['modified_flow_predicts_divergence'], sim  # Eq B.222: trace (h/2)(v_φ + v_θ)l′(0)² > 0


@pytest.mark.slow
def test_alternating_stays_bounded(full):
  _, result = full
  assert result['direction']['alternating_bounded'], result['runs']['alternating']
  assert result['direction']['modified_flow_tracks_alternating'], result['runs']['alternating']


@pytest.mark.slow
def test_regulariser_threshold_h_over_4(full):
  _, result = full
  d = result['direction']
  # Figure 4.5b, B.6.3: γ = ζ = h/4 cancels the interaction terms (a centre), h/2 converges, h/8 diverges.
  assert d['cancel_stays_on_circle'] and d['above_threshold_converges'] and d['below_threshold_diverges'], result[
    'runs'
  ]
  assert d['radius_ordered_by_gamma'], result['runs']
  assert d['alternating_cancel_phi_converges'], result['runs']


@pytest.mark.slow
def test_unequal_rates_need_the_same_physical_time(full):
  _, result = full
  d = result['direction']
  assert d['unequal_alternating_bounded'], result['runs']['alternating_unequal']
  assert d['player_clock_mispredicts_divergence'] and d['shared_clock_predicts_centre'], result['runs'][
    'alternating_unequal'
  ]


@pytest.mark.slow
def test_numbers_are_those_of_the_run_directories(full):
  out, result = full
  for name in ('simultaneous', 'simultaneous_gamma_h2'):
    arrays, records = dirac_gan.read_run(out, name)
    assert arrays['step'][-1] == dirac_gan.FULL.steps
    numbers = result['runs'][name]
    assert numbers['final_radius_ratio'] == pytest.approx(arrays['radius'][-1] / arrays['radius'][0], rel=1e-12)
    gap = np.abs(arrays['modified/radius'] - arrays['radius']).max() / arrays['radius'][0]
    assert numbers['modified_max_radius_gap'] == pytest.approx(gap, rel=1e-12)
    last = [r for r in records if r['kind'] == 'iterate'][-1]
    assert last['step'] == dirac_gan.FULL.steps and last['radius'] == pytest.approx(arrays['radius'][-1], rel=1e-12)
