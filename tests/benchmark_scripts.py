"""Running a script of benchmarks/ as a user would, and reading the figures it prints: shared by the benchmark tests."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / 'benchmarks'
_NUMBER = re.compile(r'-?\d[\d,]*\.?\d*(?:e[-+]?\d+)?')


def run(script: str, *args: str, returncode: int = 0, timeout: float = 900) -> str:
  """stdout + stderr of `benchmarks/<script> args`, asserting its exit status."""
  done = subprocess.run(
    [sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True, timeout=timeout, check=False
  )
  assert done.returncode == returncode, done.stderr[-3000:]
  return done.stdout + done.stderr


def figures(label: str, text: str, count: int = 1) -> list[float]:
  """The first `count` numbers after `label` on the one line of `text` that starts with it, each finite."""
  lines = [line for line in text.splitlines() if line.startswith(label)]
  assert len(lines) == 1, f'{label!r}: {lines} in:\n{text}'
  values = [float(v) for v in _NUMBER.findall(lines[0][len(label) :].replace(',', ''))]
  assert len(values) >= count, lines[0]
  assert all(math.isfinite(v) for v in values[:count]), lines[0]
  return values[:count]
