"""Results across games and seeds, reported as Agarwal et al. (2021) recommend for few-run deep RL.

`score_matrices` turns loaded runs into the [runs, games] matrices of normalised final (or best) scores, one per
setting, that `stats` aggregates: MinAtar Normalised Scores for MinAtar games, Human Normalised Scores for Atari
(`results.normaliser`). `aggregate_report` is the text `smoothrl summary` prints after its table of means: per
setting the IQM, mean, median and optimality gap with stratified-bootstrap confidence intervals (the runs of each
game resampled, a fixed seed so that the output is reproducible), then each setting's probability of improvement
over the baseline. `plots.performance_profiles` and `plots.aggregate_intervals` draw the same numbers.

A setting enters the aggregates when it was run on every game; its rows are the seeds it has in every game, and
the report names what was left out. Raw returns of several games are not comparable, so they get no aggregates.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from smoothrl.launch.analysis import results, stats
from smoothrl.launch.analysis.results import Run

REPS = 2000  # bootstrap replicates
SEED = 0  # the bootstrap's seed: the same runs give the same intervals
GAMMA = 100.0  # the optimality gap's target: MNS 100 is Table E.2's max score, HNS 100 human level
# The aggregates, in the order of the report and of Agarwal et al.'s interval plots.
AGGREGATE_NAMES = {'iqm': 'IQM', 'mean': 'mean', 'median': 'median', 'optimality_gap': 'optimality gap'}


class ScoreMatrices(NamedTuple):
  """The scores of the settings that were run on every game, as [runs, games] matrices.

  Attributes:
    unit: 'MNS', 'HNS', or 'return' (the raw returns of a single game).
    envs: the games, in the matrices' column order.
    scores: {setting label: [runs, games] scores}, a row per seed run on every game, in the groups' order.
    seeds: {setting label: the seeds of its rows}.
    names: {setting label: its label in figures} (`results.display_labels`), for every setting found.
    params: {setting label: its config (flat, without the game)}, for every setting found.
    left_out: {setting label: why it is not in `scores`}.
    games_left_out: games of the runs left out because their scores are not in `unit`.
    runs_left_out: {setting label: how many of its runs are not rows, and why: '2 failed, 1 whose seed has no
      score on every game'}.
  """

  unit: str
  envs: tuple[str, ...]
  scores: dict[str, np.ndarray]
  seeds: dict[str, tuple[int, ...]]
  names: dict[str, str]
  params: dict[str, dict[str, Any]]
  left_out: dict[str, str]
  games_left_out: tuple[str, ...]
  runs_left_out: dict[str, str]


def score_matrices(
  runs: Sequence[Run], metric: str = 'final', normalise: bool = True, failed: Sequence[Run] = ()
) -> ScoreMatrices:
  """Each setting's `metric` scores (`results.Group.seed_scores`) over its seeds and the games, normalised.

  Settings are `results.group_runs`' labels over the `runs` and the `failed` ones (`results.failed_runs`), as in
  `results.summary_table`. The games are those of the runs; where some have a normalised score and others do not
  (MinAtar Freeway), those without are left out (`games_left_out`). A setting needs a scored run on every game to
  enter `scores`; its rows are the seeds with a finite score on every game, and the runs that are not rows (failed
  ones among them) are counted in `runs_left_out`.

  Raises:
    ValueError: no runs, scores where lower is better (an FID, an error: the aggregates and the probability of
      improvement rank higher scores as better), or games whose scores are not comparable: raw returns (or
      different normalised scores) of several games.
  """
  scored = {id(r) for r in runs}
  groups = results.group_runs([*runs, *(r for r in failed if id(r) not in scored)])
  if not groups:
    raise ValueError('no runs')
  lower = sorted({g.runs[0].kind for g in groups if g.runs and not g.higher_is_better})
  if lower:
    raise ValueError(
      f'the scores of {", ".join(lower)} runs are better when lower; the aggregates take higher as better'
    )
  envs = sorted({g.env for g in groups})
  unit = results.common_unit(envs, normalise)
  kept = envs
  if unit is None:
    kept = [e for e in envs if results.score_unit(e, normalise) != 'return']
    unit = results.common_unit(kept, normalise) if kept else None
    if unit is None:
      units = sorted({results.score_unit(e, normalise) for e in envs})
      what = (
        f'raw returns of {len(envs)} games'
        if units == ['return']
        else f'scores of {len(envs)} games in different units ({", ".join(units)})'
      )
      raise ValueError(
        f'{what} ({", ".join(envs)}) are not comparable: aggregates across games need one '
        'normalised score (MNS for MinAtar, HNS for Atari)'
      )
  table = results.by_label(groups)
  params = {
    label: {k: v for k, v in next(iter(per_env.values())).params.items() if k != 'env'}
    for label, per_env in table.items()
  }
  names = dict(zip(params, results.display_labels(list(params.values()))))
  scores, seeds, left_out, runs_left_out = {}, {}, {}, {}
  for label, per_env in table.items():
    missing = [e for e in kept if e not in per_env]
    if missing:
      left_out[label] = f'not run on {", ".join(missing)}'
      continue
    games = [results.Group(per_env[e].params, [r for r in per_env[e].runs if id(r) in scored], label) for e in kept]
    stopped = [e for e, g in zip(kept, games) if not g.runs]
    if stopped:
      left_out[label] = 'every run failed' + (f' on {", ".join(stopped)}' if len(kept) > 1 else '')
      continue
    try:
      per_game = [g.seed_scores(metric, normalise) for g in games]
    except ValueError as e:  # seeds without a common evaluation step
      left_out[label] = str(e)
      continue
    common = sorted(set.intersection(*(set(s) for s in per_game)))
    common = [s for s in common if all(math.isfinite(scores_of[s]) for scores_of in per_game)]
    if not common:
      left_out[label] = 'no seed with a finite score on every game'
      continue
    scores[label] = np.array([[scores_of[s] for scores_of in per_game] for s in common], dtype=np.float64)
    seeds[label] = tuple(common)
    stops = sum(len(per_env[e].runs) for e in kept) - sum(len(g.runs) for g in games)
    others = sum(len(g.runs) for g in games) - len(common) * len(kept)
    reasons = [f'{stops} failed'] * bool(stops) + [f'{others} whose seed has no score on every game'] * bool(others)
    if reasons:
      runs_left_out[label] = ', '.join(reasons)
  return ScoreMatrices(
    unit, tuple(kept), scores, seeds, names, params, left_out, tuple(e for e in envs if e not in kept), runs_left_out
  )


def aggregate_functions(unit: str) -> dict[str, stats.Aggregate]:
  """The aggregates of scores in `unit`, in `AGGREGATE_NAMES`' order: the optimality gap (below `GAMMA`) only for
  normalised scores, since raw returns have no target."""
  functions = {'iqm': stats.iqm, 'mean': stats.mean, 'median': stats.median}
  if unit != 'return':
    functions['optimality_gap'] = functools.partial(stats.optimality_gap, gamma=GAMMA)
  return functions


def aggregates(
  matrices: ScoreMatrices, reps: int = REPS, confidence: float = 0.95, seed: int = SEED
) -> dict[str, dict[str, stats.Interval]]:
  """{setting: {aggregate: its estimate and stratified-bootstrap interval}} (`stats.aggregate_intervals`)."""
  if not matrices.scores:
    return {}
  return stats.aggregate_intervals(matrices.scores, aggregate_functions(matrices.unit), reps, confidence, seed)


def baseline(matrices: ScoreMatrices) -> str | None:
  """The setting the others are compared with: the first whose method is 'none' (Adam), else the first."""
  labels = list(matrices.scores)
  plain = [label for label in labels if matrices.params[label].get('method.method') == 'none']
  return (plain or labels or [None])[0]


def improvements(
  matrices: ScoreMatrices, reference: str | None = None, reps: int = REPS, confidence: float = 0.95, seed: int = SEED
) -> dict[str, stats.Interval]:
  """{setting: P(setting > `reference`) with its stratified-bootstrap interval} for each other setting
  (`stats.probability_of_improvement_interval`); `reference` defaults to `baseline`."""
  reference = baseline(matrices) if reference is None else reference
  if reference is None:
    return {}
  y = matrices.scores[reference]
  return {
    label: stats.probability_of_improvement_interval(x, y, reps, confidence, seed)
    for label, x in matrices.scores.items()
    if label != reference
  }


def profile_taus(matrices: ScoreMatrices, num: int = 101) -> np.ndarray:
  """Thresholds τ for performance profiles: from min(0, lowest score) to the highest score."""
  pooled = np.concatenate([s.ravel() for s in matrices.scores.values()])
  low, high = min(0.0, float(pooled.min())), float(pooled.max())
  return np.linspace(low, high if high > low else low + 1.0, num)


def profiles(
  matrices: ScoreMatrices, taus: np.ndarray | None = None, reps: int = REPS, confidence: float = 0.95, seed: int = SEED
) -> tuple[np.ndarray, dict[str, stats.Interval]]:
  """(τ, {setting: the fraction of its runs × games scoring above each τ, with pointwise bootstrap bands})."""
  taus = profile_taus(matrices) if taus is None else np.asarray(taus, dtype=np.float64)
  return taus, stats.performance_profiles(matrices.scores, taus, reps, confidence, seed)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
  widths = [max(len(r[i]) for r in [*rows, header]) for i in range(len(header))]
  lines = ['  '.join(c.ljust(w) for c, w in zip(header, widths)).rstrip(), '  '.join('-' * w for w in widths)]
  return lines + ['  '.join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def _interval(interval: stats.Interval, decimals: int = 2) -> str:
  return f'{interval.estimate:.{decimals}f} [{interval.low:.{decimals}f}, {interval.high:.{decimals}f}]'


def aggregate_report(
  runs: Sequence[Run],
  metric: str = 'final',
  normalise: bool = True,
  confidence: float = 0.95,
  reps: int = REPS,
  seed: int = SEED,
  reference: str | None = None,
  failed: Sequence[Run] = (),
) -> str:
  """The aggregates across games and seeds as text: a table of each setting's IQM, mean, median and optimality gap
  with stratified-bootstrap intervals, then the probability of improvement of each setting over `reference`
  (`baseline` by default), then what was left out, `failed` runs (`results.failed_runs`) among it. '' when there
  are no `runs`.
  """
  if not runs:
    return ''
  pct = f'{100 * confidence:g}%'
  heading = 'Across games and seeds'
  try:
    matrices = score_matrices(runs, metric, normalise, failed)
  except ValueError as e:
    return f'{heading}: no aggregates: {e}.'
  games = f'{len(matrices.envs)} game{"s" * (len(matrices.envs) != 1)} ({", ".join(matrices.envs)})'
  lines = [
    f'{heading} (Agarwal et al. 2021): {metric} {matrices.unit} of {games}',
    f'{pct} stratified-bootstrap CIs: {reps} replicates resampling the runs within each game, seed {seed}',
  ]
  intervals = aggregates(matrices, reps, confidence, seed)
  if intervals:
    names = list(aggregate_functions(matrices.unit))
    header = ['setting', 'runs/game'] + [AGGREGATE_NAMES[n] for n in names]
    rows = [
      [label, str(matrices.scores[label].shape[0])] + [_interval(values[n]) for n in names]
      for label, values in intervals.items()
    ]
    lines += _table(header, rows)
    if 'optimality_gap' in names:
      lines.append(
        f'optimality gap: the mean shortfall below {GAMMA:g} {matrices.unit} '
        f'({"the max score of thesis Table E.2" if matrices.unit == "MNS" else "human level"})'
      )
    reference = baseline(matrices) if reference is None else reference
    better = improvements(matrices, reference, reps, confidence, seed)
    if better:
      lines += [
        '',
        f'Probability of improvement over the baseline Y = {reference}, with {pct} CIs:',
        'P(X > Y) is the chance that a run of X scores above a run of Y on a game, averaged over games',
      ]
      lines += _table(['setting', 'P(X > Y)'], [[label, _interval(p)] for label, p in better.items()])
    else:
      lines.append('no probability of improvement: a single setting')
  else:
    lines.append('no setting was run on every game')
  for label, why in matrices.left_out.items():
    lines.append(f'left out: {label}: {why}')
  for label, why in matrices.runs_left_out.items():
    lines.append(f'runs left out of {label}: {why}')
  if matrices.games_left_out:
    lines.append(f'left out: {", ".join(matrices.games_left_out)}: no {matrices.unit}')
  return '\n'.join(lines)
