"""Checks of the edge-of-stability reproductions: the continued PF coefficient and the holomorphic loss against
hand-computed values, the statistics of the runs' records, the numbers and figures from hand-written run
directories and the configurations (default suite), and quick runs of both that write their runs, arrays, figure
and result (slow)."""

from __future__ import annotations

import cmath
import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from smoothrl.flows import coefficients, holomorphic
from smoothrl.launch.analysis import plots, results
from smoothrl.launch.reproductions import REPRODUCTIONS, common
from smoothrl.launch.reproductions import edge_of_stability as eos
from smoothrl.launch.run import supervised
from smoothrl.launch.run.files import METRICS_FILE
from smoothrl.supervised import losses


def test_the_continued_coefficient_has_no_cut_beyond_one():
  z = jnp.asarray([0.5, 1.5, 2.0, 3.0])
  values = np.asarray(eos.alpha_pf_continued(z))
  expected = [
    math.log(0.5) / 0.5,
    (math.log(0.5) + 1j * math.pi) / 1.5,
    1j * math.pi / 2,
    (math.log(2) + 1j * math.pi) / 3,
  ]
  np.testing.assert_allclose(values, expected, rtol=1e-6)
  # On the real axis it is the principal branch (the upper side of its cut, +iπ); just above the axis beyond 1
  # the principal branch is on the other side (−iπ, a jump of 2πi/z), the continued one is not.
  np.testing.assert_allclose(values, np.asarray(coefficients.alpha_pf(z.astype(jnp.complex64))), rtol=1e-6)
  above = jnp.asarray([2.0 + 1e-4j])
  continued, principal = complex(eos.alpha_pf_continued(above)[0]), complex(coefficients.alpha_pf(above)[0])
  assert abs(continued - 1j * math.pi / 2) < 1e-3
  assert abs(principal - (-1j * math.pi / 2)) < 1e-3  # the other side of the cut
  # Below Re z = 1 it is log(1 − z)/z everywhere (no cut near the real axis there).
  w = 0.5 + 0.2j
  assert complex(eos.alpha_pf_continued(jnp.asarray([w]))[0]) == pytest.approx(cmath.log(1 - w) / w, rel=1e-5)


def test_the_cross_entropy_is_the_trainers_and_holomorphic():
  logits = jnp.asarray([[0.2, -1.0, 0.5], [1.5, 0.1, -0.3]])
  labels = jnp.asarray([2, 0])
  assert float(eos.cross_entropy(logits, labels)) == pytest.approx(float(losses.cross_entropy(logits, labels)))
  holomorphic.check_holomorphic(lambda a: eos.cross_entropy(a, labels), holomorphic.complexify(logits))
  with pytest.raises(holomorphic.NotHolomorphicError):
    holomorphic.check_holomorphic(lambda a: losses.cross_entropy(jnp.abs(a), labels), holomorphic.complexify(logits))


def test_loss_increases_against_the_stability_coefficient():
  records = [
    {'sc0_real': 0.3, 'next_loss_change': 0.2},
    {'sc0_real': 0.1, 'next_loss_change': -0.1},
    {'sc0_real': -0.2, 'next_loss_change': -0.3},
    {'sc0_real': 0.5, 'next_loss_change': 0.4},
    {'sc0_real': -0.1, 'next_loss_change': 0.1},
  ]
  numbers = eos.increases_with_positive_sc0(records)
  assert numbers['evaluations'] == 5 and numbers['loss_increases'] == 3
  assert numbers['increases_with_positive_sc0'] == pytest.approx(2 / 3)
  assert numbers['positive_sc0_fraction'] == pytest.approx(3 / 5)
  assert numbers['positive_sc0_followed_by_increase'] == pytest.approx(2 / 3)
  # Re sc_0 at the increases (0.3, 0.5, −0.1) against elsewhere (0.1, −0.2): 5 of the 6 pairs are ordered.
  assert numbers['auc_sc0_increase'] == pytest.approx(5 / 6)
  assert numbers['median_sc0_at_increases'] == pytest.approx(0.3)
  assert numbers['median_sc0_elsewhere'] == pytest.approx(-0.05)
  x, y = [r['sc0_real'] for r in records], [r['next_loss_change'] for r in records]
  assert numbers['corr_sc0_loss_change'] == pytest.approx(float(np.corrcoef(x, y)[0, 1]))
  with pytest.raises(ValueError, match='at least 2'):
    eos.increases_with_positive_sc0(records[:1])


def test_the_configs_are_the_thesis_settings(tmp_path):
  iris = eos.iris_config(tmp_path, eos.IRIS_FULL)
  assert (iris.data.name, iris.model.widths, iris.model.activation) == ('iris', (10, 10, 10, 10), 'tanh')
  assert (iris.optimizer.name, iris.optimizer.learning_rate, iris.batch_size) == ('sgd', 0.18, 0)
  assert iris.metrics.edge_of_stability and not iris.metrics.gc
  digits = eos.stability_config(tmp_path, eos.STABILITY_FULL)
  assert digits.data.name == 'digits' and digits.metrics.edge_of_stability and digits.model.activation == 'tanh'
  for config in (iris, digits, eos.iris_config(tmp_path, eos.IRIS_QUICK)):
    supervised.validate(config)
  assert Path(iris.out) == tmp_path / 'runs' / 'iris'
  assert {'eos-iris', 'eos-stability'} <= set(REPRODUCTIONS)


def _write_run(config: supervised.FitConfig, records: list[dict[str, float]]) -> None:
  path = Path(config.out) / METRICS_FILE
  path.parent.mkdir(parents=True, exist_ok=True)
  lines = [json.dumps({'kind': 'eval', 'step': 10 * i, **r}) for i, r in enumerate(records)]
  path.write_text('\n'.join(lines) + '\n')


def _records(lambdas, changes, sc0):
  return [
    {
      'lambda_0': lam,
      'two_over_h': 10.0,
      'g_u0': 0.1,
      'sc0_real': s,
      'sc0_imag': 0.2,
      'next_g_u0': -0.1,
      'next_g_u0_pf': -0.1,
      'next_g_u0_ngf': 0.01,
      'next_g_u0_igr': 0.001,
      'next_loss_change': c,
      'train_loss': 1.0,
      'train_accuracy': 0.5,
      'test_accuracy': 0.5,
    }
    for lam, c, s in zip(lambdas, changes, sc0)
  ]


def _render(fig) -> None:
  FigureCanvasAgg(fig).draw()
  assert fig.axes


def test_iris_numbers_from_a_hand_written_run(tmp_path):
  settings = eos.IrisSettings((4,), 0.2, 30, 10, 4, 0.5, 3, 0.05, 4)  # 2/h = 10
  config = eos.iris_config(tmp_path, settings)
  _write_run(config, _records([2.0, 9.0, 10.5, 11.5], [-0.1, -0.1, 0.2, 0.1], [-0.5, -0.1, 0.4, 0.3]))
  arrays = {
    'gd_loss': np.asarray([1.0, 1.2, 1.1, 1.3]),  # GD rises at iterations 1 and 3
    'eigenvalues': np.asarray([[-0.1, 1.0, 12.0], [0.0, 1.0, 11.0], [0.1, 2.0, 9.0], [0.2, 2.0, 10.5]]),
    'ngf/error': np.asarray([3.0, 2.0, 3.0]),
    'igr/error': np.asarray([2.0, 3.0, 2.0]),
    'pf/error': np.asarray([1.0, 2.5, 1.0]),
    'ngf/loss': np.asarray([0.9, 1.1, 1.0]),  # predicts a decrease everywhere
    'igr/loss': np.asarray([0.95, 1.15, 1.05]),
    'pf/loss': np.asarray([1.1, 1.0, 1.2]),  # predicts both rises
  }
  for name in eos.FLOW_NAMES:
    arrays[f'{name}/loss_error'] = arrays[f'{name}/loss'] - arrays['gd_loss'][1:]
  numbers = eos.iris_numbers(config, arrays, settings)
  _render(eos._iris_figure(config, arrays, numbers))
  assert numbers['two_over_h'] == pytest.approx(10.0)
  assert numbers['lambda_0_window_median'] == pytest.approx(11.0)  # the last half: 10.5 and 11.5
  assert numbers['lambda_0_window_ratio'] == pytest.approx(1.1)
  assert numbers['window_steps'] == [20, 30] and numbers['lambda_0_initial'] == 2.0
  assert numbers['lambda_0_final_run'] == 11.5 and numbers['lambda_0_final_dense'] == 12.0
  flows = numbers['flows']
  assert flows['pf']['median_error'] == 1.0 and flows['ngf']['median_error'] == 3.0
  assert flows['pf']['smallest_error_fraction'] == pytest.approx(2 / 3)
  assert flows['ngf']['smallest_error_fraction'] == pytest.approx(1 / 3)  # the tie at n = 2 goes to the first
  assert flows['pf']['predicts_increase_where_gd_increases'] == 1.0
  assert flows['ngf']['predicts_increase_where_gd_increases'] == 0.0
  assert flows['igr']['median_abs_loss_error'] == pytest.approx(0.25)
  assert numbers['flow_window']['gd_loss_increases'] == 2
  assert numbers['flow_window']['above_two_over_h_fraction'] == pytest.approx(0.75)  # λ_max 12, 11, 9, 10.5
  assert numbers['spectrum']['negative_fraction'] == pytest.approx(1 / 12)
  assert numbers['spectrum']['significant_negative_fraction'] == pytest.approx(1 / 12)  # −0.1 < −1e-3 · 12
  assert numbers['spectrum']['negative_mass_fraction'] == pytest.approx(0.1 / 13.1 / 4)  # iterate 0 only
  assert numbers['spectrum']['negative_mass_fraction_max'] == pytest.approx(0.1 / 13.1)
  assert numbers['spectrum']['min_over_max'] == pytest.approx(-0.1 / 12)
  assert numbers['loss_vs_sc0']['loss_increases'] == 2 and numbers['loss_vs_sc0']['evaluations'] == 3


def test_stability_numbers_from_a_hand_written_run(tmp_path):
  settings = eos.StabilitySettings((4,), 50, 0.2, 30, 10, 4, 0.2, 0.01, 10)
  config = eos.stability_config(tmp_path, settings)
  _write_run(config, _records([3.0, 11.0, 9.0, 10.5], [-0.1, 0.2, -0.1, 0.1], [-0.5, 0.4, -0.1, 0.3]))
  arrays = {
    'time': np.asarray([0.0, 0.1, 0.2]),
    'flip/loss': np.asarray([0.5, 0.7, 2.0]),
    'flip/lambda_0': np.asarray([10.0, 12.0, 11.0]),
    'flip/g_u0': np.asarray([0.0, 0.1, 1.0]),
    'ngf/loss': np.asarray([0.5, 0.45, 0.4]),
    'ngf/lambda_0': np.asarray([10.0, 10.2, 10.4]),
    'ngf/g_u0': np.asarray([0.0, 0.0, 0.0]),
  }
  numbers = eos.stability_numbers(config, arrays, settings)
  _render(eos._stability_figure(config, arrays, numbers))
  assert numbers['above_two_over_h_fraction'] == pytest.approx(0.5)
  assert numbers['lambda_0_max'] == 11.0 and numbers['flow_time'] == pytest.approx(0.2)
  assert numbers['loss_vs_sc0']['increases_with_positive_sc0'] == 1.0
  flip, ngf = numbers['flows']['flip'], numbers['flows']['ngf']
  assert flip['loss_change'] == pytest.approx(1.5) and flip['lambda_0_change'] == pytest.approx(1.0)
  assert flip['lambda_0_max'] == 12.0 and ngf['loss_change'] == pytest.approx(-0.1)
  assert flip['lambda_0_late_median'] == pytest.approx(11.5) and ngf['lambda_0_late_median'] == pytest.approx(10.3)


RESULT_KEYS = {'reproduction', 'figure', 'claim', 'settings', 'proxy', 'settings_used', 'quick'}


# The quick runs compile a dozen programs (the trainer with its diagnostics, the flows' Euler loops, the dense
# spectra) and draw six-panel figures in three formats: ~25 s of CPU each, so they are slow; their numbers and
# figures are checked above on hand-written run directories.
@pytest.mark.slow
def test_eos_iris_quick_run_writes_runs_arrays_figure_and_result(tmp_path):
  eos.run_iris(tmp_path, quick=True)
  assert (tmp_path / common.FIGURE_FILE).stat().st_size > 0
  result = json.loads((tmp_path / common.RESULT_FILE).read_text())
  assert result['reproduction'] == 'eos-iris' and result['quick'] is True
  assert RESULT_KEYS | {'flows', 'spectrum', 'lambda_0_window_median', 'loss_vs_sc0'} <= set(result)
  config = eos.iris_config(tmp_path, eos.IRIS_QUICK)
  assert result['lambda_0_final_run'] == common.final(config, 'lambda_0')  # read back from metrics.jsonl
  # The run's warm-started λ_0 at its last evaluation is the dense λ_0 of its final parameters.
  assert result['lambda_0_final_run'] == pytest.approx(result['lambda_0_final_dense'], rel=1e-3)
  with np.load(tmp_path / eos.FLOWS_FILE, allow_pickle=False) as z:
    n = eos.IRIS_QUICK.flow_steps
    assert z['gd_loss'].shape == (n + 1,) and z['eigenvalues'].shape[0] == n + 1
    for name in eos.FLOW_NAMES:
      assert z[f'{name}/error'].shape == (n,) and np.all(np.isfinite(z[f'{name}/error']))
      assert result['flows'][name]['median_error'] == pytest.approx(float(np.median(z[f'{name}/error'])))
  # The run's diagnostics draw through `smoothrl plot` too.
  written = plots.plot_runs(results.usable_runs(results.load_runs(tmp_path / 'runs')), tmp_path / 'plots')
  assert tmp_path / 'plots' / 'edge_of_stability.png' in written


@pytest.mark.slow
def test_eos_stability_quick_run_writes_runs_arrays_figure_and_result(tmp_path):
  eos.run_stability(tmp_path, quick=True)
  result = json.loads((tmp_path / common.RESULT_FILE).read_text())
  assert result['reproduction'] == 'eos-stability' and result['quick'] is True
  assert RESULT_KEYS | {'flows', 'loss_vs_sc0', 'above_two_over_h_fraction'} <= set(result)
  config = eos.stability_config(tmp_path, eos.STABILITY_QUICK)
  assert result['lambda_0_final'] == common.final(config, 'lambda_0')
  with np.load(tmp_path / eos.FLOWS_FILE, allow_pickle=False) as z:
    assert z['time'][0] == 0 and z['time'][-1] == pytest.approx(eos.STABILITY_QUICK.flow_time)
    for name in ('flip', 'ngf'):
      assert np.all(np.isfinite(z[f'{name}/loss'])) and z[f'{name}/lambda_0'].shape == z['time'].shape
    # Both flows start at the run's final parameters: the same loss and λ_0 there.
    assert z['flip/loss'][0] == z['ngf/loss'][0]
    assert z['flip/lambda_0'][0] == pytest.approx(z['ngf/lambda_0'][0], rel=1e-5)
  assert result['flows']['ngf']['loss_change'] < 0  # the NGF descends
  assert jax.tree.leaves(result['flows'])  # every number finite
  assert all(math.isfinite(v) for v in jax.tree.leaves(result['flows']))
