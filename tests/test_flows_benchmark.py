"""benchmarks/principal_flow_cost.py runs end to end at --quick sizes and prints a finite figure in every row, and
refuses flags that leave nothing to measure before any work."""

from __future__ import annotations

import math
import re

from benchmark_scripts import figures, run

SCRIPT = 'principal_flow_cost.py'


def test_flags_that_leave_nothing_to_measure_are_refused_before_any_work():
  out = run(SCRIPT, '--repeats', '2', '--depths', '5000', returncode=1)
  assert '--repeats 2: a median needs at least 3 timed calls' in out
  assert '--depths 5000: the MLP of part 2 has D = 1089 parameters' in out
  assert 'machine:' not in out


def test_quick_run_prints_a_finite_figure_in_every_row():
  out = run(SCRIPT, '--quick')
  lambda_0, h = figures('lambda_0, h', out, 2)
  assert lambda_0 > 0 and math.isclose(h * lambda_0, 1.5, rel_tol=1e-3)
  for label in ('gradient, ms', 'one HVP, ms', 'one PF field evaluation, ms', 'PF field HVP-equivalents per'):
    assert figures(label, out)[0] > 0, label
  assert re.search(r'PF field in HVP-equivalents\s+[\d.]+\s+target <= 4\.8: (met|missed by \d+%)', out)
  assert re.search(r'relative gap, depth 4 vs depth 8\s+not run with --quick', out)
  assert figures('dense (eigh of H)', out, 3)[1:] == [1.0, 0.0]
  ms, _, difference = figures('lanczos, depth 8', out, 3)
  assert ms > 0 and difference < 1e-3  # depth 8 of D = 21 on a 3-4-1 MLP
