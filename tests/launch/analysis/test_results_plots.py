"""Tests of results loading and aggregation and of the figures, on hand-made run directories."""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image  # pylint: disable=g-import-not-at-top
from scipy import stats

from smoothrl.agents.dqn import DQNConfig
from smoothrl.launch.analysis import (
  plots,  # pylint: disable=g-import-not-at-top
  results,
)
from smoothrl.launch.run.config import TrainConfig
from smoothrl.networks.method import MethodConfig

T975_2 = 4.302652729911275  # scipy.stats.t.ppf(0.975, 2)
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def write_run(
  path: Path,
  evals: Sequence[tuple[int, float]],
  *,
  env: str = 'minatar/breakout',
  seed: int = 0,
  method: str = 'none',
  layers: tuple[int, ...] = (-2,),
  lr: float = 0.00025,
  eps: float = 0.0003125,
  complete: bool = True,
  extra_lines: Sequence[str] = (),
) -> Path:
  """A run directory with the given (step, return_mean) evaluations, as the host runner lays it out."""
  config = TrainConfig(
    env=env,
    seed=seed,
    out=str(path),
    steps=1000,
    method=MethodConfig(method=method, layers=layers),
    dqn=DQNConfig(learning_rate=lr, adam_eps=eps),
  )
  path.mkdir(parents=True)
  (path / 'config.json').write_text(config.to_json())
  lines = []
  for step, value in evals:
    lines.append({'step': step, 'kind': 'episode', 'return': value - 1.0, 'length': 100})
    lines.append({'step': step, 'kind': 'train', 'loss': 0.5, 'q_mean': 1.0, 'updates': step // 4})
    lines.append({'step': step, 'kind': 'sigma', 'sigma': {'linear': 1.5}})
    lines.append(
      {'step': step, 'kind': 'eval', 'epsilon': 0.001, 'episodes': 3, 'return_mean': value, 'smoothness': 2.0}
    )
  text = ''.join(json.dumps(r) + '\n' for r in lines) + ''.join(extra_lines)
  (path / 'metrics.jsonl').write_text(text)
  if complete:
    final = {'return_mean': evals[-1][1]} if evals else None
    (path / 'summary.json').write_text(json.dumps({'steps': config.steps, 'final_eval': final}))
  return path


def mns_breakout(score: float) -> float:
  return 100 * (score - 0.52) / (122.88 - 0.52)


def ci(values: Sequence[float]) -> float:
  values = np.asarray(values, dtype=float)
  return stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))


# ----------------------------------------------------------------------------------------------------------------
# Loading.


def test_load_run_reads_config_records_and_summary(tmp_path):
  run_dir = write_run(
    tmp_path / 'r',
    [(200, 5.0), (100, 1.0)],
    seed=3,
    method='sn',
    lr=0.001,
    extra_lines=['{"step": 200, "kind": "eval", "return_mean": 7.0}\n', '{"step": 300, "ki'],
  )
  run = results.load_run(run_dir)
  assert run.config == TrainConfig.from_dict(json.loads((run_dir / 'config.json').read_text()))
  assert run.config.method.method == 'sn' and run.config_dict['dqn']['learning_rate'] == 0.001
  assert run.seed == 3 and run.env == 'minatar/breakout' and run.complete
  # Sorted by step; a step written twice keeps its last record; the torn last line is skipped.
  np.testing.assert_array_equal(run.eval_steps, [100, 200])
  np.testing.assert_array_equal(run.eval_returns, [1.0, 7.0])
  assert len(run.train) == 2 and all(r['kind'] == 'train' for r in run.train)
  assert run.summary['final_eval'] == {'return_mean': 1.0}
  np.testing.assert_allclose(run.scores(normalise=True), [mns_breakout(1.0), mns_breakout(7.0)])


def test_load_run_refuses_a_directory_that_is_not_a_run(tmp_path):
  with pytest.raises(FileNotFoundError, match='metrics.jsonl'):
    (tmp_path / 'x').mkdir()
    (tmp_path / 'x' / 'config.json').write_text(TrainConfig().to_json())
    results.load_run(tmp_path / 'x')


def test_find_runs_walks_sweeps_and_handles_incomplete_runs(tmp_path):
  sweep = tmp_path / 'sweep'
  write_run(sweep / 'lr_0.001' / 'seed_0', [(100, 1.0)], seed=0)
  write_run(sweep / 'lr_0.001' / 'seed_1', [(100, 2.0)], seed=1)
  write_run(sweep / 'lr_0.001' / 'seed_2', [(100, 3.0)], seed=2, complete=False)
  write_run(sweep / 'lr_0.001' / 'seed_3', [], seed=3, complete=False)
  failed = write_run(sweep / 'lr_0.001' / 'seed_4', [(100, 4.0)], seed=4)
  (failed / 'status.json').write_text(json.dumps({'state': 'failed', 'step': 100, 'error': 'non-finite loss'}))
  (sweep / 'pending').mkdir()
  (sweep / 'pending' / 'config.json').write_text(TrainConfig().to_json())
  other = write_run(tmp_path / 'single', [(100, 9.0)], seed=7)

  with pytest.warns(results.IncompleteRunWarning) as record:
    runs = results.find_runs([sweep, other])
  messages = ' '.join(str(w.message) for w in record)
  assert 'seed_2' in messages and 'seed_3' in messages and 'pending' in messages
  assert 'failed: non-finite loss' in messages
  assert sorted(r.seed for r in runs) == [0, 1, 7]

  with pytest.warns(results.IncompleteRunWarning):
    runs = results.find_runs(sweep, include_incomplete=True)
  # Seed 3 has no evaluation; seed 4 wrote a summary but its status says it failed.
  assert [(r.seed, r.complete, r.state) for r in runs] == [
    (0, True, 'done'),
    (1, True, 'done'),
    (2, False, 'incomplete'),
    (4, False, 'failed'),
  ]

  assert [r.seed for r in results.find_runs(other)] == [7]  # a run directory itself
  with pytest.raises(FileNotFoundError):
    results.find_runs(tmp_path / 'missing')


# ----------------------------------------------------------------------------------------------------------------
# Normalised scores.


def test_minatar_normalised_score_uses_table_e2():
  assert results.minatar_normalised_score('minatar/breakout', 61.7) == pytest.approx(
    100 * (61.7 - 0.52) / (122.88 - 0.52)
  )
  assert results.minatar_normalised_score('minatar/asterix', 78.90) == pytest.approx(100.0)
  assert results.minatar_normalised_score('minatar/seaquest', 0.09) == pytest.approx(0.0)
  assert results.minatar_normalised_score('space_invaders', 181.89) == pytest.approx(
    100 * (181.89 - 2.86) / (360.92 - 2.86)
  )
  np.testing.assert_allclose(
    results.minatar_normalised_score('minatar/breakout', np.array([0.52, 122.88])), [0.0, 100.0]
  )
  with pytest.raises(ValueError, match='freeway'):
    results.minatar_normalised_score('minatar/freeway', 10.0)
  assert results.normaliser('minatar/freeway') is None
  assert results.score_unit('minatar/freeway') == 'return'
  assert results.score_unit('minatar/breakout') == 'MNS'
  assert results.score_unit('minatar/breakout', normalise=False) == 'return'
  np.testing.assert_array_equal(results.normalise_scores('minatar/freeway', [3.0, 4.0]), [3.0, 4.0])


def test_atari_scores_are_human_normalised_when_available_else_raw(monkeypatch):
  monkeypatch.setattr(results, '_atari_hns', lambda: None)
  assert results.score_unit('atari/Pong') == 'return'
  np.testing.assert_array_equal(results.normalise_scores('atari/Pong', [3.0]), [3.0])

  def hns(game: str, score: float) -> float:
    if game != 'Pong':
      raise KeyError(game)
    return 100 * (score + 20.7) / (14.6 + 20.7)

  monkeypatch.setattr(results, '_atari_hns', lambda: hns)
  assert results.score_unit('atari/Pong') == 'HNS'
  np.testing.assert_allclose(results.normalise_scores('atari/Pong', [14.6, -20.7]), [100.0, 0.0])
  assert results.score_unit('atari/NotAGame') == 'return'


# ----------------------------------------------------------------------------------------------------------------
# Grouping and aggregation.


def test_confidence_interval_is_the_student_t_interval():
  interval = results.confidence_interval([10.0, 20.0, 30.0])
  assert interval.mean == 20.0 and interval.n == 3
  assert interval.half_width == pytest.approx(T975_2 * 10.0 / math.sqrt(3))
  assert interval.half_width == pytest.approx(ci([10.0, 20.0, 30.0]))
  assert (interval.lower, interval.upper) == pytest.approx((20 - interval.half_width, 20 + interval.half_width))
  single = results.confidence_interval([4.0])
  assert single.mean == 4.0 and math.isnan(single.half_width)
  assert results.confidence_interval([1.0, 2.0], confidence=0.9).half_width == pytest.approx(
    stats.t.ppf(0.95, 1) * np.std([1.0, 2.0], ddof=1) / math.sqrt(2)
  )


@pytest.fixture
def method_runs(tmp_path) -> list[results.Run]:
  """Breakout: 3 seeds of none and of sn[-2]; Asterix: 3 seeds of each; one extra lr for none on Breakout."""
  curves = {
    ('minatar/breakout', 'none'): [
      [(0, 1.0), (100, 10.0), (200, 8.0)],
      [(0, 2.0), (100, 20.0), (200, 14.0)],
      [(0, 3.0), (100, 30.0), (200, 20.0)],
    ],
    ('minatar/breakout', 'sn'): [
      [(0, 1.0), (100, 40.0), (200, 61.7)],
      [(0, 1.0), (100, 50.0), (200, 70.0)],
      [(0, 1.0), (100, 45.0), (200, 52.0)],
    ],
    ('minatar/asterix', 'none'): [
      [(0, 0.5), (100, 5.0), (200, 6.0)],
      [(0, 0.5), (100, 7.0), (200, 8.0)],
      [(0, 0.5), (100, 9.0), (200, 10.0)],
    ],
    ('minatar/asterix', 'sn'): [
      [(0, 0.5), (100, 12.0), (200, 20.0)],
      [(0, 0.5), (100, 14.0), (200, 30.0)],
      [(0, 0.5), (100, 16.0), (200, 40.0)],
    ],
  }
  for (env, method), seeds in curves.items():
    for seed, evals in enumerate(seeds):
      write_run(tmp_path / 'methods' / env.split('/')[1] / method / str(seed), evals, env=env, seed=seed, method=method)
  return results.find_runs(tmp_path / 'methods')


def test_groups_are_configs_that_differ_only_by_seed(method_runs):
  groups = results.group_runs(method_runs)
  assert [(g.env, g.label, g.seeds) for g in groups] == [
    ('minatar/asterix', 'method=none', [0, 1, 2]),
    ('minatar/asterix', 'method=sn', [0, 1, 2]),
    ('minatar/breakout', 'method=none', [0, 1, 2]),
    ('minatar/breakout', 'method=sn', [0, 1, 2]),
  ]
  assert all('seed' not in g.params and 'out' not in g.params for g in groups)
  assert groups[1].params['method.method'] == 'sn' and groups[1].params['method.layers'] == (-2,)


def test_labels_name_what_differs(tmp_path):
  write_run(tmp_path / 'a', [(0, 1.0)], method='sn', layers=(-2,), lr=0.001, eps=1e-4)
  write_run(tmp_path / 'b', [(0, 1.0)], method='sn', layers=(-2, -3), lr=0.001, eps=1e-4)
  write_run(tmp_path / 'c', [(0, 1.0)], method='none', layers=(-2,), lr=0.001, eps=1e-2)
  write_run(tmp_path / 'd', [(0, 1.0)], method='none', layers=(-2,), lr=0.00025, eps=1e-2)
  labels = [g.label for g in results.group_runs(results.find_runs(tmp_path))]
  assert labels == [
    'method=none layers=-2 lr=2.5e-4 eps=0.01',
    'method=none layers=-2 lr=0.001 eps=0.01',
    'method=sn layers=-2 lr=0.001 eps=1e-4',
    'method=sn layers=-2,-3 lr=0.001 eps=1e-4',
  ]
  assert results.format_value(1e-5) == '1e-5' and results.format_value(0.0003125) == '3.125e-4'
  assert results.format_value(0.00215) == '0.00215' and results.format_value((-2, -3)) == '-2,-3'


def test_final_and_best_scores_and_curves_over_seeds(method_runs):
  groups = {(g.env, g.label): g for g in results.group_runs(method_runs)}
  none = groups[('minatar/breakout', 'method=none')]
  final = none.score('final', normalise=False)
  assert final.mean == pytest.approx(14.0) and final.n == 3
  assert final.half_width == pytest.approx(T975_2 * 6.0 / math.sqrt(3))
  best = none.score('best', normalise=False)
  assert best.mean == pytest.approx(20.0) and best.half_width == pytest.approx(T975_2 * 10.0 / math.sqrt(3))

  sn = groups[('minatar/breakout', 'method=sn')]
  scores = [mns_breakout(v) for v in (61.7, 70.0, 52.0)]
  assert sn.seed_scores('final') == pytest.approx(dict(enumerate(scores)))
  assert sn.score('final').mean == pytest.approx(np.mean(scores))
  assert sn.score('final').half_width == pytest.approx(ci(scores))

  curve = none.curve(normalise=False)
  np.testing.assert_array_equal(curve.steps, [0, 100, 200])
  np.testing.assert_allclose(curve.mean, [2.0, 20.0, 14.0])
  np.testing.assert_allclose(curve.half_width, [ci([1, 2, 3]), ci([10, 20, 30]), ci([8, 14, 20])])


def test_mean_over_games_averages_each_seed_first(method_runs):
  table = results.by_label(results.group_runs(method_runs))
  per_seed = [
    np.mean([mns_breakout(b), results.minatar_normalised_score('asterix', a)])
    for b, a in ((61.7, 20.0), (70.0, 30.0), (52.0, 40.0))
  ]
  interval = results.game_mean(table['method=sn'], 'final')
  assert interval.mean == pytest.approx(np.mean(per_seed)) and interval.half_width == pytest.approx(ci(per_seed))
  curve = results.game_mean_curve(table['method=sn'])
  assert curve.mean[-1] == pytest.approx(np.mean(per_seed))
  with pytest.raises(ValueError, match='common normalised score'):
    results.game_mean(table['method=sn'], normalise=False)


def test_incomplete_runs_are_aggregated_on_common_steps(tmp_path):
  write_run(tmp_path / 'a', [(0, 1.0), (100, 4.0), (200, 9.0)], seed=0)
  write_run(tmp_path / 'b', [(0, 3.0), (100, 6.0)], seed=1, complete=False)
  (group,) = results.group_runs(results.find_runs(tmp_path, include_incomplete=True))
  assert not group.complete
  np.testing.assert_array_equal(group.common_steps(), [0, 100])
  assert group.score('final', normalise=False).mean == pytest.approx(5.0)
  assert group.score('best', normalise=False).mean == pytest.approx(5.0)
  table = results.summary_table([*group.runs], normalise=False)
  assert '5.00 ± ' in table and 'method=none *' in table and 'not completed' in table


def test_summary_table_lists_each_group_with_its_numbers(method_runs):
  table = results.summary_table(method_runs, normalise=True)
  lines = table.splitlines()
  assert lines[0].split()[:4] == ['env', 'setting', 'unit', 'seeds']
  sn = [mns_breakout(v) for v in (61.7, 70.0, 52.0)]
  sn_best = sn  # the last evaluation is each seed's best
  row = next(line for line in lines if line.startswith('minatar/breakout') and 'method=sn' in line)
  assert f'{np.mean(sn):.2f} ± {ci(sn):.2f}' in row and f'{np.mean(sn_best):.2f} ± {ci(sn_best):.2f}' in row
  assert row.split()[2:4] == ['MNS', '3']
  none = [mns_breakout(v) for v in (8.0, 14.0, 20.0)]
  none_best = [mns_breakout(v) for v in (10.0, 20.0, 30.0)]
  row = next(line for line in lines if line.startswith('minatar/breakout') and 'method=none' in line)
  assert f'{np.mean(none):.2f} ± {ci(none):.2f}' in row and f'{np.mean(none_best):.2f} ± {ci(none_best):.2f}' in row
  # Within a game the better final score comes first; the mean over both games follows.
  breakout = [line for line in lines if line.startswith('minatar/breakout')]
  assert 'method=sn' in breakout[0] and 'method=none' in breakout[1]
  assert sum(line.startswith('mean of 2 games') for line in lines) == 2
  raw = results.summary_table(method_runs, normalise=False)
  assert f'{14.0:.2f} ± {ci([8, 14, 20]):.2f}' in raw and 'mean of 2 games' not in raw


# ----------------------------------------------------------------------------------------------------------------
# Heatmap grid.


@pytest.fixture
def sweep_runs(tmp_path) -> list[results.Run]:
  """lr × eps sweeps for none and sn on Breakout and Asterix, 2 seeds; one cell missing for sn on Asterix."""
  lrs, epss = (1e-4, 1e-3, 1e-2), (1e-5, 1e-3)
  for method in ('none', 'sn'):
    for i, lr in enumerate(lrs):
      for j, eps in enumerate(epss):
        for env in ('minatar/breakout', 'minatar/asterix'):
          if method == 'sn' and env == 'minatar/asterix' and (i, j) == (2, 1):
            continue
          for seed in range(2):
            value = 10.0 * i + j + seed + (20.0 if method == 'sn' else 0.0) + (5.0 if env.endswith('x') else 0.0)
            write_run(
              tmp_path / 'sweep' / method / f'{env.split("/")[1]}_{i}_{j}_{seed}',
              [(0, 0.0), (100, value)],
              env=env,
              seed=seed,
              method=method,
              lr=lr,
              eps=eps,
            )
  return results.find_runs(tmp_path / 'sweep')


def test_heatmap_grid_is_the_mean_over_seeds_and_games(sweep_runs):
  grids = results.heatmap_grids(sweep_runs, 'dqn.learning_rate', 'dqn.adam_eps', metric='final')
  assert list(grids) == ['method=none', 'method=sn']
  asterix = lambda v: results.minatar_normalised_score('asterix', v)
  expected = {}
  for method, offset in (('none', 0.0), ('sn', 20.0)):
    matrix = np.empty((2, 3))
    for i in range(3):
      for j in range(2):
        seeds = [10.0 * i + j + s + offset for s in range(2)]
        matrix[j, i] = np.mean([np.mean([mns_breakout(v) for v in seeds]), np.mean([asterix(v + 5) for v in seeds])])
    expected[method] = matrix
  expected['sn'][1, 2] = np.nan  # Asterix was not run there
  for method in ('none', 'sn'):
    grid = grids[f'method={method}']
    np.testing.assert_allclose(grid.xs, [1e-4, 1e-3, 1e-2])
    np.testing.assert_allclose(grid.ys, [1e-5, 1e-3])
    np.testing.assert_allclose(grid.values, expected[method])  # NaN where expected is NaN

  one_method = [r for r in sweep_runs if r.config.method.method == 'none' and r.env == 'minatar/breakout']
  xs, ys, values, failed = results.heatmap_grid(one_method, metric='best', normalise=False)
  np.testing.assert_allclose(values, [[10.0 * i + 0.5 for i in range(3)], [10.0 * i + 1.5 for i in range(3)]])
  assert not failed.any()
  with pytest.raises(ValueError, match='panels'):
    results.heatmap_grid(sweep_runs)
  with pytest.raises(KeyError, match='not a config field'):
    results.heatmap_grids(sweep_runs, x='dqn.nope')
  with pytest.raises(ValueError, match='raw returns'):
    results.heatmap_grids(sweep_runs, normalise=False)


def test_failed_runs_are_counted_in_their_cells_and_widen_the_axes(sweep_runs, tmp_path):
  root = sweep_runs[0].path.parents[1]
  failure = {'state': 'failed', 'step': 100, 'error': 'TrainingError: non-finite loss nan at step 100'}
  # lr 0.1 diverged for every seed before its first evaluation; one seed of lr 1e-3, eps 1e-5 diverged later.
  for env in ('minatar/breakout', 'minatar/asterix'):
    for seed in range(2):
      path = write_run(
        root / 'none' / f'{env.split("/")[1]}_diverged_{seed}', [], env=env, seed=seed, lr=0.1, eps=1e-5, complete=False
      )
      (path / 'status.json').write_text(json.dumps(failure))
  path = write_run(
    root / 'none' / 'breakout_1_0_late', [(0, 0.0), (100, 50.0)], seed=2, lr=1e-3, eps=1e-5, complete=False
  )
  (path / 'status.json').write_text(json.dumps(failure))

  failed = results.failed_runs(results.load_runs(root))
  assert len(failed) == 5 and all(r.state == 'failed' for r in failed)
  with pytest.warns(results.IncompleteRunWarning) as caught:  # find_runs leaves them out, saying why
    assert len(results.find_runs(root)) == len(sweep_runs)
  reasons = [str(w.message) for w in caught]
  assert sum('failed before its first evaluation: TrainingError: non-finite loss' in r for r in reasons) == 4
  assert sum('(failed: TrainingError: non-finite loss' in r for r in reasons) == 1
  before = results.heatmap_grids(sweep_runs)
  grids = results.heatmap_grids(sweep_runs, failed=failed)
  none, sn = grids['method=none'], grids['method=sn']
  np.testing.assert_allclose(none.xs, [1e-4, 1e-3, 1e-2, 0.1])  # the diverged learning rate is on the axis
  np.testing.assert_array_equal(none.failed, [[0, 1, 0, 4], [0, 0, 0, 0]])
  np.testing.assert_allclose(none.values[:, :3], before['method=none'].values)  # finished runs score as before
  assert np.isnan(none.values[:, 3]).all() and not sn.failed.any()
  assert_png(plots.sensitivity_heatmap(sweep_runs, tmp_path / 'heat.png', failed=failed))

  assert 'failed' not in results.summary_table(sweep_runs)
  lines = results.summary_table(sweep_runs, failed=failed).splitlines()
  assert lines[0].split()[-1] == 'failed'
  row = lambda env, setting: next(line.split('  ') for line in lines if line.startswith(env) and setting in line)
  cells = lambda env, setting: [c.strip() for c in row(env, setting) if c.strip()]
  # Every seed of lr 0.1 diverged: a row without scores in each game, none in the mean over games.
  for env in ('minatar/breakout', 'minatar/asterix'):
    assert cells(env, 'lr=0.1 ')[-4:] == ['0', '—', '—', '2']
  assert not any(line.startswith('mean of 2 games') and 'lr=0.1 ' in line for line in lines)
  # One seed of lr 1e-3, eps 1e-5 diverged after an evaluation: counted, its scores left out.
  late = cells('minatar/breakout', 'method=none lr=0.001 eps=1e-5')
  assert late[-1] == '1' and late[3] == '2'
  assert cells('mean of 2 games', 'method=none lr=0.001 eps=1e-5')[-1] == '1'
  assert cells('minatar/breakout', 'method=sn lr=0.001 eps=1e-5')[-1] == '0'


# ----------------------------------------------------------------------------------------------------------------
# Figures.


def assert_png(path: Path, min_size: int = 100) -> None:
  assert path.is_file() and path.stat().st_size > 0
  assert path.read_bytes()[:8] == PNG_SIGNATURE
  with Image.open(path) as image:
    image.verify()
  with Image.open(path) as image:
    assert image.format == 'PNG' and min(image.size) > min_size
  assert not [p for p in path.parent.iterdir() if p.name.endswith('.tmp')]  # no temporary file left behind


def test_learning_curves_writes_a_png(method_runs, tmp_path):
  path = plots.learning_curves(method_runs, tmp_path / 'out' / 'curves.png')
  assert path == tmp_path / 'out' / 'curves.png'
  assert_png(path)


def test_sensitivity_heatmap_and_method_bars_write_pngs(sweep_runs, method_runs, tmp_path):
  assert_png(plots.sensitivity_heatmap(sweep_runs, tmp_path / 'heat.png'))
  assert_png(plots.method_bars(method_runs, tmp_path / 'bars.png'))
  assert_png(plots.method_bars(method_runs, tmp_path / 'bars_raw.png', normalise=False))


def test_rank_labels_and_max_lines_keep_the_best_settings(sweep_runs, tmp_path):
  groups = results.group_runs([r for r in sweep_runs if r.env == 'minatar/breakout'])
  ranked = results.rank_labels(groups)
  assert ranked[0] == 'method=sn lr=0.01 eps=0.001' and ranked[-1] == 'method=none lr=1e-4 eps=1e-5'
  assert_png(plots.learning_curves(sweep_runs, tmp_path / 'top.png', max_lines=3))


def test_best_per_method_keeps_each_methods_best_setting(sweep_runs):
  breakout = [r for r in sweep_runs if r.env == 'minatar/breakout']
  best = results.best_per_method(results.group_runs(breakout))
  assert [(g.label, g.params['dqn.learning_rate'], g.params['dqn.adam_eps']) for g in best] == [
    ('method=none (best of 6: lr=0.01 eps=0.001)', 1e-2, 1e-3),
    ('method=sn (best of 6: lr=0.01 eps=0.001)', 1e-2, 1e-3),
  ]
  assert best[1].score('final', normalise=False).mean == pytest.approx(20 + 20 + 1 + 0.5)


def test_plot_all_writes_what_the_runs_support(sweep_runs, method_runs, tmp_path):
  sweep_root = sweep_runs[0].path.parents[1]
  written = plots.plot_all(sweep_root, tmp_path / 'figs_sweep')
  assert sorted(p.name for p in written) == [
    'learning_curves.png',
    'method_bars.png',
    'sensitivity_best.png',
    'sensitivity_final.png',
  ]
  for path in written:
    assert_png(path)
  single = method_runs[0].path
  assert [p.name for p in plots.plot_all(single, tmp_path / 'figs_one')] == ['learning_curves.png']


def test_freeway_alone_is_plotted_in_raw_returns(tmp_path):
  for seed in range(2):
    write_run(tmp_path / f'f{seed}', [(0, 0.0), (100, 20.0 + seed)], env='minatar/freeway', seed=seed)
  runs = results.find_runs(tmp_path)
  (group,) = results.group_runs(runs)
  assert group.unit() == 'return' and group.score().mean == pytest.approx(20.5)
  with warnings.catch_warnings():
    warnings.simplefilter('error')
    assert_png(plots.learning_curves(runs, tmp_path / 'freeway.png'))


# ----------------------------------------------------------------------------------------------------------------
# Figures for a paper: what the written figures say.


@pytest.fixture
def figures(monkeypatch) -> dict[str, plots.Figure]:
  """{file name: the Figure written there}, for every figure `plots` saves during the test."""
  saved = {}
  save = plots.save_figure

  def keep(fig, path):
    saved[Path(path).name] = fig
    return save(fig, path)

  monkeypatch.setattr(plots, 'save_figure', keep)
  return saved


def legend_texts(fig) -> list[str]:
  return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


def visible_axes(fig) -> list:
  return [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != '<colorbar>']


def test_display_labels_name_methods_as_the_thesis_does():
  base = {'method.method': 'sn', 'method.layers': (-2,), 'dqn.learning_rate': 0.001}
  assert results.display_labels([base, {**base, 'method.method': 'none'}]) == ['SN[-2]', 'Adam']
  assert results.display_labels([base, {**base, 'method.layers': (-2, -3)}, {**base, 'method.method': 'muleps'}]) == [
    'SN[-2]',
    'SN[-2,-3]',
    'MULEPS[-2]',
  ]
  assert results.display_labels([base, {**base, 'dqn.learning_rate': 0.01}]) == ['lr=0.001', 'lr=0.01']
  assert results.display_labels([base, {**base, 'method.method': 'none', 'dqn.learning_rate': 1e-4}]) == [
    'SN[-2] lr=0.001',
    'Adam lr=1e-4',
  ]
  assert results.display_labels([base]) == ['SN[-2]']
  # The baseline's layers do not show: two baselines that differ only in them keep describe's labels.
  none = {**base, 'method.method': 'none'}
  assert results.display_labels([none, {**none, 'method.layers': (-3,)}]) == ['layers=-2', 'layers=-3']


def test_legends_name_methods_and_keep_short_labels_for_other_fields(method_runs, sweep_runs, tmp_path, figures):
  path = plots.learning_curves(method_runs, tmp_path / 'curves.png')
  assert legend_texts(figures['curves.png']) == ['Adam', 'SN[-2]']
  svg = path.with_suffix('.svg').read_text()
  assert 'SN[-2]' in svg and 'Adam' in svg and 'method=' not in svg  # text is kept as text in the SVG
  plots.learning_curves(sweep_runs, tmp_path / 'sweep.png', max_lines=None)
  texts = legend_texts(figures['sweep.png'])
  assert texts[:2] == ['Adam lr=1e-4 eps=1e-5', 'Adam lr=1e-4 eps=0.001'] and 'SN[-2] lr=0.01 eps=1e-5' in texts
  plots.sensitivity_heatmap(sweep_runs, tmp_path / 'heat.png')
  assert [ax.get_title() for ax in visible_axes(figures['heat.png'])] == ['Adam', 'SN[-2]']
  plots.method_bars(method_runs, tmp_path / 'bars.png')
  assert legend_texts(figures['bars.png']) == ['Adam', 'SN[-2]']


def test_every_figure_says_how_many_seeds_it_averages(method_runs, sweep_runs, tmp_path, figures):
  plots.learning_curves(method_runs, tmp_path / 'curves.png')
  assert 'mean over 3 seeds' in figures['curves.png'].get_suptitle()
  plots.method_bars(method_runs, tmp_path / 'bars.png')
  assert 'mean over 3 seeds ± 95% CI' in figures['bars.png'].get_suptitle()
  plots.sensitivity_heatmap(sweep_runs, tmp_path / 'heat.png')
  assert 'mean over 2 games and 2 seeds' in figures['heat.png'].get_suptitle()
  # A setting with fewer seeds: the legend says how many each has.
  fewer = [r for r in method_runs if not (r.config.method.method == 'sn' and r.seed == 2)]
  plots.learning_curves(fewer, tmp_path / 'fewer.png')
  assert 'mean over seeds (n in the legend)' in figures['fewer.png'].get_suptitle()
  assert legend_texts(figures['fewer.png']) == ['Adam (n=3)', 'SN[-2] (n=2)']
  plots.sensitivity_heatmap(sweep_runs[1:], tmp_path / 'heat_fewer.png')
  assert '1–2 seeds per cell' in figures['heat_fewer.png'].get_suptitle()


def test_panels_in_one_normalised_unit_share_their_y_axis(method_runs, tmp_path, figures):
  for seed in range(2):
    write_run(tmp_path / 'freeway' / str(seed), [(0, 0.0), (100, 20.0 + seed)], env='minatar/freeway', seed=seed)
  freeway = results.find_runs(tmp_path / 'freeway')
  plots.learning_curves(method_runs, tmp_path / 'curves.png')
  asterix, breakout, mean = visible_axes(figures['curves.png'])
  assert mean.get_title() == 'Mean over 2 games'
  shared = asterix.get_shared_y_axes()
  assert shared.joined(asterix, breakout) and shared.joined(asterix, mean)
  assert asterix.get_ylim() == breakout.get_ylim()
  plots.method_bars(method_runs, tmp_path / 'bars.png')
  asterix, breakout, mean = visible_axes(figures['bars.png'])
  assert [ax.get_title() for ax in (asterix, breakout, mean)] == [
    'Asterix (MinAtar)',
    'Breakout (MinAtar)',
    'Mean over 2 games',
  ]
  assert asterix.get_shared_y_axes().joined(asterix, breakout) and asterix.get_shared_y_axes().joined(asterix, mean)
  # Freeway's raw returns are on a scale of their own.
  plots.learning_curves([*method_runs, *freeway], tmp_path / 'mixed.png')
  panels = {ax.get_title(): ax for ax in visible_axes(figures['mixed.png'])}
  free, asterix = panels['Freeway (MinAtar)'], panels['Asterix (MinAtar)']
  assert not free.get_shared_y_axes().joined(free, asterix)
  assert asterix.get_shared_y_axes().joined(asterix, panels['Breakout (MinAtar)'])


def lr_runs(root: Path, seeds: int = 2) -> list[results.Run]:
  """Breakout, none and sn at two learning rates: seed 0 prefers lr 1e-3, seed 1 lr 1e-2 (final returns)."""
  finals = {1e-3: (60.0, 10.0), 1e-2: (30.0, 40.0)}
  for method, offset in (('none', 0.0), ('sn', 5.0)):
    for lr, values in finals.items():
      for seed in range(seeds):
        write_run(
          root / method / f'{lr}_{seed}', [(0, 0.0), (100, values[seed] + offset)], seed=seed, method=method, lr=lr
        )
  return results.find_runs(root)


def test_the_heatmap_needs_both_learning_rate_and_eps_to_vary(sweep_runs, tmp_path, figures):
  runs = lr_runs(tmp_path / 'lr')
  written = plots.plot_runs(runs, tmp_path / 'figs')
  assert [p.name for p in written] == [
    'learning_curves.png',
    'sensitivity_final.png',
    'sensitivity_best.png',
    'method_bars.png',
  ]
  # Only the learning rate varies: a score against it, a line per method, not a heatmap of one row.
  fig = figures['sensitivity_final.png']
  (ax,) = visible_axes(fig)
  assert not ax.collections and [line.get_label() for line in ax.get_lines()] == ['Adam', 'SN[-2]']
  assert ax.get_xlabel() == 'learning rate h (log scale)'
  plots.plot_runs(sweep_runs, tmp_path / 'both')
  heat = figures['sensitivity_final.png']
  assert all(ax.collections for ax in visible_axes(heat)) and len(visible_axes(heat)) == 2  # a mesh per method


def test_failed_settings_are_marked_in_the_sensitivity_curve(tmp_path, figures):
  runs = lr_runs(tmp_path / 'lr')
  for seed in range(2):
    path = write_run(tmp_path / 'lr' / 'none' / f'diverged_{seed}', [], seed=seed, lr=0.1, complete=False)
    (path / 'status.json').write_text(json.dumps({'state': 'failed', 'step': 100, 'error': 'non-finite loss'}))
  failed = results.failed_runs(results.load_runs(tmp_path / 'lr'))
  plots.plot_runs(runs, tmp_path / 'figs', failed=failed)
  fig = figures['sensitivity_final.png']
  assert '× where 2 runs failed' in fig.get_suptitle()
  (ax,) = visible_axes(fig)
  crosses = [line for line in ax.get_lines() if line.get_marker() == 'x' and len(line.get_xdata())]
  assert [list(line.get_xdata()) for line in crosses] == [[0.1]]


def test_method_bars_choose_each_methods_setting_on_other_seeds(tmp_path, figures):
  runs = lr_runs(tmp_path / 'lr')
  best = results.best_settings(results.group_runs(runs))
  # Chosen on seed 0 (lr 1e-3 is best there), reported on seed 1 (where lr 1e-3 is the worse setting).
  assert best.held_out and [(g.label, g.seeds) for g in best.groups] == [
    ('Adam (best of 2: lr=0.001)', [1]),
    ('SN[-2] (best of 2: lr=0.001)', [1]),
  ]
  assert [g.score('final', normalise=False).mean for g in best.groups] == [10.0, 15.0]
  assert best.note == 'best setting of each method chosen on seed 0; shown on seed 1'
  plots.method_bars(runs, tmp_path / 'bars.png')
  title = figures['bars.png'].get_suptitle()
  assert 'mean over 1 seed' in title and 'chosen on seed 0; shown on seed 1' in title
  # One seed per setting: chosen on the seeds shown, and the figure says so.
  one = lr_runs(tmp_path / 'one', seeds=1)
  single = results.best_settings(results.group_runs(one))
  assert not single.held_out and [g.seeds for g in single.groups] == [[0], [0]]
  assert [g.params['dqn.learning_rate'] for g in single.groups] == [1e-3, 1e-3]
  assert single.note == 'best setting chosen on the seeds shown (biased upwards)'
  plots.method_bars(one, tmp_path / 'one.png')
  assert 'best setting chosen on the seeds shown' in figures['one.png'].get_suptitle()


def test_method_bars_without_a_choice_show_every_seed(method_runs):
  best = results.best_settings(results.group_runs(method_runs))
  assert not best.held_out and best.note == '' and all(g.seeds == [0, 1, 2] for g in best.groups)


def test_every_figure_is_also_written_as_pdf_and_svg(sweep_runs, tmp_path):
  written = plots.plot_runs(sweep_runs, tmp_path / 'figs', aggregates=True)
  assert [p.name for p in written] == [
    'learning_curves.png',
    'sensitivity_final.png',
    'sensitivity_best.png',
    'method_bars.png',
    'performance_profiles.png',
    'aggregate_intervals.png',
  ]
  for path in written:
    assert_png(path)
    png, pdf, svg = plots.figure_files(path)
    assert png == path and pdf.read_bytes()[:5] == b'%PDF-' and svg.read_text().lstrip().startswith('<?xml')
    assert '<svg' in svg.read_text()
  assert len(list((tmp_path / 'figs').iterdir())) == 3 * len(written)


def test_aggregate_figures(method_runs, tmp_path, figures):
  plots.performance_profiles(method_runs, tmp_path / 'profiles.png')
  fig = figures['profiles.png']
  assert legend_texts(fig) == ['Adam', 'SN[-2]'] and 'over 3 runs per game' in fig.get_suptitle()
  (ax,) = visible_axes(fig)
  assert ax.get_ylabel() == 'fraction of runs with final score > τ'
  assert len(ax.collections) == 2  # a bootstrap band per setting
  plots.aggregate_intervals(method_runs, tmp_path / 'intervals.png')
  fig = figures['intervals.png']
  axes = visible_axes(fig)
  assert [ax.get_title() for ax in axes] == ['IQM', 'Mean', 'Median', 'Optimality gap']
  assert [t.get_text() for t in axes[0].get_yticklabels()] == ['Adam', 'SN[-2]']
  assert all(axes[0].get_shared_y_axes().joined(axes[0], ax) for ax in axes[1:])
  with pytest.raises(ValueError, match='not comparable'):
    plots.performance_profiles(method_runs, tmp_path / 'raw.png', normalise=False)


def _eos_record(step: int, loss: float, next_change: float) -> str:
  record = {
    'step': step,
    'kind': 'eval',
    'return_mean': 1.0,
    'train_loss': loss,
    'lambda_0': 9.0 + step / 100,
    'two_over_h': 10.0,
    'g_u0': 0.1,
    'sc0_real': 0.05 if next_change > 0 else -0.05,
    'sc0_imag': 0.0,
    'next_g_u0': -0.09,
    'next_g_u0_pf': -0.09,
    'next_g_u0_ngf': 0.04,
    'next_g_u0_igr': -0.01,
    'next_loss_change': next_change,
  }
  return json.dumps(record) + '\n'


def test_edge_of_stability_figure_is_drawn_only_for_runs_with_the_diagnostics(tmp_path):
  lines = [_eos_record(s, 1.0 / (1 + s), (-1) ** s * 0.01) for s in range(1, 40)]
  write_run(tmp_path / 'eos', [], extra_lines=lines)
  write_run(tmp_path / 'plain', [(100, 1.0), (200, 2.0)], seed=1)
  runs = results.load_runs(tmp_path)
  plain = [r for r in runs if r.path.name == 'plain']
  with pytest.raises(ValueError, match='edge-of-stability'):
    plots.edge_of_stability(plain, tmp_path / 'none.png')
  path = plots.edge_of_stability(runs, tmp_path / 'eos.png')
  assert path.read_bytes()[:8] == PNG_SIGNATURE and Image.open(path).size[1] > 0
  eos = [r for r in runs if r.path.name == 'eos']
  assert tmp_path / 'p' / 'edge_of_stability.png' in plots.plot_runs(eos, tmp_path / 'p')
