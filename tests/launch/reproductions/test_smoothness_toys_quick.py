"""The two-moons smoothness toys (thesis Chapter 6): the quick version writes its runs, grids, figure and result;
the cells 'near the data' are the grid cells holding a training point."""

from __future__ import annotations

import json

import numpy as np
import pytest

from smoothrl.launch.reproductions import common
from smoothrl.launch.reproductions import smoothness_toys as toys


def test_reproductions_are_named_and_described():
  names = [r.name for r in toys.REPRODUCTIONS]
  assert names == ['moons-depth', 'moons-penalty', 'moons-sn']
  for r in toys.REPRODUCTIONS:
    assert r.figure.startswith('Figure') and r.claim and 'proxy' in r.settings and callable(r.run)


def test_data_cells_marks_the_cells_holding_points():
  # The box is [-1.5, 2.5] x [-1.0, 1.5]; with 4 cells per side the cells are 1.0 wide and 0.625 high.
  x = np.array([[-1.4, -0.9], [2.49, 1.49], [0.1, 0.0], [0.2, 0.1], [3.0, 0.0]])
  mask = toys.data_cells(x, 4)
  expected = np.zeros((4, 4), bool)
  expected[0, 0] = expected[3, 3] = expected[1, 1] = True  # (0.1, 0.0) and (0.2, 0.1) share cell [1, 1]
  np.testing.assert_array_equal(mask, expected)
  with pytest.raises(ValueError, match='shape'):
    toys.data_cells(np.zeros((3, 3)), 4)
  with pytest.raises(ValueError, match='cells_per_dim'):
    toys.data_cells(x, 0)


def test_quick_depth_writes_runs_grids_figure_and_result(tmp_path):
  toys.MOONS_DEPTH.run(tmp_path, True)
  for name in (common.RESULT_FILE, common.FIGURE_FILE, toys.GRID_FILE):
    assert (tmp_path / name).stat().st_size > 0
  result = json.loads((tmp_path / common.RESULT_FILE).read_text())
  assert result['reproduction'] == 'moons-depth' and result['figure'] == toys.MOONS_DEPTH.figure
  assert set(result) >= {'claim', 'settings', 'proxy', 'summary', 'variants', 'grids'}
  assert set(result['summary']) >= {'deep_lipschitz_mean', 'shallow_lipschitz_mean', 'seeds_deep_rougher'}
  cells = toys.QUICK.cells_per_dim
  with np.load(tmp_path / toys.GRID_FILE, allow_pickle=False) as z:
    for variant in ('deep', 'shallow'):
      record = result['variants'][variant]['seeds'][0]
      run = common.fit_config(tmp_path, f'{variant}_s0')
      assert record['train_accuracy'] == common.final(run, 'train_accuracy')
      grid = z[f'lipschitz/{variant}/seed0']
      assert grid.shape == (cells, cells) and np.all(grid >= 0)
      assert record['lipschitz_mean'] == pytest.approx(float(grid.mean()))
      assert record['rebuilt_train_accuracy'] == pytest.approx(record['train_accuracy'], abs=1e-6)


def test_margin_is_the_logit_difference_and_its_lipschitz_constant():
  # A linear model f(x) = x W + b: the margin is x (W[:, 1] - W[:, 0]) + b1 - b0, Lipschitz with constant
  # ||W[:, 1] - W[:, 0]||, which the grid approaches from below in every cell.
  import jax
  import jax.numpy as jnp

  from smoothrl.networks import smoothness
  from smoothrl.supervised import models

  model = models.make_model(models.ModelConfig(widths=(), activation='linear'), (2,), 2)
  params, state = model.init(jax.random.PRNGKey(3), jnp.zeros((1, 2)))
  params = jax.tree.map(lambda p: p + 0.5, params)  # a nonzero bias
  w, b = np.asarray(params['out']['w']), np.asarray(params['out']['b'])
  x = np.array([[0.3, -1.2], [2.0, 0.5], [-1.0, 1.0]], np.float32)
  margin = toys.margin_fn(model, params, state)
  np.testing.assert_allclose(np.asarray(margin(x))[:, 0], x @ (w[:, 1] - w[:, 0]) + b[1] - b[0], rtol=1e-5)
  grid = np.asarray(smoothness.local_lipschitz_grid(margin, toys.BOX_LOW, toys.BOX_HIGH, 3, 100, jax.random.key(0)))
  slope = np.linalg.norm(w[:, 1] - w[:, 0])
  assert np.all(grid <= slope * (1 + 1e-5)) and np.all(grid >= 0.97 * slope)
