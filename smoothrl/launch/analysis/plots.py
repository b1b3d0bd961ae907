"""Figures of runs: learning curves, learning-rate × Adam-ε sensitivity heatmaps and per-method bars.

The figures follow thesis Chapter 7: learning curves of the evaluation return or normalised score with a confidence
band over seeds (Figure 7.2), the score over a sweep of learning rate and Adam's ε per method (Figure 7.4) and
method comparisons across games (Figure 7.5). Aggregation lives in `smoothrl.launch.analysis.results`; this module only
draws. Figures are drawn on matplotlib's Agg canvas (no display needed) and written atomically.

    python -m smoothrl.launch.analysis.plots runs/sweep --out runs/sweep/plots
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

import matplotlib
import numpy as np
from matplotlib import colors as mcolors
from matplotlib import ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from smoothrl.launch.analysis import results
from smoothrl.launch.run.files import atomic_file
from smoothrl.launch.analysis.results import Run, heatmap_grid, heatmap_grids  # re-exported for callers of this module

__all__ = ['learning_curves', 'sensitivity_heatmap', 'method_bars', 'plot_all', 'plot_runs', 'heatmap_grid',
           'heatmap_grids']

DPI = 120
_AXIS_NAMES = {'dqn.learning_rate': 'learning rate h', 'dqn.adam_eps': 'Adam ε'}
_GAME_NAMES = {'space_invaders': 'Space Invaders'}


def _save(fig: Figure, path: str | os.PathLike) -> Path:
  """Writes `fig` as a PNG to `path` atomically (see `io.atomic_file`)."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with atomic_file(path, 'wb') as f:
    FigureCanvasAgg(fig)
    fig.savefig(f, format='png', dpi=DPI)
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


def learning_curves(runs: Sequence[Run], path: str | os.PathLike, normalise: bool = True, confidence: float = 0.95,
                    title: str | None = None, max_lines: int | None = None) -> Path:
  """Evaluation score against environment steps: a panel per game, a line per setting, a CI band over seeds.

  With several games sharing a normalised score, a last panel shows the mean over games (thesis Figure 7.2b).

  Args:
    runs: the runs (`results.find_runs`).
    path: where to write the PNG.
    normalise: plot MNS / HNS where the game has references (raw returns otherwise).
    confidence: the band's confidence level (Student-t over seeds, `results.confidence_interval`).
    title: the figure's title; a description of the contents by default.
    max_lines: draw only this many settings, those with the best final scores (`results.rank_labels`); all when
      None.

  Returns:
    `path`.
  """
  groups = results.group_runs(runs)
  if not groups:
    raise ValueError('no runs to plot')
  envs = sorted({g.env for g in groups})
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
    curves = {label: results.game_mean_curve(per_env, normalise, confidence)
              for label, per_env in table.items() if set(per_env) == set(envs)}
    if curves:
      panels.append((f'Mean over {len(envs)} games', unit, curves))
  rows, cols = _grid_shape(len(panels))
  width = max(4.6 * cols, 7.0)
  fig = Figure(figsize=(width, 3.4 * rows + 0.5 + _legend_height(labels, width)), layout='constrained')
  axes = fig.subplots(rows, cols, squeeze=False).ravel()
  handles: dict[str, Any] = {}
  for ax, (panel_title, panel_unit, curves) in zip(axes, panels):
    for label, curve in curves.items():
      if curve.steps.size == 0:
        continue
      marker = 'o' if curve.steps.size <= 25 else None
      (line,) = ax.plot(curve.steps, curve.mean, color=colours[label], marker=marker, markersize=3, lw=1.6)
      handles.setdefault(label, line)
      band = np.isfinite(curve.half_width)
      if band.any():
        ax.fill_between(curve.steps, curve.mean - np.where(band, curve.half_width, 0),
                        curve.mean + np.where(band, curve.half_width, 0), color=colours[label], alpha=0.2, lw=0)
    ax.set_title(panel_title)
    ax.set_xlabel('environment steps')
    ax.set_ylabel(_unit_name(panel_unit))
    ax.xaxis.set_major_formatter(_steps_formatter())
    ax.grid(alpha=0.3)
  for ax in axes[len(panels):]:
    ax.set_visible(False)
  pct = f'{100 * confidence:g}%'
  shown = f' (the {len(labels)} best of {settings} settings by final score)' if len(labels) < settings else ''
  fig.suptitle(title or f'Evaluation during training{shown}: mean over seeds, {pct} confidence band')
  _legend_below(fig, list(handles.values()), list(handles))
  return _save(fig, path)


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
  return 10 ** e if log else e


def _centres(values: np.ndarray, log: bool) -> np.ndarray:
  return np.asarray(values, dtype=np.float64) if log else np.arange(len(values), dtype=np.float64)


def sensitivity_heatmap(runs: Sequence[Run], path: str | os.PathLike, x: str = 'dqn.learning_rate',
                        y: str = 'dqn.adam_eps', metric: str = 'final', normalise: bool = True,
                        failed: Sequence[Run] = ()) -> Path:
  """Mean score over an `x` × `y` sweep, one panel per other setting (method, layers), as thesis Figure 7.4.

  Cells show the mean over seeds (and over games, normalised where possible) of the final or best score
  (`results.heatmap_grids`), annotated with their value; grey cells were not run. A cell holding any of the
  `failed` runs (`results.failed_runs`) is marked ×, after its value where other runs there finished. All
  panels share one colour scale. Positive sweeps spanning a decade or more are drawn on log axes, ticked at the
  swept values.

  Returns:
    `path`.
  """
  grids = results.heatmap_grids(runs, x, y, metric, normalise, failed)
  envs = sorted({r.env for r in runs or failed})
  unit = results.common_unit(envs, normalise) or results.common_unit(
      [e for e in envs if results.score_unit(e, normalise) != 'return'], normalise) or 'return'
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
  fig = Figure(figsize=(cols * (max(nx, 3) * cell + 1.4) + 1.2, rows * (max(ny, 3) * cell + 1.3) + 0.6),
               layout='constrained')
  axes = fig.subplots(rows, cols, squeeze=False).ravel()
  mesh = None
  decimals = 0 if vmax - vmin >= 20 else 1 if vmax - vmin >= 2 else 2
  for ax, (label, grid) in zip(axes, grids.items()):
    xlog, ylog = _is_log_axis(grid.xs), _is_log_axis(grid.ys)
    mesh = ax.pcolormesh(_edges(grid.xs, xlog), _edges(grid.ys, ylog), np.ma.masked_invalid(grid.values),
                         cmap=cmap, norm=norm, edgecolors='white', linewidth=0.5)
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
          ax.text(xv, yv, mark or '–', ha='center', va='center', fontsize=10 if mark else 8,
                  color='#b2182b' if mark else '#707070')
    ax.set_xlabel(_AXIS_NAMES.get(x, x) + (' (log scale)' if xlog else ''))
    ax.set_ylabel(_AXIS_NAMES.get(y, y) + (' (log scale)' if ylog else ''))
    ax.set_title(label or 'all runs')
  for ax in axes[len(grids):]:
    ax.set_visible(False)
  games = f'mean over {len(envs)} games and seeds' if len(envs) > 1 else f'{_game_title(envs[0])}, mean over seeds'
  failures = sum(int(g.failed.sum()) for g in grids.values())
  note = f'\n× where {failures} runs failed (their status.json says why)' if failures else ''
  fig.suptitle(f'{metric.capitalize()} {_unit_name(unit)} over {_AXIS_NAMES.get(x, x)} × {_AXIS_NAMES.get(y, y)}'
               f'\n({games}){note}')
  if mesh is not None:
    fig.colorbar(mesh, ax=axes[:len(grids)].tolist(), label=f'{metric} {unit}', shrink=0.9)
  return _save(fig, path)


def method_bars(runs: Sequence[Run], path: str | os.PathLike, metric: str = 'final', normalise: bool = True,
                confidence: float = 0.95) -> Path:
  """Bars of the mean score per setting (method) and game, with confidence-interval error bars (Figure 7.5).

  Games that share a normalised score go on one axis, followed by their mean (`results.game_mean`); otherwise
  each game gets its own panel, since raw returns of different games are not on one scale. A bar is a method (the
  `method.*` fields); where the runs sweep other fields too, each method shows its best setting
  (`results.best_per_method`), named in the legend.

  Returns:
    `path`.
  """
  groups = results.group_runs(runs)
  if not groups:
    raise ValueError('no runs to plot')
  groups = results.best_per_method(groups, metric, normalise)
  envs = sorted({g.env for g in groups})
  table = results.by_label(groups)
  labels = list(table)
  colours = _colours(labels)
  unit = results.common_unit(envs, normalise)
  MEAN = 'mean'
  if unit is not None:
    panels = [(envs + ([MEAN] if len(envs) > 1 else []), unit)]
  else:
    panels = [([env], results.score_unit(env, normalise)) for env in envs]
  rows, cols = _grid_shape(len(panels))
  fig_width = max(7.0, cols * max(3.2, 0.35 * len(labels) * len(panels[0][0]) + 1.2))
  fig = Figure(figsize=(fig_width, 3.8 * rows + 0.5 + _legend_height(labels, fig_width)), layout='constrained')
  axes = fig.subplots(rows, cols, squeeze=False).ravel()
  width = 0.8 / len(labels)
  handles: dict[str, Any] = {}
  for ax, (categories, panel_unit) in zip(axes, panels):
    for k, label in enumerate(labels):
      per_env = table[label]
      means, errors, xs = [], [], []
      for c, category in enumerate(categories):
        if category == MEAN:
          if set(per_env) != set(envs):
            continue
          interval = results.game_mean(per_env, metric, normalise, confidence)
        elif category in per_env:
          interval = per_env[category].score(metric, normalise, confidence)
        else:
          continue
        xs.append(c - 0.4 + width * (k + 0.5))
        means.append(interval.mean)
        errors.append(interval.half_width if np.isfinite(interval.half_width) else 0.0)
      if xs:
        bars = ax.bar(xs, means, width=width * 0.92, yerr=errors, capsize=3, color=colours[label],
                      error_kw={'elinewidth': 1, 'ecolor': '#333333'})
        handles.setdefault(label, bars)
    ax.set_xticks(range(len(categories)))
    ax.set_xticklabels([f'mean of {len(envs)} games' if c == MEAN else _game_title(c).replace(' (MinAtar)', '')
                        for c in categories])
    ax.set_ylabel(f'{metric} {_unit_name(panel_unit)}')
    ax.axhline(0, color='black', lw=0.8)
    ax.grid(axis='y', alpha=0.3)
    if len(panels) > 1:
      ax.set_title(_game_title(categories[0]))
  for ax in axes[len(panels):]:
    ax.set_visible(False)
  pct = f'{100 * confidence:g}%'
  fig.suptitle(f'{metric.capitalize()} score per method: mean over seeds ± {pct} CI')
  _legend_below(fig, list(handles.values()), list(handles))
  return _save(fig, path)


def _varies(runs: Sequence[Run], field: str) -> bool:
  return len({results.flatten(r.config_dict).get(field) for r in runs}) > 1


def plot_all(paths: str | os.PathLike | Iterable[str | os.PathLike], out_dir: str | os.PathLike,
             normalise: bool = True, include_incomplete: bool = False, max_lines: int | None = 8) -> list[Path]:
  """Writes the figures the runs under `paths` support into `out_dir` (`plot_runs`); returns their paths."""
  loaded = results.load_runs(paths)
  runs = results.usable_runs(loaded, include_incomplete)
  if not runs:
    raise ValueError(f'no runs found under {paths}')
  return plot_runs(runs, out_dir, normalise, max_lines, failed=results.failed_runs(loaded))


def plot_runs(runs: Sequence[Run], out_dir: str | os.PathLike, normalise: bool = True, max_lines: int | None = 8,
              failed: Sequence[Run] = ()) -> list[Path]:
  """Writes the figures `runs` support into `out_dir`; returns their paths.

  Always `learning_curves.png` (the `max_lines` best settings); `sensitivity_final.png` and `sensitivity_best.png`
  when the runs (or the `failed` ones, `results.failed_runs`) vary the learning rate or Adam's ε, with the cells of
  failed runs marked; `method_bars.png` when the runs vary the method.
  """
  out = Path(out_dir)
  written = [learning_curves(runs, out / 'learning_curves.png', normalise, max_lines=max_lines)]
  every = [*runs, *failed]
  if _varies(every, 'dqn.learning_rate') or _varies(every, 'dqn.adam_eps'):
    try:
      for metric in results.METRICS:
        written.append(sensitivity_heatmap(runs, out / f'sensitivity_{metric}.png', metric=metric,
                                           normalise=normalise, failed=failed))
    except ValueError as e:
      warnings.warn(f'no sensitivity heatmap: {e}', stacklevel=2)
  if _varies(runs, 'method.method'):
    written.append(method_bars(runs, out / 'method_bars.png', normalise=normalise))
  return written
