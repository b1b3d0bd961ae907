"""Default checks of the drift and DAL reproductions: the curve statistics against hand-computed values, the run
configurations, the numbers and figures from hand-written run directories, and a quick run of `drift` (the quick
run of `dal` compiles three programs and is marked slow)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from smoothrl.launch.reproductions import common, dal
from smoothrl.launch.run import supervised
from smoothrl.launch.run.files import METRICS_FILE


def test_pearson_matches_a_hand_computed_value():
  # x = (1, 2, 3), y = (2, 4, 7): Σdxdy = 5, Σdx² = 2, Σdy² = 114/9, so r = 5 / sqrt(228/9).
  assert dal.pearson([1, 2, 3], [2, 4, 7]) == pytest.approx(5 / math.sqrt(228 / 9), rel=1e-12)
  assert dal.pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
  assert dal.pearson([0.0, 1.0], [5.0, 5.0]) != dal.pearson([0.0, 1.0], [5.0, 5.0])  # constant: NaN


@pytest.mark.parametrize(
  'x, y, message',
  [([1.0], [1.0], 'at least 2'), ([1.0, 2.0], [1.0], 'one length'), ([1.0, math.inf], [1.0, 2.0], 'finite')],
)
def test_pearson_rejects_bad_input(x, y, message):
  with pytest.raises(ValueError, match=message):
    dal.pearson(x, y)


def test_instability_sums_the_rises_relative_to_the_initial_loss():
  # Rises 1 -> 1.5 (0.5) and 1.2 -> 2.2 (1.0), over L0 = 2.
  assert dal.instability([2.0, 1.0, 1.5, 1.2, 2.2]) == pytest.approx(0.75)
  assert dal.instability([3.0, 2.0, 2.0, 0.5]) == 0.0
  assert dal.instability([1.0]) == 0.0


@pytest.mark.parametrize(
  'losses, message', [([], 'non-empty'), ([0.0, 1.0], 'positive initial'), ([1.0, math.nan], 'finite')]
)
def test_instability_rejects_bad_input(losses, message):
  with pytest.raises(ValueError, match=message):
    dal.instability(losses)


def test_drift_configs_measure_the_ngf_drift_in_one_vmapped_group(tmp_path):
  configs = dal.drift_configs(tmp_path, dal.DRIFT_FULL)
  assert [c.optimizer.learning_rate for c in configs] == [0.01 * i for i in range(1, 11)]
  assert len({supervised.group(c) for c in configs}) == 1
  c = configs[4]
  assert (c.optimizer.name, c.model.widths, c.model.activation, c.batch_size) == ('sgd', (100,) * 4, 'elu', 0)
  assert c.metrics.ngf_drift and c.metrics.ngf_substeps == 20 and not c.metrics.gc
  assert Path(c.out) == tmp_path / 'runs' / 'lr0.05'
  for config in configs:
    supervised.validate(config)
  bad = dal.DriftSettings(learning_rates=(0.1,), shown_rate=0.2, widths=(4,), steps=2, log_period=1, substeps=2)
  with pytest.raises(ValueError, match='shown_rate'):
    dal.drift_configs(tmp_path, bad)


def test_dal_configs_cover_the_sweeps(tmp_path):
  runs = dal.dal_configs(tmp_path, dal.DAL_FULL)
  assert list(runs) == [
    'lr=0.01',
    'lr=0.03',
    'lr=0.1',
    'lr=0.3',
    'lr=1',
    'dal',
    'dal-p=0.25',
    'dal-p=0.5',
    'dal-p=0.75',
  ]
  fixed = [c for k, v in runs.items() if k.startswith('lr=') for c in v]
  assert len(fixed) == 15 and len({supervised.group(c) for c in fixed}) == 1  # one vmapped program
  assert [c.seed for c in runs['dal']] == [0, 1, 2]
  assert {c.optimizer.name for c in runs['dal']} == {'dal'}
  assert [c.optimizer.p for c in runs['dal-p=0.25']] == [0.25] * 3
  assert all(c.optimizer.max_rate == 5.0 and c.batch_size == 0 for v in runs.values() for c in v)
  for config in fixed + runs['dal-p=0.5']:
    supervised.validate(config)
  with pytest.raises(ValueError, match='powers must include'):
    dal.dal_configs(tmp_path, dal.DALSettings((0.1,), (0.25, 1.0), (0,), (4,), 2, 1))


def _render(fig) -> None:
  """Draws a figure on the Agg canvas (what saving it does first), without writing files."""
  FigureCanvasAgg(fig).draw()
  assert fig.axes


def _write_run(config: supervised.FitConfig, records: list[dict[str, float]]) -> None:
  path = Path(config.out) / METRICS_FILE
  path.parent.mkdir(parents=True, exist_ok=True)
  lines = [json.dumps({'kind': 'eval', 'step': 10 * i, **r}) for i, r in enumerate(records)]
  path.write_text('\n'.join(lines) + '\n')


def test_drift_numbers_read_the_correlations_back(tmp_path):
  settings = dal.DriftSettings((0.1, 0.2), 0.1, (4,), 30, 10, 2)
  configs = dal.drift_configs(tmp_path, settings)
  hg = np.array([4.0, 2.0, 1.0, 0.5])
  g = np.array([1.0, 3.0, 2.0, 5.0])
  for config in configs:
    h = config.optimizer.learning_rate
    # The measured drift is exactly 0.9 (h²/2)‖Hg‖: correlation 1 with ‖Hg‖, a ratio 0.9 to the estimate.
    _write_run(
      config,
      [
        {'ngf_drift': 0.9 * h * h / 2 * a, 'drift': h * h / 2 * a, 'hg_norm': a, 'grad_norm': b, 'train_loss': 1.0}
        for a, b in zip(hg, g)
      ],
    )
  numbers = dal.drift_numbers(configs)
  _render(dal._drift_figure(configs, settings, numbers))
  row = numbers['per_learning_rate']['0.2']
  assert row['corr_hg_norm'] == pytest.approx(1.0)
  assert row['corr_grad_norm'] == pytest.approx(dal.pearson(hg, g))
  assert row['corr_hg_over_grad_norm'] == pytest.approx(dal.pearson(hg, hg / g))
  assert row['ratio_measured_to_estimate'] == pytest.approx(0.9)
  assert row['mean_ngf_drift'] == pytest.approx(0.9 * 0.02 * hg.mean())
  assert numbers['min_corr_hg_norm'] == pytest.approx(1.0)
  assert numbers['sweep_log_corr_estimate'] == pytest.approx(1.0)


def _dal_records(losses: list[float], accuracy: float, rate: float) -> list[dict[str, float]]:
  return [
    {
      'train_loss': x,
      'train_accuracy': accuracy,
      'test_accuracy': accuracy,
      'drift': 0.1,
      'rate': rate,
      'grad_norm': 1.0,
    }
    for x in losses
  ]


def test_dal_numbers_and_directions_from_run_directories(tmp_path):
  settings = dal.DALSettings((0.1, 1.0), (0.5, 1.0), (0, 1), (4,), 20, 10)
  runs = dal.dal_configs(tmp_path, settings)
  for config in runs['lr=0.1']:
    _write_run(config, _dal_records([2.0, 1.0, 0.5], 0.90, 0.1))
  for config in runs['lr=1']:
    _write_run(config, _dal_records([2.0, 3.0, 2.5], 0.10, 1.0))  # climbs by 1 over L0 = 2
  for config in runs['dal']:
    _write_run(config, _dal_records([2.0, 0.5, 0.2], 0.92, 0.6))
  accuracies = [0.95, 0.93]
  for config, accuracy in zip(runs['dal-p=0.5'], accuracies):
    _write_run(config, _dal_records([2.0, 0.4, 0.6], accuracy, 2.0))  # climbs by 0.2 over L0 = 2
  numbers = dal.dal_numbers(runs, settings)
  _render(dal._dal_figure(runs, settings, numbers))
  assert numbers['fixed']['1']['instability'] == pytest.approx(0.5)
  assert numbers['dal_p']['0.5']['instability'] == pytest.approx(0.1)
  assert numbers['dal_p']['0.5']['test_accuracy'] == pytest.approx(0.94)
  assert numbers['dal_p']['0.5']['test_accuracy_std'] == pytest.approx(0.01)
  assert numbers['dal_p']['1'] == numbers['dal']
  assert numbers['dal']['mean_rate'] == pytest.approx(0.6)
  assert numbers['best_fixed_learning_rate'] == 0.1 and numbers['best_fixed_test_accuracy'] == pytest.approx(0.9)
  assert numbers['direction'] == {
    'dal_trains_without_sweep': True,
    'dal_as_stable_as_largest_rate': True,
    'dal_half_matches_best_fixed': True,
    'smaller_p_higher_test_accuracy': True,
    'smaller_p_less_stable': True,
  }
  for config in runs['dal-p=0.5']:  # DAL-0.5 now falls 2 points short of the best fixed rate
    _write_run(config, _dal_records([2.0, 0.4, 0.3], 0.88, 2.0))
  direction = dal.dal_numbers(runs, settings)['direction']
  assert not direction['dal_half_matches_best_fixed']
  assert not direction['smaller_p_higher_test_accuracy']
  assert not direction['smaller_p_less_stable']


RESULT_KEYS = {'reproduction', 'figure', 'claim', 'settings', 'proxy', 'settings_used', 'quick'}


def _check_outputs(out: Path, name: str) -> dict:
  assert (out / common.FIGURE_FILE).stat().st_size > 0
  result = json.loads((out / common.RESULT_FILE).read_text())
  assert result['reproduction'] == name and result['quick'] is True
  return result


def test_drift_quick_run_writes_its_figure_and_result(tmp_path):
  dal.run_drift(tmp_path, quick=True)
  result = _check_outputs(tmp_path, 'drift')
  assert RESULT_KEYS | {'per_learning_rate', 'mean_corr_hg_norm', 'min_corr_hg_norm', 'sweep_corr_estimate'} <= set(
    result
  )
  assert set(result['per_learning_rate']) == {'0.05', '0.1'}
  assert (tmp_path / 'runs' / 'lr0.05' / METRICS_FILE).is_file()


@pytest.mark.slow  # three compiled groups (fixed rates, DAL, DAL-0.5): ~15 s; the figure and numbers are checked above
def test_dal_quick_run_writes_its_figure_and_result(tmp_path):
  dal.run_dal(tmp_path, quick=True)
  result = _check_outputs(tmp_path, 'dal')
  assert RESULT_KEYS | {'fixed', 'dal', 'dal_p', 'best_fixed_test_accuracy', 'direction'} <= set(result)
  assert set(result['dal_p']) == {'0.5', '1'} and set(result['fixed']) == {'0.1', '1'}
  assert set(result['direction']) == {
    'dal_trains_without_sweep',
    'dal_as_stable_as_largest_rate',
    'dal_half_matches_best_fixed',
    'smaller_p_higher_test_accuracy',
    'smaller_p_less_stable',
  }


def test_reproductions_are_exported():
  assert [r.name for r in dal.REPRODUCTIONS] == ['drift', 'dal']
  assert all('proxy' in r.settings for r in dal.REPRODUCTIONS)
