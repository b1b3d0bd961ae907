"""Aggregate scores over runs and games with stratified bootstrap confidence intervals.

The statistics that Agarwal et al. (2021), "Deep Reinforcement Learning at the Edge of the Statistical Precipice"
(NeurIPS), recommend for reporting few-run results, with the definitions of their library, rliable. Scores are
matrices of shape [runs, games] (runs are seeds), already normalised by the caller and free of NaN: drop failed
runs first. Algorithms compared may have different numbers of runs, but the same games in the same column order.

* Aggregates pool all runs × games: `mean`, `median`, `iqm` (the interquartile mean: a 25%-trimmed mean, dropping
  int(0.25 * n) of the n pooled scores from each end, as `scipy.stats.trim_mean(x, 0.25)`) and `optimality_gap`
  (the mean of max(γ - x, 0)).
* `stratified_bootstrap`: percentile intervals over replicates that resample the runs of each game with
  replacement, independently across games, keeping the number of runs ("stratified" by game).
* `probability_of_improvement`: P(X > Y) averaged over games, per game the Mann-Whitney U statistic / (m n) with
  ties counted as 1/2.
* `performance_profile`: the run-score distribution, the fraction of all (run, game) scores strictly above each τ.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

import numpy as np

# An aggregate maps scores [..., runs, games] to a value per leading index ([...]; a float for one matrix).
Aggregate = Callable[[np.ndarray], float | np.ndarray]


class Interval(NamedTuple):
  """An estimate on the data and the percentile bootstrap interval [low, high] around it (arrays over τ for
  performance profiles)."""

  estimate: float | np.ndarray
  low: float | np.ndarray
  high: float | np.ndarray


def _scores(scores: np.ndarray, name: str = 'scores', batched: bool = False) -> np.ndarray:
  """`scores` as float64 [runs, games] ([..., runs, games] when `batched`), checked."""
  scores = np.asarray(scores, dtype=np.float64)
  if scores.ndim < 2 or (scores.ndim > 2 and not batched):
    raise ValueError(f'{name}: expected a score matrix of shape [runs, games], got shape {scores.shape}')
  if scores.shape[-2] == 0 or scores.shape[-1] == 0:
    raise ValueError(f'{name}: needs at least one run and one game, got shape {scores.shape}')
  if np.isnan(scores).any():
    raise ValueError(f'{name}: contains NaN; drop failed runs before aggregating')
  return scores


def _pooled(scores: np.ndarray) -> np.ndarray:
  scores = _scores(scores, batched=True)
  return scores.reshape(scores.shape[:-2] + (-1,))


def _value(x: np.ndarray) -> float | np.ndarray:
  return float(x) if np.ndim(x) == 0 else x


def mean(scores: np.ndarray) -> float | np.ndarray:
  """The mean of all runs × games."""
  return _value(_pooled(scores).mean(axis=-1))


def median(scores: np.ndarray) -> float | np.ndarray:
  """The median of all runs × games."""
  return _value(np.median(_pooled(scores), axis=-1))


def iqm(scores: np.ndarray) -> float | np.ndarray:
  """The interquartile mean of all runs × games: with n pooled scores sorted, the mean of those left after dropping
  int(0.25 n) from each end (`scipy.stats.trim_mean(x, 0.25)`; rliable's `aggregate_iqm`)."""
  pooled = np.sort(_pooled(scores), axis=-1)
  cut = int(0.25 * pooled.shape[-1])
  return _value(pooled[..., cut : pooled.shape[-1] - cut].mean(axis=-1))


def optimality_gap(scores: np.ndarray, gamma: float = 1.0) -> float | np.ndarray:
  """How far the scores fall short of `gamma` on average: the mean of max(gamma - x, 0) over all runs × games
  (rliable's `aggregate_optimality_gap`)."""
  return _value(np.maximum(gamma - _pooled(scores), 0.0).mean(axis=-1))


AGGREGATES: dict[str, Aggregate] = {'median': median, 'iqm': iqm, 'mean': mean, 'optimality_gap': optimality_gap}


def _check_bootstrap(reps: int, confidence: float) -> None:
  if int(reps) != reps or reps < 1:
    raise ValueError(f'reps must be a positive integer, got {reps!r}')
  if not 0.0 < confidence < 1.0:
    raise ValueError(f'confidence must lie in (0, 1), got {confidence!r}')


def _percentiles(replicates: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
  """The (1 - c) / 2 and (1 + c) / 2 percentiles of `replicates` over its first axis."""
  low, high = np.percentile(replicates, [50.0 * (1.0 - confidence), 50.0 * (1.0 + confidence)], axis=0)
  return low, high


def _resample(rng: np.random.Generator, scores: np.ndarray, reps: int) -> np.ndarray:
  """`reps` stratified replicates of `scores` [runs, games]: [reps, runs, games], each column drawn with
  replacement from the same column, independently across columns."""
  runs, games = scores.shape
  rows = rng.integers(0, runs, size=(reps, runs, games))
  return scores[rows, np.arange(games)]


def _resample_counts(rng: np.random.Generator, runs: int, reps: int) -> np.ndarray:
  """The share of each of `runs` runs in each of `reps` resamples of `runs` draws with replacement: [reps, runs],
  rows summing to 1."""
  return rng.multinomial(runs, np.full(runs, 1.0 / runs), size=reps) / runs


def stratified_bootstrap(
  scores: np.ndarray, aggregate: Aggregate, reps: int = 2000, confidence: float = 0.95, seed: int = 0
) -> Interval:
  """`aggregate(scores)` and its stratified-bootstrap percentile interval (Agarwal et al. 2021).

  Each replicate resamples, for every game separately, as many runs as there are with replacement from that game's
  runs; the interval is the (1 - confidence) / 2 and (1 + confidence) / 2 percentiles of the aggregate over the
  replicates.

  Args:
    scores: [runs, games].
    aggregate: maps [runs, games] to a float. It is first called once on all replicates, [reps, runs, games]; if
      it does not return shape [reps] (it does not reduce the last two axes only), it is called on each replicate.
    reps: the number of replicates.
    confidence: the interval's coverage, in (0, 1).
    seed: the seed of `np.random.default_rng`.

  Raises:
    ValueError: bad `scores` (not 2-D, no run or game, NaN), `reps` or `confidence`.
  """
  scores = _scores(scores)
  _check_bootstrap(reps, confidence)
  samples = _resample(np.random.default_rng(seed), scores, reps)
  replicates = np.asarray(aggregate(samples), dtype=np.float64)
  if replicates.shape != (reps,):
    replicates = np.array([aggregate(sample) for sample in samples], dtype=np.float64)
  low, high = _percentiles(replicates, confidence)
  return Interval(float(aggregate(scores)), float(low), float(high))


def aggregate_intervals(
  scores: Mapping[str, np.ndarray],
  aggregates: Mapping[str, Aggregate] | None = None,
  reps: int = 2000,
  confidence: float = 0.95,
  seed: int = 0,
) -> dict[str, dict[str, Interval]]:
  """`stratified_bootstrap` of each aggregate (default `AGGREGATES`) for each algorithm: {algorithm: {name: ...}}.

  Raises:
    ValueError: bad scores, or algorithms with different numbers of games.
  """
  _same_games(scores)
  aggregates = AGGREGATES if aggregates is None else aggregates
  return {
    algo: {name: stratified_bootstrap(s, fn, reps, confidence, seed) for name, fn in aggregates.items()}
    for algo, s in scores.items()
  }


def _same_games(scores: Mapping[str, np.ndarray]) -> None:
  games = {algo: _scores(s, name=algo).shape[1] for algo, s in scores.items()}
  if len(set(games.values())) > 1:
    raise ValueError(f'algorithms must share their games: numbers of games {games}')


def _beats(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """[games, m, n]: for each game, 1 where x_i > y_j, 1/2 where x_i == y_j and 0 where x_i < y_j."""
  x, y = x.T[:, :, None], y.T[:, None, :]
  return (x > y) + 0.5 * (x == y)


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
  """P(X > Y): per game, the Mann-Whitney U statistic of x's runs against y's over m n (ties count 1/2), averaged
  over games (Agarwal et al. 2021; rliable's `probability_of_improvement`).

  Args:
    x: [m runs, games].
    y: [n runs, games], the same games.
  """
  x, y = _same_games_pair(x, y)
  return float(_beats(x, y).mean())


def _same_games_pair(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  x, y = _scores(x, 'x'), _scores(y, 'y')
  if x.shape[1] != y.shape[1]:
    raise ValueError(f'x and y must share their games: shapes {x.shape} and {y.shape}')
  return x, y


def probability_of_improvement_interval(
  x: np.ndarray, y: np.ndarray, reps: int = 2000, confidence: float = 0.95, seed: int = 0
) -> Interval:
  """`probability_of_improvement(x, y)` with a stratified-bootstrap percentile interval: each replicate resamples
  the runs of x and, independently, those of y, within each game, keeping their numbers."""
  x, y = _same_games_pair(x, y)
  _check_bootstrap(reps, confidence)
  rng = np.random.default_rng(seed)
  beats = _beats(x, y)
  # A replicate's P for a game is the mean of beats[g] over the rows and columns drawn, w_x @ beats[g] @ w_y.
  replicates = sum(
    np.einsum('rm,mn,rn->r', _resample_counts(rng, x.shape[0], reps), b, _resample_counts(rng, y.shape[0], reps))
    for b in beats
  ) / len(beats)
  low, high = _percentiles(replicates, confidence)
  return Interval(float(beats.mean()), float(low), float(high))


def performance_profile(scores: np.ndarray, taus: np.ndarray) -> np.ndarray:
  """The run-score distribution: for each τ in `taus`, the fraction of all (run, game) scores strictly above τ
  (Agarwal et al. 2021; rliable's `create_performance_profile`)."""
  pooled = _scores(scores).ravel()
  return (pooled[:, None] > np.asarray(taus, dtype=np.float64).ravel()).mean(axis=0)


def performance_profile_interval(
  scores: np.ndarray, taus: np.ndarray, reps: int = 2000, confidence: float = 0.95, seed: int = 0
) -> Interval:
  """`performance_profile(scores, taus)` with pointwise stratified-bootstrap percentile intervals (arrays over τ)."""
  scores = _scores(scores)
  _check_bootstrap(reps, confidence)
  taus = np.asarray(taus, dtype=np.float64).ravel()
  rng = np.random.default_rng(seed)
  # A replicate's fraction above τ in a game is the drawn share of its runs above τ: counts @ (column > τ).
  replicates = sum(_resample_counts(rng, scores.shape[0], reps) @ (column[:, None] > taus) for column in scores.T)
  low, high = _percentiles(replicates / scores.shape[1], confidence)
  return Interval(performance_profile(scores, taus), low, high)


def performance_profiles(
  scores: Mapping[str, np.ndarray], taus: np.ndarray, reps: int = 2000, confidence: float = 0.95, seed: int = 0
) -> dict[str, Interval]:
  """`performance_profile_interval` of each algorithm's scores: {algorithm: Interval of arrays over τ}."""
  _same_games(scores)
  return {algo: performance_profile_interval(s, taus, reps, confidence, seed) for algo, s in scores.items()}
