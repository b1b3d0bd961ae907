"""Default checks of the flow reproductions: the run configurations, the numbers from hand-written run directories,
and a quick run of `pf-quadratic` (closed forms: no ODE solve to compile). The quick runs of the others compile
ODE solves and are marked slow."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from smoothrl.launch.reproductions import REPRODUCTIONS, common
from smoothrl.launch.reproductions import flows as repro
from smoothrl.launch.run import flows as flow_runs
from smoothrl.launch.run.files import METRICS_FILE

NAMES = ('pf-quadratic', 'pf-1d', 'pf-banana', 'pf-cos', 'pf-mlp', 'pf-breast-cancer')


def test_the_reproductions_are_registered_and_their_configs_are_valid(tmp_path):
  assert all(name in REPRODUCTIONS for name in NAMES)
  quadratic = repro.configs_for(tmp_path, 'quadratic', repro.QUADRATIC_FULL, **{'problem.name': 'quadratic'})
  assert [(c.h, c.integrator.method) for c in quadratic] == [(0.5, 'closed_form'), (0.9, 'diffrax'), (1.05, 'diffrax')]
  assert Path(quadratic[1].out) == tmp_path / 'runs' / 'quadratic-h0.9'
  banana = repro.configs_for(tmp_path, 'banana', repro.BANANA_QUICK, **{'problem.name': 'rosenbrock'})
  assert [c.integrator.dt for c in banana] == pytest.approx([0.1 * c.h for c in banana])  # dt as a fraction of h
  for config in quadratic:
    flow_runs.validate(config)


def _write(config: flow_runs.FlowConfig, errors: dict[str, list[float]], h_lambda: float = 1.0) -> None:
  """A run directory with `eval` records of the given global and per-iteration errors."""
  path = Path(config.out) / METRICS_FILE
  path.parent.mkdir(parents=True, exist_ok=True)
  n = len(next(iter(errors.values())))
  lines = []
  for step in range(n):
    record = {'kind': 'eval', 'step': step, 'h_lambda_0': h_lambda + 0.1 * step}
    for flow, values in errors.items():
      record[f'global_error_{flow}'] = values[step]
      if step:
        value = values[step]
        record[f'per_iteration_error_{flow}'] = value / 2 if isinstance(value, float) else value
    lines.append(json.dumps(record))
  path.write_text('\n'.join(lines) + '\n')


def test_the_numbers_of_a_run_are_read_back_with_divergence_as_infinity(tmp_path):
  (config,) = repro.configs_for(tmp_path, 'x', repro.Settings(rates=(0.1,), steps=3, flows=('ngf', 'pf')))
  _write(config, {'ngf': [0.0, 0.2, 0.4, 0.6], 'pf': [0.0, 1e-7, 'nan', 3e-7]})
  numbers = repro._run_numbers(config)  # pylint: disable=protected-access
  assert numbers['max_global_error']['ngf'] == pytest.approx(0.6)
  assert numbers['mean_global_error']['ngf'] == pytest.approx(0.4)  # n = 1..3
  assert numbers['mean_per_iteration_error']['ngf'] == pytest.approx(0.2)
  assert numbers['max_global_error']['pf'] == math.inf and numbers['mean_global_error']['pf'] == math.inf
  assert numbers['h_lambda_0'] == pytest.approx(1.0) and numbers['max_h_lambda_0'] == pytest.approx(1.3)


def test_the_directions_follow_the_errors(tmp_path):
  settings = repro.Settings(rates=(0.1, 0.2, 0.3), steps=3, flows=('ngf', 'igr', 'third', 'pf'))
  configs = repro.configs_for(tmp_path, 'mlp', settings)
  for config in configs:
    _write(
      config,
      {'ngf': [0, 0.3, 0.3, 0.3], 'igr': [0, 0.2, 0.2, 0.2], 'third': [0, 0.1, 0.1, 0.1], 'pf': [0, 0.01, 0.05, 0.2]},
    )
  assert repro.mlp_numbers(configs, first=2)['direction'] == {'pf_smallest_global_error_first_n': True}
  assert repro.mlp_numbers(configs, first=3)['direction'] == {'pf_smallest_global_error_first_n': False}
  banana = repro.configs_for(tmp_path, 'banana', dataclasses.replace(settings, flows=('ngf', 'igr', 'pf', 'pf+third')))
  errors = {'ngf': [0, 1, 1, 1], 'igr': [0, 1, 1, 1], 'pf': [0, 0.1, 0.1, 0.1], 'pf+third': [0, 2, 2, 2]}
  for config in banana[:2]:
    _write(config, errors)
  _write(banana[2], {**errors, 'pf': [0, 5, 'inf', 'nan'], 'pf+third': [0, 0.5, 0.5, 0.5]})
  numbers = repro.banana_numbers(banana)
  assert numbers['direction'] == {
    'pf_closer_than_ngf_igr_at_smallest_h': True,
    'pf_closer_than_ngf_igr_near_2_over_h': True,
    'pf_third_closer_than_pf_at_largest_h': True,
    'pf_third_closest_at_largest_h': True,
  }
  assert numbers['closest_flow'] == {'0.1': 'pf', '0.2': 'pf', '0.3': 'pf+third'}


def _check_outputs(out: Path, name: str) -> dict:
  assert (out / common.FIGURE_FILE).stat().st_size > 0
  result = json.loads((out / common.RESULT_FILE).read_text())
  assert result['reproduction'] == name and result['quick'] is True
  return result


def test_pf_quadratic_quick_run_writes_its_figure_and_numbers(tmp_path):
  result = repro.run_quadratic(tmp_path, quick=True)
  assert result.keys() == _check_outputs(tmp_path, 'pf-quadratic').keys()
  assert set(result['per_rate']) == {'0.5', '0.9', '1.05'}
  assert result['direction'] == {'pf_passes_through_gd_iterates': True, 'ngf_and_igr_miss_them': True}
  traj = flow_runs.load_trajectories(tmp_path / 'runs' / 'quadratic-h0.9')
  # GD on θᵀAθ at h = 0.9: θ_n = ((1 − 1.8)^n, (1 − 0.018)^n).
  np.testing.assert_allclose(traj['gd'], np.stack([(-0.8) ** np.arange(5), 0.982 ** np.arange(5)], axis=1))
  np.testing.assert_allclose(traj['pf/iterates'], traj['gd'], atol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize('name', NAMES[1:])
def test_the_other_quick_runs_write_their_figures_and_numbers(tmp_path, name):
  result = REPRODUCTIONS[name].run(tmp_path, True)
  assert result.keys() == _check_outputs(tmp_path, name).keys()
  assert 'direction' in result and all(isinstance(v, bool) for v in result['direction'].values())
