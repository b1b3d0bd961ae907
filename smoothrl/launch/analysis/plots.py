"""Figures of runs: learning curves, learning-rate × Adam-ε sensitivity, per-method bars and the aggregates across
games and seeds (performance profiles, interval estimates).

The figures follow thesis Chapter 7: learning curves of the evaluation return or normalised score with a confidence
band over seeds (Figure 7.2), the score over a sweep of learning rate and Adam's ε per method (Figure 7.4) and
method comparisons across games (Figure 7.5); and Agarwal et al. (2021) for the aggregates. Aggregation lives in
`smoothrl.launch.analysis.results` and `.report`; this module only draws. Legends name methods as the thesis does
('SN[-2]', `results.display_labels`), every figure says over how many seeds it averages, and panels in the same unit
share their y-axis. Figures are drawn on matplotlib's Agg canvas (no display needed) and written atomically, each
as a PNG and, beside it, a PDF and an SVG (text kept as text) for papers.

    smoothrl plot runs/sweep --out runs/sweep/plots
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

try:  # the `plots` extra; without it everything but drawing works
  import matplotlib
  from matplotlib import colors as mcolors
  from matplotlib import ticker
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
except ImportError:  # pragma: no cover - matplotlib is installed wherever the tests run
  matplotlib = None

from smoothrl.launch import kinds
from smoothrl.launch.analysis import report, results
from smoothrl.launch.analysis.results import Run, heatmap_grid, heatmap_grids  # re-exported for callers of this module
from smoothrl.launch.run import config as config_lib
from smoothrl.launch.run.files import atomic_file

__all__ = [
  'save_figure',
  'learning_curves',
  'sensitivity_heatmap',
  'sensitivity_curves',
  'method_bars',
  'performance_profiles',
  'aggregate_intervals',
  'edge_of_stability',
  'plot_all',
  'plot_runs',
  'figure_files',
  'heatmap_grid',
  'heatmap_grids',
]


def _require_matplotlib() -> None:
  if matplotlib is None:
    raise config_lib.ConfigError('drawing figures needs matplotlib: pip install "smoothrl[plots]"')


DPI = 120
FORMATS = ('png', 'pdf', 'svg')  # what `_save` writes: the PNG at the path given, the others beside it
# Vector output for papers: text stays text in SVGs, and PDFs embed TrueType fonts (not Type 3).
_VECTOR_RC = {'svg.fonttype': 'none', 'pdf.fonttype': 42}
_AXIS_NAMES = config_lib.FIELD_NAMES
_GAME_NAMES = {'space_invaders': 'Space Invaders'}


def figure_files(path: str | os.PathLike) -> list[Path]:
  """The files of the figure whose PNG is `path`: `path` and the PDF and SVG beside it (same name, other suffix)."""
  path = Path(path)
  return [path] + [path.with_suffix(f'.{fmt}') for fmt in FORMATS[1:]]


def save_figure(fig: Figure, path: str | os.PathLike) -> Path:
  """Writes `fig` as a PNG to `path` and as a PDF and an SVG beside it (`figure_files`), each atomically (see
  `io.atomic_file`); returns `path`."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  FigureCanvasAgg(fig)
  with matplotlib.rc_context(_VECTOR_RC):
    for target, fmt in zip(figure_files(path), FORMATS):
      with atomic_file(target, 'wb') as f:
        fig.savefig(f, format=fmt, dpi=DPI)
  return path


def _game_title(env: str) -> str:
  family, _, game = env.partition('/')
  name = _GAME_NAMES.get(game, game.replace('_', ' ').title() if family == 'minatar' else game)
  return f'{name} ({"MinAtar" if family == "minatar" else family.capitalize()})' if game else env


def _unit_name(unit: str) -> str:
  return results.UNIT_NAMES.get(unit, unit)


def _steps_formatter() -> ticker.Formatter:
  def fmt(value: float, _: Any) -> str:
    if abs(value) >= 1e6:
      return f'{value / 1e6:g}M'
    if abs(value) >= 1e3:
      return f'{value / 1e3:g}k'
    return f'{value:g}'

  return ticker.FuncFormatter(fmt)


def _colours(labels: Sequence[str]) -> dict[str, Any]:
  """A colour per label: tab10 for up to ten, evenly spaced viridis beyond."""
  if len(labels) <= 10:
    palette = matplotlib.colormaps['tab10'].colors
  else:
    palette = matplotlib.colormaps['viridis'](np.linspace(0, 0.95, len(labels)))
  return {label: palette[i] for i, label in enumerate(labels)}


def _grid_shape(n: int) -> tuple[int, int]:
  cols = math.ceil(math.sqrt(n))
  return math.ceil(n / cols), cols


def _legend_columns(labels: Sequence[str], width: float) -> int:
  """How many legend entries fit side by side in `width` inches (about 6 points per character at size 10)."""
  entry = (max((len(label) for label in labels), default=1) + 6) * 6 / 72
  return max(1, min(len(labels), int(width / entry)))


def _legend_below(fig: Figure, handles: list, labels: list[str]) -> None:
  if handles:
    ncols = _legend_columns(labels, fig.get_figwidth())
    fig.legend(handles, labels, loc='outside lower center', ncols=ncols, frameon=False)


def _legend_height(labels: Sequence[str], width: float) -> float:
  return 0.3 * math.ceil(len(labels) / _legend_columns(labels, width)) if labels else 0.0


def _names(groups: Sequence[results.Group]) -> dict[str, str]:
  """{group label: its label in figures} (`results.display_labels`: 'SN[-2] lr=0.001' for 'method=sn lr=0.001')."""
  params = {
    label: {k: v for k, v in next(iter(per_env.values())).params.items() if k != 'env'}
    for label, per_env in results.by_label(groups).items()
  }
  return dict(zip(params, results.display_labels(list(params.values()))))


def _seeds_text(counts: Mapping[str, Iterable[int]], what: str = 'seeds') -> tuple[str, dict[str, str]]:
  """How many seeds (or runs) a figure shows: ('over 3 seeds', {label: ''}) when every setting has the same number,
  else ('over seeds (n in the legend)', {label: ' (n=3)' or ' (n=2–3)'}) for a legend."""
  counts = {label: sorted(set(ns)) for label, ns in counts.items()}
  every = {n for ns in counts.values() for n in ns}
  if len(every) == 1:
    n = every.pop()
    return f'over {n} {what if n != 1 else what[:-1]}', {label: '' for label in counts}
  suffix = {label: f' (n={ns[0]})' if len(ns) == 1 else f' (n={ns[0]}–{ns[-1]})' for label, ns in counts.items()}
  return f'over {what} (n in the legend)', suffix


def _share_y(axes: Sequence[Any], units: Sequence[str]) -> None:
  """Joins the y-axes of the panels in the same normalised unit (raw returns of different games are not one
  scale)."""
  first: dict[str, Any] = {}
  for ax, unit in zip(axes, units):
    if unit == 'return':
      continue
    if unit in first:
      ax.sharey(first[unit])
    else:
      first[unit] = ax


def learning_curves(
  runs: Sequence[Run],
  path: str | os.PathLike,
  normalise: bool = True,
  confidence: float = 0.95,
  title: str | None = None,
  max_lines: int | None = None,
) -> Path:
  """Evaluation score against steps (environment or optimiser steps, by run kind): a panel per game, a line per setting, a CI band over seeds.

  With several games sharing a normalised score, a last panel shows the mean over games (thesis Figure 7.2b);
  panels in one normalised unit share their y-axis. The title says over how many seeds the curves average, or the
  legend does per setting where that differs.

  Args:
    runs: the runs (`results.find_runs`).
    path: where to write the PNG (a PDF and an SVG are written beside it, `figure_files`).
    normalise: plot MNS / HNS where the game has references (raw returns otherwise).
    confidence: the band's confidence level (Student-t over seeds, `results.confidence_interval`).
    title: the figure's title; a description of the contents by default.
    max_lines: draw only this many settings, those with the best final scores (`results.rank_labels`); all when
      None.

  Returns:
    `path`.
  """
  _require_matplotlib()
  groups = results.group_runs(runs)
  if not groups:
    raise ValueError('no runs to plot')
  names = _names(groups)
  envs = sorted({g.env for g in groups})
  step_name = ' / '.join(sorted({kinds.get(r.kind).step_name for g in groups for r in g.runs}))
  settings = len(results.by_label(groups))
  if max_lines is not None and settings > max_lines:
    keep = set(results.rank_labels(groups, 'final', normalise)[:max_lines])
    groups = [g for g in groups if g.label in keep]
  table = results.by_label(groups)
  labels = list(table)
  colours = _colours(labels)
  panels: list[tuple[str, str, dict[str, results.Curve]]] = []
  for env in envs:
    curves = {g.label: g.curve(normalise, confidence) for g in groups if g.env == env}
    panels.append((_game_title(env), results.score_unit(env, normalise), curves))
  unit = results.common_unit(envs, normalise)
  if len(envs) > 1 and unit is not None:
    curves = {
      label: results.game_mean_curve(per_env, normalise, confidence)
      for label, per_env in table.items()
      if set(per_env) == set(envs)
    }
    if curves:
      panels.append((f'Mean over {len(envs)} games', unit, curves))
  counts: dict[str, list[int]] = {label: [] for label in labels}
  for _, _, curves in panels:
    for label, curve in curves.items():
      counts[label].append(curve.n)
  over, suffix = _seeds_text(counts)
  legend = {label: names[label] + suffix[label] for label in labels}
  rows, cols = _grid_shape(len(panels))
  width = max(4.6 * cols, 7.0)
  fig = Figure(figsize=(width, 3.4 * rows + 0.5 + _legend_height(list(legend.values()), width)), layout='constrained')
  axes = fig.subplots(rows, cols, squeeze=False).ravel()
  _share_y(axes, [panel_unit for _, panel_unit, _ in panels])
  handles: dict[str, Any] = {}
  for ax, (panel_title, panel_unit, curves) in zip(axes, panels):
    for label, curve in curves.items():
      if curve.steps.size == 0:
        continue
      marker = 'o' if curve.steps.size <= 25 else None
      (line,) = ax.plot(curve.steps, curve.mean, color=colours[label], marker=marker, markersize=3, lw=1.6)
      handles.setdefault(legend[label], line)
      band = np.isfinite(curve.half_width)
      if band.any():
        ax.fill_between(
          curve.steps,
          curve.mean - np.where(band, curve.half_width, 0),
          curve.mean + np.where(band, curve.half_width, 0),
          color=colours[label],
          alpha=0.2,
          lw=0,
        )
    ax.set_title(panel_title)
    ax.set_xlabel(step_name)
    ax.set_ylabel(_unit_name(panel_unit))
    ax.xaxis.set_major_formatter(_steps_formatter())
    ax.grid(alpha=0.3)
  for ax in axes[len(panels) :]:
    ax.set_visible(False)
  pct = f'{100 * confidence:g}%'
  shown = f' (the {len(labels)} best of {settings} settings by final score)' if len(labels) < settings else ''
  fig.suptitle(title or f'Evaluation during training{shown}: mean {over}, {pct} confidence band')
  _legend_below(fig, list(handles.values()), list(handles))
  return save_figure(fig, path)


def _is_log_axis(values: np.ndarray) -> bool:
  values = np.asarray(values, dtype=np.float64)
  return bool(values.size > 1 and np.all(values > 0) and values.max() / values.min() >= 10)


def _edges(values: np.ndarray, log: bool) -> np.ndarray:
  """Cell edges around sorted `values`: midpoints (geometric ones on a log axis), padded at both ends."""
  v = np.log10(np.asarray(values, dtype=np.float64)) if log else np.arange(len(values), dtype=np.float64)
  if v.size == 1:
    e = np.array([v[0] - 0.5, v[0] + 0.5])
  else:
    mid = (v[1:] + v[:-1]) / 2
    e = np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]])
  return 10**e if log else e


def _centres(values: np.ndarray, log: bool) -> np.ndarray:
  return np.asarray(values, dtype=np.float64) if log else np.arange(len(values), dtype=np.float64)


def _averaged_games(runs: Sequence[Run], failed: Sequence[Run], normalise: bool) -> tuple[list[str], str]:
  """The games `results.heatmap_grids` averages over and their unit."""
  envs = sorted({r.env for r in runs or failed})
  if results.common_unit(envs, normalise) is not None:
    return envs, results.common_unit(envs, normalise)
  kept = [e for e in envs if results.score_unit(e, normalise) != 'return']
  return kept, results.common_unit(kept, normalise) or 'return'


def _cells_text(runs: Sequence[Run], envs: Sequence[str]) -> str:
  """What a sensitivity cell averages: 'Breakout (MinAtar), mean over 3 seeds', 'mean over 2 games and 1–3 seeds
  per cell'."""
  counts = sorted({len(g.runs) for g in results.group_runs([r for r in runs if r.env in envs])} or {0})
  seeds = (
    f'{counts[0]} seed{"s" * (counts[0] != 1)}' if len(counts) == 1 else f'{counts[0]}–{counts[-1]} seeds per cell'
  )
  if len(envs) > 1:
    return f'mean over {len(envs)} games and {seeds}'
  return f'{_game_title(envs[0])}, mean over {seeds}' if envs else f'mean over {seeds}'


def sensitivity_heatmap(
  runs: Sequence[Run],
  path: str | os.PathLike,
  x: str = 'dqn.learning_rate',
  y: str = 'dqn.adam_eps',
  metric: str = 'final',
  normalise: bool = True,
  failed: Sequence[Run] = (),
) -> Path:
  """Mean score over an `x` × `y` sweep, one panel per other setting (method, layers), as thesis Figure 7.4.

  Cells show the mean over seeds (and over games, normalised where possible) of the final or best score
  (`results.heatmap_grids`), annotated with their value; grey cells were not run. A cell holding any of the
  `failed` runs (`results.failed_runs`) is marked ×, after its value where other runs there finished. All
  panels share one colour scale. Positive sweeps spanning a decade or more are drawn on log axes, ticked at the
  swept values.

  Returns:
    `path`.
  """
  _require_matplotlib()
  grids = results.heatmap_grids(runs, x, y, metric, normalise, failed, for_figures=True)
  envs, unit = _averaged_games(runs, failed, normalise)
  finite = np.concatenate([g.values[np.isfinite(g.values)] for g in grids.values()])
  vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
  if vmin == vmax:
    vmin, vmax = vmin - 1, vmax + 1
  cmap = matplotlib.colormaps['viridis'].with_extremes(bad='#d9d9d9')
  norm = mcolors.Normalize(vmin, vmax)
  rows, cols = _grid_shape(len(grids))
  first = next(iter(grids.values()))
  nx, ny = len(first.xs), len(first.ys)
  cell = 0.62 if max(nx, ny) > 4 else 0.9
  fig = Figure(
    figsize=(cols * (max(nx, 3) * cell + 1.4) + 1.2, rows * (max(ny, 3) * cell + 1.3) + 0.6), layout='constrained'
  )
  axes = fig.subplots(rows, cols, squeeze=False).ravel()
  for ax in axes[1 : len(grids)]:  # every panel has the same axes: the swept values
    ax.sharex(axes[0])
    ax.sharey(axes[0])
  mesh = None
  decimals = 0 if vmax - vmin >= 20 else 1 if vmax - vmin >= 2 else 2
  for ax, (label, grid) in zip(axes, grids.items()):
    xlog, ylog = _is_log_axis(grid.xs), _is_log_axis(grid.ys)
    mesh = ax.pcolormesh(
      _edges(grid.xs, xlog),
      _edges(grid.ys, ylog),
      np.ma.masked_invalid(grid.values),
      cmap=cmap,
      norm=norm,
      edgecolors='white',
      linewidth=0.5,
    )
    if xlog:
      ax.set_xscale('log')
    if ylog:
      ax.set_yscale('log')
    xc, yc = _centres(grid.xs, xlog), _centres(grid.ys, ylog)
    for axis, centres, values in ((ax.xaxis, xc, grid.xs), (ax.yaxis, yc, grid.ys)):
      axis.set_major_locator(ticker.FixedLocator(centres))
      axis.set_major_formatter(ticker.FixedFormatter([results.format_value(v) for v in values.tolist()]))
      axis.set_minor_locator(ticker.NullLocator())
    ax.tick_params(axis='x', labelrotation=45)
    for i, yv in enumerate(yc):
      for j, xv in enumerate(xc):
        value, mark = grid.values[i, j], '×' if grid.failed[i, j] else ''
        if np.isfinite(value):
          r, g, b, _ = cmap(norm(value))
          colour = 'black' if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else 'white'
          ax.text(xv, yv, f'{value:.{decimals}f}{mark}', ha='center', va='center', fontsize=8, color=colour)
        else:
          ax.text(
            xv,
            yv,
            mark or '–',
            ha='center',
            va='center',
            fontsize=10 if mark else 8,
            color='#b2182b' if mark else '#707070',
          )
    ax.set_xlabel(_AXIS_NAMES.get(x, x) + (' (log scale)' if xlog else ''))
    ax.set_ylabel(_AXIS_NAMES.get(y, y) + (' (log scale)' if ylog else ''))
    ax.set_title(label or 'all runs')
  for ax in axes[len(grids) :]:
    ax.set_visible(False)
  failures = sum(int(g.failed.sum()) for g in grids.values())
  note = f'\n× where {failures} runs failed (their status.json says why)' if failures else ''
  fig.suptitle(
    f'{metric.capitalize()} {_unit_name(unit)} over {_AXIS_NAMES.get(x, x)} × {_AXIS_NAMES.get(y, y)}'
    f'\n({_cells_text(runs, envs)}){note}'
  )
  if mesh is not None:
    fig.colorbar(mesh, ax=axes[: len(grids)].tolist(), label=f'{metric} {unit}', shrink=0.9)
  return save_figure(fig, path)


def sensitivity_curves(
  runs: Sequence[Run],
  path: str | os.PathLike,
  x: str = 'dqn.learning_rate',
  metric: str = 'final',
  normalise: bool = True,
  failed: Sequence[Run] = (),
) -> Path:
  """Mean score against one swept field (the learning rate, say), a line per other setting (method, layers): what
  `sensitivity_heatmap` shows when only `x` varies.

  Points are the mean over seeds (and over games, normalised where possible) of the final or best score
  (`results.heatmap_grids`). Settings holding any of the `failed` runs (`results.failed_runs`) are marked ×: on the
  point where other runs there finished, else at the bottom of the axis. A positive sweep spanning a decade or more
  is drawn on a log axis, ticked at the swept values.

  Returns:
    `path`.
  """
  _require_matplotlib()
  other = 'dqn.adam_eps' if x != 'dqn.adam_eps' else 'dqn.learning_rate'
  grids = results.heatmap_grids(runs, x, other, metric, normalise, failed, for_figures=True)
  envs, unit = _averaged_games(runs, failed, normalise)
  lines: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
  for label, grid in grids.items():
    for i, value in enumerate(grid.ys.tolist()):
      fixed = f'{config_lib.FIELD_LABELS.get(other, other)}={results.format_value(value)}' if len(grid.ys) > 1 else ''
      lines[' '.join(filter(None, [label, fixed])) or 'all runs'] = (grid.xs, grid.values[i], grid.failed[i])
  colours = _colours(list(lines))
  width = 7.0
  fig = Figure(figsize=(width, 4.2 + _legend_height(list(lines), width)), layout='constrained')
  ax = fig.subplots()
  xs = next(iter(grids.values())).xs
  log = _is_log_axis(xs)
  for name, (line_xs, values, failures) in lines.items():
    ax.plot(line_xs, values, color=colours[name], marker='o', markersize=4, lw=1.6, label=name)
    hit = failures > 0
    if hit.any():
      bottom = ax.get_xaxis_transform()
      finished = hit & np.isfinite(values)
      ax.plot(line_xs[finished], values[finished], ls='none', marker='x', markersize=9, mew=2, color=colours[name])
      ax.plot(
        line_xs[hit & ~finished],
        np.full(int((hit & ~finished).sum()), 0.03),
        ls='none',
        marker='x',
        markersize=9,
        mew=2,
        color=colours[name],
        transform=bottom,
      )
  if log:
    ax.set_xscale('log')
  ax.xaxis.set_major_locator(ticker.FixedLocator(np.asarray(xs, dtype=np.float64)))
  ax.xaxis.set_major_formatter(ticker.FixedFormatter([results.format_value(v) for v in xs.tolist()]))
  ax.xaxis.set_minor_locator(ticker.NullLocator())
  ax.set_xlabel(_AXIS_NAMES.get(x, x) + (' (log scale)' if log else ''))
  ax.set_ylabel(f'{metric} {_unit_name(unit)}')
  ax.grid(alpha=0.3)
  failures = sum(int(g.failed.sum()) for g in grids.values())
  note = f'\n× where {failures} runs failed (their status.json says why)' if failures else ''
  fig.suptitle(
    f'{metric.capitalize()} {_unit_name(unit)} over {_AXIS_NAMES.get(x, x)}\n({_cells_text(runs, envs)}){note}'
  )
  handles, labels = ax.get_legend_handles_labels()
  _legend_below(fig, handles, labels)
  return save_figure(fig, path)


def method_bars(
  runs: Sequence[Run], path: str | os.PathLike, metric: str = 'final', normalise: bool = True, confidence: float = 0.95
) -> Path:
  """Bars of the mean score per method, a panel per game, with confidence-interval error bars (Figure 7.5).

  Games that share a normalised score are followed by a panel of their mean (`results.game_mean`), and their
  panels share the y-axis; a game in raw returns keeps its own scale. A bar is a method (the `method.*` fields);
  where the runs sweep other fields too, each method shows its best setting (`results.best_settings`), named in the
  legend, chosen on other seeds than those shown when every setting has at least 2 (the figure says which).

  Returns:
    `path`.
  """
  _require_matplotlib()
  groups = results.group_runs(runs)
  if not groups:
    raise ValueError('no runs to plot')
  best = results.best_settings(groups, metric, normalise)
  groups = best.groups
  envs = sorted({g.env for g in groups})
  table = results.by_label(groups)
  labels = list(table)
  colours = _colours(labels)
  normalised = [e for e in envs if results.score_unit(e, normalise) != 'return']
  unit = results.common_unit(normalised, normalise) if normalised else None
  averaged = normalised if unit is not None and len(normalised) > 1 else []
  MEAN = 'mean'
  panels = [(env, results.score_unit(env, normalise)) for env in envs] + ([(MEAN, unit)] if averaged else [])
  counts: dict[str, list[int]] = {label: [] for label in labels}
  intervals: dict[tuple[str, str], results.Interval] = {}
  for label, per_env in table.items():
    for category, _ in panels:
      if category == MEAN:
        if not set(averaged) <= set(per_env):
          continue
        interval = results.game_mean({e: per_env[e] for e in averaged}, metric, normalise, confidence)
      elif category in per_env:
        interval = per_env[category].score(metric, normalise, confidence)
      else:
        continue
      intervals[(label, category)] = interval
      counts[label].append(interval.n)
  over, suffix = _seeds_text(counts)
  legend = {label: label + suffix[label] for label in labels}
  cols = min(len(panels), 5)
  rows = math.ceil(len(panels) / cols)
  fig_width = max(7.0, cols * max(2.6, 0.4 * len(labels) + 1.2))
  fig = Figure(
    figsize=(fig_width, 3.4 * rows + 0.8 + _legend_height(list(legend.values()), fig_width)), layout='constrained'
  )
  axes = fig.subplots(rows, cols, squeeze=False).ravel()
  _share_y(axes, [panel_unit for _, panel_unit in panels])
  handles: dict[str, Any] = {}
  for ax, (category, panel_unit) in zip(axes, panels):
    for k, label in enumerate(labels):
      interval = intervals.get((label, category))
      if interval is None:
        continue
      error = interval.half_width if np.isfinite(interval.half_width) else 0.0
      bars = ax.bar(
        [k],
        [interval.mean],
        width=0.8,
        yerr=[error],
        capsize=3,
        color=colours[label],
        error_kw={'elinewidth': 1, 'ecolor': '#333333'},
      )
      handles.setdefault(legend[label], bars)
    ax.set_xticks([])
    ax.set_xlim(-0.6, len(labels) - 0.4)
    ax.set_title(f'Mean over {len(averaged)} games' if category == MEAN else _game_title(category))
    ax.set_ylabel(f'{metric} {_unit_name(panel_unit)}')
    ax.axhline(0, color='black', lw=0.8)
    ax.grid(axis='y', alpha=0.3)
  for ax in axes[len(panels) :]:
    ax.set_visible(False)
  pct = f'{100 * confidence:g}%'
  note = f'\n({best.note})' if best.note else ''
  fig.suptitle(f'{metric.capitalize()} score per method: mean {over} ± {pct} CI{note}')
  _legend_below(fig, list(handles.values()), list(handles))
  return save_figure(fig, path)


def _runs_text(matrices: report.ScoreMatrices) -> tuple[str, dict[str, str]]:
  """How many runs per game each setting of `matrices` has, as `_seeds_text`."""
  return _seeds_text({label: [scores.shape[0]] for label, scores in matrices.scores.items()}, 'runs per game')


def _matrices(runs: Sequence[Run], metric: str, normalise: bool) -> report.ScoreMatrices:
  matrices = report.score_matrices(runs, metric, normalise)
  if not matrices.scores:
    raise ValueError(f'no setting was run on every game of {", ".join(matrices.envs)}')
  return matrices


def performance_profiles(
  runs: Sequence[Run],
  path: str | os.PathLike,
  metric: str = 'final',
  normalise: bool = True,
  confidence: float = 0.95,
  reps: int = report.REPS,
  seed: int = report.SEED,
) -> Path:
  """Performance profiles (Agarwal et al. 2021): for each normalised score τ, the fraction of a setting's runs ×
  games scoring above τ, a line per setting with pointwise stratified-bootstrap bands (`report.profiles`).

  Settings not run on every game are left out (`report.score_matrices`).

  Raises:
    ValueError: the games have no common normalised score, or no setting was run on every game.

  Returns:
    `path`.
  """
  _require_matplotlib()
  matrices = _matrices(runs, metric, normalise)
  taus, curves = report.profiles(matrices, reps=reps, confidence=confidence, seed=seed)
  over, suffix = _runs_text(matrices)
  legend = {label: matrices.names[label] + suffix[label] for label in curves}
  colours = _colours(list(curves))
  width = 7.0
  fig = Figure(figsize=(width, 4.4 + _legend_height(list(legend.values()), width)), layout='constrained')
  ax = fig.subplots()
  for label, curve in curves.items():
    ax.plot(taus, curve.estimate, color=colours[label], lw=1.8, label=legend[label])
    ax.fill_between(taus, curve.low, curve.high, color=colours[label], alpha=0.2, lw=0)
  unit = matrices.unit
  ax.set_xlabel(f'{_unit_name(unit)} τ' if unit != 'return' else 'evaluation return τ')
  ax.set_ylabel(f'fraction of runs with {metric} score > τ')
  ax.set_ylim(-0.02, 1.02)
  ax.grid(alpha=0.3)
  pct = f'{100 * confidence:g}%'
  games = f'{len(matrices.envs)} games' if len(matrices.envs) > 1 else _game_title(matrices.envs[0])
  fig.suptitle(f'Performance profiles: {metric} {unit} on {games}, {over}\n({pct} stratified-bootstrap bands)')
  handles, labels = ax.get_legend_handles_labels()
  _legend_below(fig, handles, labels)
  return save_figure(fig, path)


def aggregate_intervals(
  runs: Sequence[Run],
  path: str | os.PathLike,
  metric: str = 'final',
  normalise: bool = True,
  confidence: float = 0.95,
  reps: int = report.REPS,
  seed: int = report.SEED,
) -> Path:
  """The IQM, mean, median and optimality gap of each setting's normalised scores across games and seeds, as
  horizontal stratified-bootstrap intervals with the point estimate marked (Agarwal et al. 2021, Figure 9): a
  panel per aggregate, a row per setting (`report.aggregates`). Raw returns of a single game have no optimality gap.

  Raises:
    ValueError: the games have no common normalised score, or no setting was run on every game.

  Returns:
    `path`.
  """
  _require_matplotlib()
  matrices = _matrices(runs, metric, normalise)
  intervals = report.aggregates(matrices, reps, confidence, seed)
  names = list(report.aggregate_functions(matrices.unit))
  labels = list(intervals)
  over, suffix = _runs_text(matrices)
  colours = _colours(labels)
  height = 0.45 * len(labels) + 1.6
  fig = Figure(
    figsize=(2.9 * len(names) + 0.4 * max(len(matrices.names[label]) for label in labels) / 6 + 1.0, height),
    layout='constrained',
  )
  axes = fig.subplots(1, len(names), sharey=True, squeeze=False).ravel()
  for ax, name in zip(axes, names):
    for i, label in enumerate(labels):
      interval = intervals[label][name]
      ax.barh(i, interval.high - interval.low, left=interval.low, height=0.6, color=colours[label], alpha=0.75)
      ax.vlines(interval.estimate, i - 0.3, i + 0.3, color='black', lw=1.4)
    ax.set_title(report.AGGREGATE_NAMES[name][0].upper() + report.AGGREGATE_NAMES[name][1:])
    ax.set_xlabel(matrices.unit)
    ax.grid(axis='x', alpha=0.3)
    ax.xaxis.set_major_locator(ticker.MaxNLocator(4))
  axes[0].set_yticks(range(len(labels)), [matrices.names[label] + suffix[label] for label in labels])
  axes[0].invert_yaxis()  # the first setting on top
  pct = f'{100 * confidence:g}%'
  games = f'{len(matrices.envs)} games' if len(matrices.envs) > 1 else _game_title(matrices.envs[0])
  fig.suptitle(
    f'{metric.capitalize()} {_unit_name(matrices.unit)} on {games}, {over}: estimates and {pct} '
    'stratified-bootstrap CIs'
  )
  return save_figure(fig, path)


EOS_FIELDS = ('lambda_0', 'two_over_h', 'g_u0', 'sc0_real', 'sc0_imag', 'next_g_u0', 'next_g_u0_pf', 'next_loss_change')


def _has_eos(run: Run) -> bool:
  return any(all(k in e for k in EOS_FIELDS) for e in run.evals)


def edge_of_stability(runs: Sequence[Run], path: str | os.PathLike, max_runs: int = 4) -> Path:
  """The edge-of-stability diagnostics of supervised runs (`MetricsConfig.edge_of_stability`, thesis Section 3.5),
  a row per run: the train loss (steps whose next step raised it shaded), λ_0 with the 2/h line, the next gᵀu_0
  measured beside the PF's, NGF's and IGR flow's predictions (Remarks 3.4.2-3.4.4), and sc_0 = α_PF(hλ_0)gᵀu_0.

  Draws the first `max_runs` runs whose `eval` records carry the diagnostics.

  Raises:
    ValueError: no run carries them.

  Returns:
    `path`.
  """
  _require_matplotlib()
  shown = [r for r in runs if _has_eos(r)][:max_runs]
  if not shown:
    raise ValueError('no run carries the edge-of-stability diagnostics (metrics.edge_of_stability)')
  fig = Figure(figsize=(17, 3.3 * len(shown) + 0.6), layout='constrained')
  axes = fig.subplots(len(shown), 4, squeeze=False)
  for (ax_loss, ax_lam, ax_gu, ax_sc), run in zip(axes, shown):
    records = [e for e in run.evals if all(k in e for k in EOS_FIELDS)]
    steps = np.asarray([e['step'] for e in records])
    col = lambda k, records=records: np.asarray([e.get(k, np.nan) for e in records], dtype=np.float64)
    up = steps[col('next_loss_change') > 0]
    ax_loss.plot(steps, col('train_loss'), color='C3')
    for s in up:
      ax_loss.axvline(s, color='C3', alpha=0.15, lw=1)
    ax_loss.set_yscale('log')
    ax_loss.set(xlabel='optimiser step', ylabel='train loss', title=f'{run.path.name}: loss (shaded: next step rises)')
    ax_lam.plot(steps, col('lambda_0'), color='C0', label='λ_0')
    ax_lam.plot(steps, col('two_over_h'), color='k', ls='--', label='2/h')
    ax_lam.set(xlabel='optimiser step', ylabel='λ_0', title='top Hessian eigenvalue')
    ax_lam.legend(fontsize=8)
    ax_gu.plot(steps, col('next_g_u0'), color='k', lw=1.2, label='measured')
    for name, label, ls in (('pf', 'PF (1 − hλ_0)x', '--'), ('ngf', 'NGF e^{−hλ_0}x', ':'), ('igr', 'IGR', '-.')):
      ax_gu.plot(steps, col(f'next_g_u0_{name}'), ls=ls, label=label)
    ax_gu.set_yscale('symlog', linthresh=1e-6)
    ax_gu.set(xlabel='optimiser step', ylabel='next gᵀu_0', title='next gᵀu_0: measured and predicted')
    ax_gu.legend(fontsize=7)
    ax_sc.plot(steps, col('sc0_real'), color='C2', label='Re sc_0')
    ax_sc.plot(steps, col('sc0_imag'), color='C4', lw=0.8, label='Im sc_0')
    ax_sc.axhline(0, color='k', lw=0.6)
    ax_sc.set_yscale('symlog', linthresh=1e-6)
    ax_sc.set(xlabel='optimiser step', ylabel='sc_0', title='stability coefficient α_PF(hλ_0)gᵀu_0')
    ax_sc.legend(fontsize=8)
  fig.suptitle('Edge-of-stability diagnostics (thesis Section 3.5)')
  return save_figure(fig, path)


def _varies(runs: Sequence[Run], field: str) -> bool:
  return len({results.flatten(r.config_dict).get(field) for r in runs}) > 1


def plot_all(
  paths: str | os.PathLike | Iterable[str | os.PathLike],
  out_dir: str | os.PathLike,
  normalise: bool = True,
  include_incomplete: bool = False,
  max_lines: int | None = 8,
  aggregates: bool = False,
) -> list[Path]:
  """Writes the figures the runs under `paths` support into `out_dir` (`plot_runs`); returns their PNGs' paths."""
  loaded = results.load_runs(paths)
  runs = results.usable_runs(loaded, include_incomplete)
  if not runs:
    raise ValueError(f'no runs found under {paths}')
  return plot_runs(runs, out_dir, normalise, max_lines, failed=results.failed_runs(loaded), aggregates=aggregates)


def plot_runs(
  runs: Sequence[Run],
  out_dir: str | os.PathLike,
  normalise: bool = True,
  max_lines: int | None = 8,
  failed: Sequence[Run] = (),
  aggregates: bool = False,
) -> list[Path]:
  """Writes the figures `runs` support into `out_dir`; returns the paths of their PNGs, each of which has a PDF and
  an SVG beside it (`figure_files`).

  Always `learning_curves.png` (the `max_lines` best settings). When the runs (or the `failed` ones,
  `results.failed_runs`) vary both the learning rate and Adam's ε, `sensitivity_final.png` and
  `sensitivity_best.png` are heatmaps (`sensitivity_heatmap`); when they vary only one of them, the same files are
  `sensitivity_curves` against it; both mark the settings of failed runs. `method_bars.png` when the runs vary the
  method. `edge_of_stability.png` when runs carry the edge-of-stability diagnostics. With `aggregates` (as
  `smoothrl plot` asks), `performance_profiles.png` and `aggregate_intervals.png` of the final scores across games
  and seeds when there are at least 2 settings or 2 games to aggregate.
  """
  _require_matplotlib()
  out = Path(out_dir)
  written = [learning_curves(runs, out / 'learning_curves.png', normalise, max_lines=max_lines)]
  every = [*runs, *failed]
  lr, eps = (_varies(every, field) for field in ('dqn.learning_rate', 'dqn.adam_eps'))
  if lr or eps:
    try:
      for metric in results.METRICS:
        target = out / f'sensitivity_{metric}.png'
        if lr and eps:
          written.append(sensitivity_heatmap(runs, target, metric=metric, normalise=normalise, failed=failed))
        else:
          written.append(
            sensitivity_curves(
              runs,
              target,
              x='dqn.learning_rate' if lr else 'dqn.adam_eps',
              metric=metric,
              normalise=normalise,
              failed=failed,
            )
          )
    except ValueError as e:
      warnings.warn(f'no sensitivity figure: {e}', stacklevel=2)
  if _varies(runs, 'method.method'):
    written.append(method_bars(runs, out / 'method_bars.png', normalise=normalise))
  if any(_has_eos(r) for r in runs):
    written.append(edge_of_stability(runs, out / 'edge_of_stability.png'))
  if aggregates:
    try:
      matrices = _matrices(runs, 'final', normalise)
    except ValueError as e:
      warnings.warn(f'no aggregate figures: {e}', stacklevel=2)
    else:
      if len(matrices.scores) >= 2 or len(matrices.envs) >= 2:
        written.append(performance_profiles(runs, out / 'performance_profiles.png', normalise=normalise))
        written.append(aggregate_intervals(runs, out / 'aggregate_intervals.png', normalise=normalise))
  return written
