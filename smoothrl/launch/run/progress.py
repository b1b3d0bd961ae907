"""A dependency-free progress line for runs: steps, steps/s, recent return, ETA.

The ETA is the remaining steps at the pace measured since the line's first update, not since it was made: the
first steps of a JAX run include compiling its programs, which a pace counted from the start would spread over
the whole run.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
  """Redraws one line on a terminal; prints a line every `interval_s` seconds elsewhere (logs, CI)."""

  def __init__(
    self,
    total: int,
    stream: TextIO | None = None,
    enabled: bool = True,
    interval_s: float | None = None,
    unit: str = 'steps',
    first: int = 0,
  ):
    self.total, self.unit = total, unit
    self.stream = stream or sys.stderr
    self.enabled = enabled
    self.tty = self.stream.isatty()
    self.interval_s = interval_s if interval_s is not None else (0.25 if self.tty else 15.0)
    self.start = time.perf_counter()
    self._last_draw = -float('inf')
    self._last_step, self._last_time = first, self.start
    self._paced: tuple[int, float] | None = None  # the step and time of the first update: where the pace starts

  def update(self, step: int, force: bool = False, **fields: float | str | None) -> None:
    now = time.perf_counter()
    if self._paced is None:
      self._paced = (step, now)
    if not self.enabled or (not force and now - self._last_draw < self.interval_s):
      return
    rate = (step - self._last_step) / max(now - self._last_time, 1e-9)
    self._last_step, self._last_time, self._last_draw = step, now, now
    paced_step, paced_time = self._paced
    average = (step - paced_step) / (now - paced_time) if now > paced_time and step > paced_step else 0.0
    eta = 0.0 if step >= self.total else (self.total - step) / average if average > 0 else float('inf')
    width = 24
    filled = int(width * step / max(self.total, 1))
    bar = '#' * filled + '-' * (width - filled)
    extra = '  '.join(
      f'{k} {v:.2f}' if isinstance(v, float) else f'{k} {v}' for k, v in fields.items() if v is not None
    )
    line = (
      f'[{bar}] {step}/{self.total} {100 * step / max(self.total, 1):3.0f}%  {rate:7.1f} {self.unit}/s  '
      f'ETA {_duration(eta)}  {extra}'
    )
    if self.tty:
      self.stream.write('\r' + line + '\x1b[K')
    else:
      self.stream.write(line + '\n')
    self.stream.flush()

  def close(self) -> None:
    if self.enabled and self.tty:
      self.stream.write('\n')
      self.stream.flush()

  def __enter__(self) -> Progress:
    return self

  def __exit__(self, *exc) -> None:
    self.close()  # also when the run stops: what is printed next starts on a line of its own


def _duration(seconds: float) -> str:
  if seconds == float('inf'):
    return '--:--'
  seconds = int(seconds)
  hours, rest = divmod(seconds, 3600)
  return f'{hours}:{rest // 60:02d}:{rest % 60:02d}' if hours else f'{rest // 60:02d}:{rest % 60:02d}'
