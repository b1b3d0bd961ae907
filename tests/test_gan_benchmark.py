"""benchmarks/gan_step.py runs end to end at --quick sizes and prints a finite figure in every row, and refuses
flags that leave nothing to measure before any work."""

from __future__ import annotations

import math
import re

from benchmark_scripts import figures, run

SCRIPT = 'gan_step.py'


def test_flags_that_leave_nothing_to_measure_are_refused_before_any_work():
  out = run(SCRIPT, '--repeats', '2', '--batch', '7', '--regularisers', 'sga,wgan', returncode=1)
  assert '--repeats 2: a median needs at least 3 timed calls' in out
  assert '--batch 7: give an even size' in out
  assert '--regularisers wgan: unknown' in out
  assert 'machine:' not in out


def test_quick_run_prints_a_finite_figure_in_every_row():
  out = run(SCRIPT, '--quick')
  train_rate, train_ms = figures('training step', out, 2)
  floor_rate, floor_ms = figures('forward and backward alone', out, 2)
  assert math.isclose(train_rate * train_ms, 1e3, rel_tol=1e-2) and math.isclose(
    floor_rate * floor_ms, 1e3, rel_tol=1e-2
  )
  (ratio,) = figures('floor ratio (training / fwd+bwd)', out, 1)
  assert math.isclose(ratio, train_rate / floor_rate, rel_tol=1e-2)
  assert re.search(r'floor ratio \(training / fwd\+bwd\)\s+[\d.]+\s+target >= 0\.85: (met|missed by \d+%)', out)
  rate, ms, cost = figures('consensus', out, 3)  # the regulariser of --quick
  assert math.isclose(rate * ms, 1e3, rel_tol=1e-2) and math.isclose(cost, train_rate / rate, rel_tol=5e-2), cost
