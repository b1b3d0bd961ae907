"""The two-moons smoothness toys of thesis Chapter 6 at CPU scale: each reproduction shows the thesis' direction
on the numbers it wrote, and those numbers are what the run directories hold (the slow set: `make test-slow`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from smoothrl.launch.reproductions import common
from smoothrl.launch.reproductions import smoothness_toys as toys
from smoothrl.launch.run import supervised

SEEDS = (0, 1, 2)


def _run(name: str, tmp_path: Path) -> dict:
  reproduction = {r.name: r for r in toys.REPRODUCTIONS}[name]
  returned = reproduction.run(tmp_path, False)
  result = json.loads((tmp_path / common.RESULT_FILE).read_text())
  assert result == json.loads(json.dumps(returned))
  assert (tmp_path / common.FIGURE_FILE).stat().st_size > 0
  return result


def _check_read_back(tmp_path: Path, result: dict) -> None:
  """Every per-seed record agrees with its run directory (the last `eval` record) and with the grids written;
  the rebuilt network classifies the training points as the run's last evaluation says; every local Lipschitz
  constant of the margin f1 - f0 is at most sqrt(2) times the product of the layers' spectral norms (each layer
  is a linear map of norm sigma_l followed by a 1-Lipschitz ReLU, and |f1 - f0| <= sqrt(2) ||f||)."""
  with np.load(tmp_path / toys.GRID_FILE, allow_pickle=False) as z:
    grids = {k: z[k] for k in z.files}
  for name, variant in result['variants'].items():
    assert [r['seed'] for r in variant['seeds']] == list(SEEDS)
    for record in variant['seeds']:
      run_dir = tmp_path / record['run']
      config = supervised.FitConfig.from_dict(json.loads((run_dir / 'config.json').read_text()))
      assert config.seed == record['seed'] and config.steps == 100 and config.data.num_train == 50
      evals = [json.loads(line) for line in (run_dir / 'metrics.jsonl').read_text().splitlines()]
      last = [r for r in evals if r.get('kind') == 'eval'][-1]
      assert last['step'] == 100
      assert record['train_accuracy'] == pytest.approx(last['train_accuracy'], abs=1e-12)
      assert record['test_accuracy'] == pytest.approx(last['test_accuracy'], abs=1e-12)
      grid = grids[f'lipschitz/{name}/seed{record["seed"]}']
      assert grid.shape == (50, 50)
      assert record['lipschitz_mean'] == pytest.approx(float(grid.mean()), rel=1e-12)
      assert record['lipschitz_max'] == pytest.approx(float(grid.max()), rel=1e-12)
      assert record['lipschitz_max'] <= math.sqrt(2) * record['spectral_norm_product'] * (1 + 1e-5)
      assert record['rebuilt_train_accuracy'] == pytest.approx(record['train_accuracy'], abs=1e-6)
    means = variant['mean_over_seeds']
    assert means['lipschitz_mean'] == pytest.approx(np.mean([r['lipschitz_mean'] for r in variant['seeds']]))


@pytest.mark.slow
def test_moons_depth_deep_is_rougher(tmp_path):
  result = _run('moons-depth', tmp_path)
  deep, shallow = result['variants']['deep'], result['variants']['shallow']
  s = result['summary']
  assert s['deep_lipschitz_mean'] > s['shallow_lipschitz_mean'], s
  assert s['deep_lipschitz_mean'] == deep['mean_over_seeds']['lipschitz_mean']
  for d, sh in zip(deep['seeds'], shallow['seeds']):
    assert d['lipschitz_mean'] > sh['lipschitz_mean'], (d, sh)
  assert s['seeds_deep_rougher'] == len(SEEDS)
  _check_read_back(tmp_path, result)
  config = common.fit_config(tmp_path, 'deep_s0')
  assert common.final(config, 'train_accuracy') == deep['seeds'][0]['train_accuracy']


@pytest.mark.slow
def test_moons_penalty_smooths_near_the_data(tmp_path):
  result = _run('moons-penalty', tmp_path)
  base, pen = result['variants']['baseline'], result['variants']['penalty']
  s = result['summary']
  assert s['penalty_lipschitz_near_data'] < s['baseline_lipschitz_near_data'], s
  for b, p in zip(base['seeds'], pen['seeds']):
    assert p['lipschitz_near_data'] < b['lipschitz_near_data'], (b, p)
  _check_read_back(tmp_path, result)
  # The cells near the data are those holding a training point; re-derive one seed's mean from the grid file.
  with np.load(tmp_path / toys.GRID_FILE, allow_pickle=False) as z:
    near = toys.data_cells(z['x_train'], 50)
    assert near.sum() > 10
    assert float(z['lipschitz/penalty/seed0'][near].mean()) == pytest.approx(pen['seeds'][0]['lipschitz_near_data'])
  assert common.final(common.fit_config(tmp_path, 'penalty_s1'), 'test_accuracy') == pen['seeds'][1]['test_accuracy']


@pytest.mark.slow
def test_moons_sn_k1_underfits_and_k10_recovers(tmp_path):
  result = _run('moons-sn', tmp_path)
  s = result['summary']
  assert s['sn_k1_train_accuracy'] < s['sn_k10_train_accuracy'] - 0.05, s
  assert s['sn_k1_train_accuracy'] < s['baseline_train_accuracy'] - 0.05, s
  assert s['sn_k10_train_accuracy'] >= 0.95, s
  _check_read_back(tmp_path, result)
  # SN as Miyato et al. (Eq 6.3 times K): every layer's effective spectral norm is K (thesis Figure 6.4); this
  # checks the rebuilt power-iteration vectors too.
  for name, k in (('sn_k1', 1.0), ('sn_k10', 10.0)):
    for record in result['variants'][name]['seeds']:
      assert record['layer_spectral_norms'] == pytest.approx([k] * 4, rel=1e-3), record
  assert all(sigma > 1.5 for sigma in result['variants']['baseline']['seeds'][0]['layer_spectral_norms'])
  steps, accuracy = common.series(common.fit_config(tmp_path, 'sn_k1_s0'), 'train_accuracy')
  assert steps == list(range(0, 101, 10))
  assert accuracy[-1] == result['variants']['sn_k1']['seeds'][0]['train_accuracy']
