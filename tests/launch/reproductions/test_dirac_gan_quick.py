"""The Dirac-GAN reproduction, quick version: it writes each run's config, trajectories and metrics, the figure
and the result, and the result's numbers are those of the files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from smoothrl.launch import reproductions
from smoothrl.launch.reproductions import common, dirac_gan
from smoothrl.launch.run.files import CONFIG_FILE, METRICS_FILE, read_metrics


@pytest.fixture(scope='module')
def quick(tmp_path_factory):
  out = tmp_path_factory.mktemp('dirac')
  return out, dirac_gan.run(out, quick=True)


def test_registered_and_described():
  assert reproductions.REPRODUCTIONS['dirac-gan'] is dirac_gan.DIRAC_GAN
  r = dirac_gan.DIRAC_GAN
  assert r.figure == 'Figure 4.5' and r.claim and r.settings and callable(r.run)


def test_quick_writes_runs_figure_and_result(quick):
  out, result = quick
  for name in (common.RESULT_FILE, common.FIGURE_FILE):
    assert (out / name).stat().st_size > 0
  on_disk = json.loads((out / common.RESULT_FILE).read_text())
  assert on_disk['reproduction'] == 'dirac-gan' and set(on_disk['runs']) == {r.name for r in dirac_gan.RUNS}
  assert set(on_disk['direction']) >= {'simultaneous_spirals_out', 'alternating_bounded', 'cancel_stays_on_circle'}
  steps = dirac_gan.QUICK.steps
  for run in dirac_gan.RUNS:
    run_dir = out / 'runs' / run.name
    config = json.loads((run_dir / CONFIG_FILE).read_text())
    assert config['scheme'] == run.scheme and config['steps'] == steps and config['h'] == dirac_gan.H
    with np.load(run_dir / dirac_gan.TRAJECTORY_FILE, allow_pickle=False) as z:
      phi, theta, radius = z['phi'], z['theta'], z['radius']
      assert phi.shape == (steps + 1,) and z['modified/phi'].shape == (steps + 1,)
    assert (phi[0], theta[0]) == dirac_gan.START
    np.testing.assert_allclose(radius, np.hypot(phi, theta))
    iterates = list(read_metrics(run_dir / METRICS_FILE, kind='iterate'))
    assert [r['step'] for r in iterates] == list(range(0, steps + 1, dirac_gan.QUICK.log_period))
    assert iterates[-1]['radius'] == pytest.approx(radius[-1], rel=1e-12)
    numbers = on_disk['runs'][run.name]
    assert numbers['final_radius_ratio'] == pytest.approx(radius[-1] / radius[0], rel=1e-12)


def test_quick_simultaneous_numbers_follow_the_closed_forms(quick):
  out, result = quick
  arrays, records = dirac_gan.read_run(out, 'simultaneous')
  # Each simultaneous step multiplies θ² + φ² by 1 + h²l′(θφ)², the flow keeps it.
  ratio = arrays['radius'][1:] ** 2 / arrays['radius'][:-1] ** 2
  lp = 1 / (1 + np.exp(arrays['theta'][:-1] * arrays['phi'][:-1]))
  np.testing.assert_allclose(ratio, 1 + dirac_gan.H**2 * lp**2, rtol=1e-12)
  np.testing.assert_allclose(arrays['flow/radius'], arrays['radius'][0], rtol=1e-6)  # RK4, 4 steps per update
  analysis = next(r for r in records if r['kind'] == 'analysis')
  assert analysis['player_clock_max_real'] == pytest.approx(dirac_gan.H * 0.25 / 2)  # Eq B.222: (h/2)l′(0)²
