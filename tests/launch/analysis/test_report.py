"""Tests of the aggregates across games and seeds and of `smoothrl summary` / `smoothrl plot` printing them, on a
hand-made sweep whose IQM and probability of improvement are computed by hand."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from test_results_plots import write_run  # beside this file, which pytest puts on the path

from smoothrl.launch import cli
from smoothrl.launch.analysis import report, results, stats

# The final MinAtar Normalised Scores of the sweep: {(game, method): [seed 0, seed 1, seed 2]}.
FINAL_MNS = {
  ('minatar/breakout', 'none'): [10.0, 20.0, 30.0],
  ('minatar/asterix', 'none'): [0.0, 5.0, 40.0],
  ('minatar/breakout', 'sn'): [40.0, 50.0, 60.0],
  ('minatar/asterix', 'sn'): [20.0, 30.0, 45.0],
}
# By hand. Pooled over 2 games x 3 seeds, 6 scores: int(0.25 * 6) = 1 dropped from each end.
#   none: 0 5 10 20 30 40 -> IQM (5 + 10 + 20 + 30) / 4 = 16.25; mean 105 / 6 = 17.50; median (10 + 20) / 2 = 15.
#   sn: 20 30 40 45 50 60 -> IQM (30 + 40 + 45 + 50) / 4 = 41.25; mean 245 / 6 = 40.83; median 42.5.
# P(sn > none): Breakout 9/9 pairs; Asterix: 20 and 30 beat 0 and 5 but not 40, 45 beats all three: 7/9.
#   (9/9 + 7/9) / 2 = 8/9 = 0.89.
IQM = {'none': 16.25, 'sn': 41.25}
MEAN = {'none': 17.5, 'sn': 245 / 6}
MEDIAN = {'none': 15.0, 'sn': 42.5}
GAP = {'none': 100 - 17.5, 'sn': 100 - 245 / 6}  # every score is below 100
P_SN_OVER_NONE = 8 / 9


def raw_score(env: str, mns: float) -> float:
  """The return whose MNS is `mns` (thesis Table E.2)."""
  high, low = results.MINATAR_REFERENCE[env.split('/')[1]]
  return low + mns * (high - low) / 100


@pytest.fixture
def sweep(tmp_path) -> Path:
  root = tmp_path / 'sweep'
  for (env, method), finals in FINAL_MNS.items():
    for seed, mns in enumerate(finals):
      write_run(
        root / f'{env.split("/")[1]}_{method}_{seed}',
        [(0, 0.0), (100, raw_score(env, mns))],
        env=env,
        seed=seed,
        method=method,
      )
  return root


def test_score_matrices_hold_each_settings_final_scores(sweep):
  matrices = report.score_matrices(results.find_runs(sweep))
  assert matrices.unit == 'MNS' and matrices.envs == ('minatar/asterix', 'minatar/breakout')
  assert list(matrices.scores) == ['method=none', 'method=sn'] and matrices.names == {
    'method=none': 'Adam',
    'method=sn': 'SN[-2]',
  }
  for method in ('none', 'sn'):
    expected = np.array([FINAL_MNS[('minatar/asterix', method)], FINAL_MNS[('minatar/breakout', method)]]).T
    np.testing.assert_allclose(matrices.scores[f'method={method}'], expected, atol=1e-9)
    assert matrices.seeds[f'method={method}'] == (0, 1, 2)
    assert stats.iqm(matrices.scores[f'method={method}']) == pytest.approx(IQM[method])
  assert report.baseline(matrices) == 'method=none'
  assert report.improvements(matrices)['method=sn'].estimate == pytest.approx(P_SN_OVER_NONE)
  assert not matrices.left_out and not matrices.games_left_out and not matrices.runs_left_out


def _numbers(text: str) -> list[float]:
  return [float(x) for x in re.findall(r'-?\d+\.\d+', text)]


def test_summary_prints_iqm_and_probability_of_improvement(sweep, capsys):
  assert cli.main(['summary', str(sweep)]) == 0
  out = capsys.readouterr().out
  table, aggregates = out.split('\n\n', 1)
  assert table.splitlines()[0].split()[:4] == ['env', 'setting', 'unit', 'seeds']  # the table of means comes first
  lines = aggregates.splitlines()
  assert lines[:2] == [
    'Across games and seeds (Agarwal et al. 2021): final MNS of 2 games (minatar/asterix, minatar/breakout)',
    '95% stratified-bootstrap CIs: 2000 replicates resampling the runs within each game, seed 0',
  ]
  assert lines[2].split() == ['setting', 'runs/game', 'IQM', 'mean', 'median', 'optimality', 'gap']
  matrices = report.score_matrices(results.find_runs(sweep))
  for method in ('none', 'sn'):
    row = next(line for line in lines if line.startswith(f'method={method} '))
    assert row.split()[1] == '3'
    values = _numbers(row)
    assert len(values) == 12
    estimates, lows, highs = values[0::3], values[1::3], values[2::3]
    assert estimates == pytest.approx([IQM[method], MEAN[method], MEDIAN[method], GAP[method]], abs=0.005)
    # The intervals are the stratified bootstrap's, seed 0: the same numbers on every call.
    scores = matrices.scores[f'method={method}']
    iqm = stats.stratified_bootstrap(scores, stats.iqm, reps=2000, seed=0)
    assert (lows[0], highs[0]) == pytest.approx((iqm.low, iqm.high), abs=0.005)
    assert all(lo <= est <= hi for lo, est, hi in zip(lows, estimates, highs))
  heading = next(
    i
    for i, line in enumerate(lines)
    if line.startswith('Probability of improvement over the baseline Y = method=none, with 95% CIs')
  )
  assert lines[heading + 2].split() == ['setting', 'P(X', '>', 'Y)']
  (row,) = [line for line in lines[heading + 4 :] if line.startswith('method=sn')]
  estimate, low, high = _numbers(row)
  assert estimate == pytest.approx(P_SN_OVER_NONE, abs=0.005) and low <= estimate <= high <= 1.0
  assert not any(line.startswith('left out') for line in lines)

  assert cli.main(['summary', str(sweep)]) == 0
  assert capsys.readouterr().out == out  # reproducible: the bootstrap has a fixed seed


def test_a_setting_missing_a_game_is_left_out_and_named(sweep, capsys):
  write_run(sweep / 'breakout_muleps_0', [(0, 0.5), (100, 30.0)], env='minatar/breakout', seed=0, method='muleps')
  assert cli.main(['summary', str(sweep)]) == 0
  aggregates = capsys.readouterr().out.split('\n\n', 1)[1]
  assert 'left out: method=muleps: not run on minatar/asterix' in aggregates
  assert not any(line.startswith('method=muleps ') for line in aggregates.splitlines())
  assert 'Probability of improvement over the baseline Y = method=none' in aggregates


def test_raw_returns_of_several_games_get_no_aggregates(sweep, capsys):
  assert cli.main(['summary', str(sweep), '--raw']) == 0
  aggregates = capsys.readouterr().out.split('\n\n', 1)[1]
  assert aggregates.strip() == (
    'Across games and seeds: no aggregates: raw returns of 2 games (minatar/asterix, minatar/breakout) are not '
    'comparable: aggregates across games need one normalised score (MNS for MinAtar, HNS for Atari).'
  )


def test_games_without_a_normalised_score_are_left_out_of_the_aggregates(sweep):
  for seed in range(3):
    write_run(sweep / f'freeway_{seed}', [(0, 0.0), (100, 20.0)], env='minatar/freeway', seed=seed)
  text = report.aggregate_report(results.find_runs(sweep))
  assert 'final MNS of 2 games (minatar/asterix, minatar/breakout)' in text
  assert 'left out: minatar/freeway: no MNS' in text


def test_seeds_missing_from_a_game_are_not_rows(sweep):
  write_run(sweep / 'breakout_sn_3', [(0, 0.5), (100, 30.0)], env='minatar/breakout', seed=3, method='sn')
  matrices = report.score_matrices(results.find_runs(sweep))
  assert matrices.seeds['method=sn'] == (0, 1, 2)
  assert matrices.runs_left_out == {'method=sn': '1 whose seed has no score on every game'}
  assert 'runs left out of method=sn: 1 whose seed has no score on every game' in report.aggregate_report(
    results.find_runs(sweep)
  )


def fail(run_dir: Path) -> None:
  (run_dir / 'status.json').write_text('{"state": "failed", "step": 100, "error": "non-finite loss"}')


def test_failed_runs_are_left_out_and_counted(sweep, capsys):
  # A seed of sn failed on Breakout after an evaluation; every run of muleps failed.
  fail(sweep / 'breakout_sn_2')
  for env in ('minatar/breakout', 'minatar/asterix'):
    for seed in range(2):
      fail(
        write_run(sweep / f'{env.split("/")[1]}_muleps_{seed}', [], env=env, seed=seed, method='muleps', complete=False)
      )
  with pytest.warns(results.IncompleteRunWarning):
    assert cli.main(['summary', str(sweep)]) == 0
  table, aggregates = capsys.readouterr().out.split('\n\n', 1)
  assert 'method=muleps' in table  # the table of means counts failures, with the same labels
  lines = aggregates.splitlines()
  sn = next(line for line in lines if line.startswith('method=sn '))
  assert sn.split()[1] == '2'  # seeds 0 and 1: seed 2 failed on Breakout
  assert _numbers(sn)[0] == pytest.approx(stats.iqm(np.array([[20.0, 40.0], [30.0, 50.0]])), abs=0.005)
  assert 'left out: method=muleps: every run failed on minatar/asterix, minatar/breakout' in lines
  assert 'runs left out of method=sn: 1 failed, 1 whose seed has no score on every game' in lines


@pytest.mark.parametrize('command', ['summary', 'plot'])
def test_a_missing_path_is_a_one_line_error(sweep, tmp_path, capsys, command):
  missing = tmp_path / 'nowhere'
  assert cli.main([command, str(sweep), str(missing)]) == 2
  out, err = capsys.readouterr()
  assert err == f'smoothrl: no such file or directory: {missing}\n' and out == ''


def test_plot_writes_the_aggregate_figures_in_three_formats(sweep, tmp_path, capsys):
  out = tmp_path / 'figs'
  assert cli.main(['plot', str(sweep), '--out', str(out)]) == 0
  printed = capsys.readouterr().out.split()
  names = {'learning_curves', 'method_bars', 'performance_profiles', 'aggregate_intervals'}
  assert sorted(p.name for p in out.iterdir()) == sorted(f'{n}.{f}' for n in names for f in ('png', 'pdf', 'svg'))
  assert sorted(printed) == sorted(str(p) for p in out.iterdir())
  assert (out / 'performance_profiles.pdf').read_bytes()[:5] == b'%PDF-'
  svg = (out / 'aggregate_intervals.svg').read_text()
  for text in ('IQM', 'Median', 'Mean', 'Optimality gap', 'Adam', 'SN[-2]', 'over 3 runs per game'):
    assert text in svg, text


def test_plot_without_matplotlib_says_what_to_install(sweep, tmp_path, capsys, monkeypatch):
  from smoothrl.launch.analysis import plots  # pylint: disable=g-import-not-at-top

  monkeypatch.setattr(plots, 'matplotlib', None)  # as where the `plots` extra is not installed
  assert cli.main(['plot', str(sweep), '--out', str(tmp_path / 'figs')]) == 2
  assert capsys.readouterr().err.strip().splitlines()[-1] == (
    'smoothrl: drawing figures needs matplotlib: pip install "smoothrl[plots]"'
  )
  assert not (tmp_path / 'figs').exists()
  assert cli.main(['summary', str(sweep)]) == 0  # the rest works
