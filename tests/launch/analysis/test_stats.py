"""Tests of the aggregate statistics and their stratified bootstrap intervals, against hand-computed values and
scipy's bootstrap."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from scipy import stats as scipy_stats

from smoothrl.launch.analysis import stats

# A skewed pooled sample of 8 (4 runs x 2 games): sorted -5, 0, 1, 2, 3, 7, 10, 100.
EIGHT = np.array([[0.0, 10.0], [1.0, 7.0], [3.0, 100.0], [2.0, -5.0]])


def random_scores(runs: int, games: int, seed: int = 0) -> np.ndarray:
  return np.random.default_rng(seed).gamma(2.0, size=(runs, games))


# ----------------------------------------------------------------------------------------------------------------
# Aggregates.


def test_iqm_of_eight_values_is_the_mean_of_the_middle_four():
  assert stats.iqm(EIGHT) == pytest.approx((1 + 2 + 3 + 7) / 4)
  assert stats.iqm(EIGHT) == pytest.approx(scipy_stats.trim_mean(EIGHT.ravel(), 0.25))


def test_iqm_when_the_count_is_not_divisible_by_four():
  # 10 values: int(2.5) = 2 dropped from each end, the middle 6 averaged.
  scores = np.array([[9.0, 0.0], [1.0, 8.0], [2.0, 7.0], [3.0, 50.0], [4.0, -20.0]])
  assert stats.iqm(scores) == pytest.approx((1 + 2 + 3 + 4 + 7 + 8) / 6)
  for runs, games in [(5, 2), (7, 1), (3, 1), (1, 1), (3, 3), (11, 3), (6, 5)]:
    x = random_scores(runs, games, seed=runs * games)
    assert stats.iqm(x) == pytest.approx(scipy_stats.trim_mean(x.ravel(), 0.25), rel=1e-12), (runs, games)


def test_iqm_differs_from_mean_and_median_on_skewed_scores():
  assert stats.mean(EIGHT) == pytest.approx(118 / 8)
  assert stats.median(EIGHT) == pytest.approx((2 + 3) / 2)
  assert stats.iqm(EIGHT) == pytest.approx(13 / 4)
  assert len({stats.mean(EIGHT), stats.median(EIGHT), stats.iqm(EIGHT)}) == 3


def test_optimality_gap_is_the_mean_shortfall_below_gamma():
  scores = np.array([[0.5, 1.5], [1.0, 0.2]])
  assert stats.optimality_gap(scores) == pytest.approx((0.5 + 0 + 0 + 0.8) / 4)
  assert stats.optimality_gap(scores, gamma=2.0) == pytest.approx((1.5 + 0.5 + 1.0 + 1.8) / 4)
  assert stats.optimality_gap(scores, gamma=2.0) == pytest.approx(2.0 - np.mean(np.minimum(scores, 2.0)))


@pytest.mark.parametrize('aggregate', [stats.mean, stats.median, stats.iqm, stats.optimality_gap])
def test_aggregates_of_a_stack_are_the_aggregates_of_each_matrix(aggregate):
  stack = random_scores(6, 3 * 5, seed=1).reshape(6, 5, 3).transpose(1, 0, 2)  # 5 matrices [6 runs, 3 games]
  batched = aggregate(stack)
  assert isinstance(aggregate(stack[0]), float)
  np.testing.assert_allclose(batched, [aggregate(m) for m in stack], rtol=1e-12)


# ----------------------------------------------------------------------------------------------------------------
# Stratified bootstrap.

# Monte-Carlo tolerance of the scipy comparisons. With R = 20000 replicates, the 2.5% percentile of the bootstrap
# distribution of a mean over n = 20 runs has a standard error of about sqrt(p (1 - p) / R) / f(q) ≈ 0.019 σ_b
# (σ_b = s / sqrt(n) ≈ 0.22 s, the bootstrap spread; f(q) the normal density there), so two independent estimates
# differ by about 0.006 s, 0.0016 of the data's range (≈ 3.7 s for 20 normal values): 0.01 of the range is over 6
# standard errors, and still smaller than a shift of the percentile level from 2.5% to 5% (≈ 0.07 s ≈ 0.019 range).
SPREAD_TOL = 0.01


@pytest.mark.parametrize('confidence', [0.95, 0.5])
@pytest.mark.parametrize(
  'aggregate,statistic',
  [
    (stats.mean, np.mean),
    (stats.iqm, functools.partial(scipy_stats.trim_mean, proportiontocut=0.25)),
  ],
)
def test_one_game_bootstrap_matches_scipy_percentile_bootstrap(aggregate, statistic, confidence):
  x = np.random.default_rng(3).normal(size=20)
  ours = stats.stratified_bootstrap(x[:, None], aggregate, reps=20000, confidence=confidence, seed=0)
  theirs = scipy_stats.bootstrap(
    (x,), statistic, method='percentile', confidence_level=confidence, n_resamples=20000, rng=np.random.default_rng(1)
  ).confidence_interval
  tol = SPREAD_TOL * np.ptp(x)
  assert ours.estimate == pytest.approx(statistic(x))
  assert ours.low == pytest.approx(theirs.low, abs=tol)
  assert ours.high == pytest.approx(theirs.high, abs=tol)


def test_bootstrap_resamples_within_each_game():
  # Constant games: any replicate drawing across games would move a per-game or overall statistic; within-game
  # draws leave it exactly where it is.
  scores = np.tile([0.0, 10.0, 100.0], (5, 1))
  game1 = stats.stratified_bootstrap(scores, lambda s: np.mean(s[..., 1], axis=-1), reps=500)
  assert game1 == stats.Interval(10.0, 10.0, 10.0)
  overall = stats.stratified_bootstrap(scores, stats.mean, reps=500)
  assert overall.low == pytest.approx(110 / 3) and overall.high == pytest.approx(110 / 3)
  runs = stats.stratified_bootstrap(scores, lambda s: np.full(np.shape(s)[:-2], np.shape(s)[-2]), reps=50)
  assert runs == stats.Interval(5.0, 5.0, 5.0)


def test_bootstrap_draws_each_game_independently():
  # Two identical games: resampling whole runs (the same rows in every game) would keep them identical.
  column = np.arange(4.0)
  scores = np.stack([column, column], axis=1)
  gap = stats.stratified_bootstrap(scores, lambda s: np.abs(s[..., 0] - s[..., 1]).mean(axis=-1), reps=500)
  assert gap.estimate == 0.0 and gap.high > 0.5


def test_independent_games_narrow_every_interval():
  # Two copies of one game: drawn independently, the replicates of a per-game average have about 1/sqrt(2) of the
  # spread of one game's; drawing the same runs in both games would give them the same spread.
  column = random_scores(8, 1, seed=12)
  twice = np.concatenate([column, column], axis=1)
  other = random_scores(6, 1, seed=13)

  def width(interval):
    return np.max(np.asarray(interval.high) - np.asarray(interval.low))

  for bootstrap in (
    lambda s, o: stats.stratified_bootstrap(s, stats.mean, reps=4000),
    lambda s, o: stats.probability_of_improvement_interval(s, o, reps=4000),
    lambda s, o: stats.probability_of_improvement_interval(o, s, reps=4000),
    lambda s, o: stats.performance_profile_interval(s, [np.median(column)], reps=4000),
  ):
    ratio = width(bootstrap(twice, np.concatenate([other, other], axis=1))) / width(bootstrap(column, other))
    assert 0.55 < ratio < 0.85, ratio


def test_replicates_draw_as_many_runs_as_there_are():
  # Runs 0 and 1 against a τ (or a y run) of 1/2: with 2 draws a replicate's value is 0, 1/2 or 1 with probabilities
  # 1/4, 1/2, 1/4, so its 40% and 60% percentiles are both 1/2; with 3 draws they would be 1/3 and 2/3.
  runs = np.array([[0.0], [1.0]])
  expected = (0.5, 0.5, 0.5)
  np.testing.assert_allclose(stats.stratified_bootstrap(runs, stats.mean, reps=4000, confidence=0.2), expected)
  np.testing.assert_allclose(
    stats.probability_of_improvement_interval(runs, [[0.5]], reps=4000, confidence=0.2), expected
  )
  np.testing.assert_allclose(
    stats.probability_of_improvement_interval([[0.5]], 1.0 - runs, reps=4000, confidence=0.2), expected
  )
  np.testing.assert_allclose(
    np.ravel(stats.performance_profile_interval(runs, [0.5], reps=4000, confidence=0.2)), expected
  )


def test_bootstrap_calls_a_scalar_aggregate_per_replicate():
  scores = random_scores(5, 3)
  vectorised = stats.stratified_bootstrap(scores, stats.mean, reps=300, seed=4)
  looped = stats.stratified_bootstrap(scores, lambda s: float(np.mean(s)), reps=300, seed=4)
  np.testing.assert_allclose(looped, vectorised, rtol=1e-12)


def test_bootstrap_is_reproducible_with_a_seed():
  scores = random_scores(5, 4)
  first = stats.stratified_bootstrap(scores, stats.iqm, reps=500, seed=7)
  assert stats.stratified_bootstrap(scores, stats.iqm, reps=500, seed=7) == first
  assert stats.stratified_bootstrap(scores, stats.iqm, reps=500, seed=8) != first
  pi = stats.probability_of_improvement_interval(scores, scores[:3] + 0.5, reps=500, seed=7)
  assert stats.probability_of_improvement_interval(scores, scores[:3] + 0.5, reps=500, seed=7) == pi
  profile = stats.performance_profile_interval(scores, [0.5, 1.0, 2.0], reps=500, seed=7)
  again = stats.performance_profile_interval(scores, [0.5, 1.0, 2.0], reps=500, seed=7)
  for a, b in zip(profile, again):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize('aggregate', [stats.mean, stats.median, stats.iqm, stats.optimality_gap])
def test_interval_contains_the_estimate(aggregate):
  interval = stats.stratified_bootstrap(random_scores(5, 6, seed=2), aggregate, reps=1000)
  assert interval.low < interval.estimate < interval.high


@pytest.mark.parametrize('confidence', [0.0, 1.0, -0.1, 1.5])
def test_confidence_must_lie_in_the_open_unit_interval(confidence):
  scores = random_scores(3, 2)
  with pytest.raises(ValueError, match='confidence'):
    stats.stratified_bootstrap(scores, stats.mean, confidence=confidence)
  with pytest.raises(ValueError, match='confidence'):
    stats.probability_of_improvement_interval(scores, scores, confidence=confidence)
  with pytest.raises(ValueError, match='confidence'):
    stats.performance_profile_interval(scores, [1.0], confidence=confidence)


@pytest.mark.parametrize('reps', [0, -1, 2.5])
def test_reps_must_be_a_positive_integer(reps):
  with pytest.raises(ValueError, match='reps'):
    stats.stratified_bootstrap(random_scores(3, 2), stats.mean, reps=reps)


# ----------------------------------------------------------------------------------------------------------------
# Probability of improvement.


def test_probability_of_improvement_counts_ties_as_half():
  x, y = np.array([[1.0], [2.0]]), np.array([[2.0], [0.0]])
  assert stats.probability_of_improvement(x, y) == pytest.approx((0 + 1 + 0.5 + 1) / 4)


def test_probability_of_improvement_averages_over_games_with_different_run_counts():
  # Game 0: x (1, 2) against y (2, 0, 1): 0 + 1 + 1/2 + 1/2 + 1 + 1 = 4 of 6. Game 1: x (0, 1) against y (1, 1, -1):
  # 0 + 0 + 1 + 1/2 + 1/2 + 1 = 3 of 6.
  x = np.array([[1.0, 0.0], [2.0, 1.0]])
  y = np.array([[2.0, 1.0], [0.0, 1.0], [1.0, -1.0]])
  assert stats.probability_of_improvement(x, y) == pytest.approx((4 / 6 + 3 / 6) / 2)


def test_probability_of_improvement_is_the_mann_whitney_u_over_mn():
  rng = np.random.default_rng(5)
  x, y = rng.integers(0, 4, size=(6, 3)).astype(float), rng.integers(0, 4, size=(4, 3)).astype(float)
  u = [scipy_stats.mannwhitneyu(x[:, g], y[:, g]).statistic / (6 * 4) for g in range(3)]
  assert stats.probability_of_improvement(x, y) == pytest.approx(np.mean(u))


def test_probability_of_improvement_of_both_orders_sums_to_one():
  rng = np.random.default_rng(6)
  x, y = rng.integers(0, 3, size=(5, 4)).astype(float), rng.integers(0, 3, size=(3, 4)).astype(float)
  assert stats.probability_of_improvement(x, y) + stats.probability_of_improvement(y, x) == pytest.approx(1.0)
  assert stats.probability_of_improvement(x, y) != pytest.approx(0.5)


def test_probability_of_improvement_of_identical_scores_is_half():
  x = random_scores(4, 3)
  assert stats.probability_of_improvement(x, x) == 0.5
  assert stats.probability_of_improvement_interval(x, x, reps=200).estimate == 0.5


def _u_over_mn(x, y, axis=-1):
  x, y = np.moveaxis(x, axis, -1)[..., :, None], np.moveaxis(y, axis, -1)[..., None, :]
  return ((x > y) + 0.5 * (x == y)).mean(axis=(-2, -1))


@pytest.mark.parametrize('confidence', [0.95, 0.5])
def test_one_game_improvement_interval_matches_scipy_two_sample_bootstrap(confidence):
  # scipy resamples two unpaired samples independently, as the stratified bootstrap does within a game. The
  # replicates are multiples of 1/(m n) = 1/120 with a bootstrap standard deviation of about 0.12; the tolerance
  # is six standard errors of a percentile estimate (about 0.02 of that standard deviation, as above) plus one atom.
  rng = np.random.default_rng(9)
  x, y = rng.normal(0.3, 1.0, size=12), rng.normal(size=10)
  ours = stats.probability_of_improvement_interval(x[:, None], y[:, None], reps=20000, confidence=confidence)
  theirs = scipy_stats.bootstrap(
    (x, y),
    _u_over_mn,
    method='percentile',
    confidence_level=confidence,
    n_resamples=20000,
    rng=np.random.default_rng(2),
  ).confidence_interval
  tol = 6 * 0.02 * 0.12 + 1 / 120
  assert ours.estimate == pytest.approx(_u_over_mn(x, y))
  assert ours.low == pytest.approx(theirs.low, abs=tol)
  assert ours.high == pytest.approx(theirs.high, abs=tol)


def test_improvement_interval_resamples_within_each_game():
  # x wins every pair in game 0 and loses every pair in game 1: P is 1/2 whatever runs each game draws.
  x = np.array([[10.0, 0.0], [11.0, 1.0], [12.0, 2.0]])
  y = np.array([[0.0, 10.0], [1.0, 11.0]])
  np.testing.assert_allclose(stats.probability_of_improvement_interval(x, y, reps=500), 0.5, rtol=1e-12)
  spread = stats.probability_of_improvement_interval(x[:, :1] - 11.0, y[:, :1], reps=500)
  assert spread.low < spread.estimate < spread.high


# ----------------------------------------------------------------------------------------------------------------
# Performance profiles.


def test_performance_profile_hand_computed_and_strictly_greater_at_ties():
  scores = np.array([[0.0, 1.0], [2.0, 3.0]])
  profile = stats.performance_profile(scores, np.array([-1.0, 0.0, 0.5, 1.0, 3.0, 4.0]))
  np.testing.assert_allclose(profile, [1.0, 0.75, 0.75, 0.5, 0.0, 0.0])
  ties = np.array([[1.0, 1.0], [1.0, 2.0]])
  np.testing.assert_allclose(stats.performance_profile(ties, [1.0, np.nextafter(1.0, 0.0)]), [0.25, 1.0])


def test_performance_profile_is_non_increasing_in_tau():
  scores = random_scores(7, 5)
  taus = np.linspace(0.0, 8.0, 101)
  estimate, low, high = stats.performance_profile_interval(scores, taus, reps=500)
  np.testing.assert_array_equal(estimate, stats.performance_profile(scores, taus))
  for curve in (estimate, low, high):
    assert np.all(np.diff(curve) <= 0.0)
  assert estimate[0] == 1.0 and estimate[-1] == 0.0
  assert np.all(low <= estimate) and np.all(estimate <= high) and np.any(low < high)


def test_performance_profile_interval_resamples_within_each_game():
  # Constant games at 0 and 10: the fraction above τ = 0 is exactly 1/2 in every stratified replicate.
  scores = np.tile([0.0, 10.0], (4, 1))
  estimate, low, high = stats.performance_profile_interval(scores, [-1.0, 0.0, 5.0, 10.0], reps=500)
  for curve in (estimate, low, high):
    np.testing.assert_array_equal(curve, [1.0, 0.5, 0.5, 0.0])


@pytest.mark.parametrize('confidence', [0.95, 0.5])
def test_performance_profile_interval_matches_the_bootstrap_of_the_fraction_above_tau(confidence):
  # Both are Monte-Carlo estimates of the same percentiles (the bootstrap is checked against scipy above). The
  # replicates are multiples of 1/200 with a standard deviation up to sqrt(0.25 / 200) ≈ 0.035: one atom plus six
  # standard errors of 0.02 of that.
  scores = random_scores(10, 20, seed=11)
  taus = np.array([1.0, 2.0, 3.0])
  profile = stats.performance_profile_interval(scores, taus, reps=20000, confidence=confidence, seed=1)
  for i, tau in enumerate(taus):
    fraction = stats.stratified_bootstrap(
      scores, lambda s, t=tau: (s > t).mean(axis=(-2, -1)), reps=20000, confidence=confidence, seed=2
    )
    assert profile.estimate[i] == pytest.approx(fraction.estimate)
    assert profile.low[i] == pytest.approx(fraction.low, abs=1 / 200 + 6 * 0.02 * 0.035)
    assert profile.high[i] == pytest.approx(fraction.high, abs=1 / 200 + 6 * 0.02 * 0.035)


# ----------------------------------------------------------------------------------------------------------------
# Several algorithms.


def test_aggregate_intervals_of_algorithms_with_different_run_counts():
  scores = {'dqn': random_scores(5, 3, seed=1), 'sn': random_scores(3, 3, seed=2)}
  intervals = stats.aggregate_intervals(scores, reps=300)
  assert set(intervals) == {'dqn', 'sn'}
  assert set(intervals['sn']) == {'median', 'iqm', 'mean', 'optimality_gap'}
  assert intervals['sn']['iqm'] == stats.stratified_bootstrap(scores['sn'], stats.iqm, reps=300)
  gap = stats.aggregate_intervals(scores, {'og2': functools.partial(stats.optimality_gap, gamma=2.0)}, reps=300)
  assert gap['dqn']['og2'].estimate == pytest.approx(stats.optimality_gap(scores['dqn'], gamma=2.0))
  profiles = stats.performance_profiles(scores, [1.0, 2.0], reps=300)
  np.testing.assert_array_equal(profiles['dqn'].estimate, stats.performance_profile(scores['dqn'], [1.0, 2.0]))


def test_algorithms_must_share_their_games():
  scores = {'dqn': random_scores(5, 3), 'sn': random_scores(5, 2)}
  with pytest.raises(ValueError, match='share their games'):
    stats.aggregate_intervals(scores, reps=10)
  with pytest.raises(ValueError, match='share their games'):
    stats.performance_profiles(scores, [1.0], reps=10)
  with pytest.raises(ValueError, match='share their games'):
    stats.probability_of_improvement(scores['dqn'], scores['sn'])


# ----------------------------------------------------------------------------------------------------------------
# Bad input.

_CALLS = {
  'iqm': stats.iqm,
  'mean': stats.mean,
  'median': stats.median,
  'optimality_gap': stats.optimality_gap,
  'bootstrap': lambda s: stats.stratified_bootstrap(s, stats.mean, reps=10),
  'improvement': lambda s: stats.probability_of_improvement(s, np.ones((2, 2))),
  'improvement_y': lambda s: stats.probability_of_improvement(np.ones((2, 2)), s),
  'improvement_interval': lambda s: stats.probability_of_improvement_interval(s, np.ones((2, 2)), reps=10),
  'profile': lambda s: stats.performance_profile(s, [0.0]),
  'profile_interval': lambda s: stats.performance_profile_interval(s, [0.0], reps=10),
  'mapping': lambda s: stats.aggregate_intervals({'dqn': s}, reps=10),
}


@pytest.mark.parametrize('call', _CALLS.values(), ids=_CALLS.keys())
def test_bad_scores_are_refused(call):
  with pytest.raises(ValueError, match='NaN'):
    call(np.array([[1.0, np.nan], [0.0, 1.0]]))
  with pytest.raises(ValueError, match=r'shape \[runs, games\]'):
    call(np.array([1.0, 2.0]))
  with pytest.raises(ValueError, match='at least one run'):
    call(np.zeros((0, 2)))
  with pytest.raises(ValueError, match='at least one run and one game'):
    call(np.zeros((2, 0)))


@pytest.mark.parametrize('name', [name for name in _CALLS if name not in stats.AGGREGATES])
def test_stacks_of_matrices_are_refused_where_one_matrix_is_expected(name):
  # The aggregates take stacks [..., runs, games] (the bootstrap calls them on all replicates at once).
  with pytest.raises(ValueError, match=r'shape \[runs, games\]'):
    _CALLS[name](np.ones((2, 2, 2)))
