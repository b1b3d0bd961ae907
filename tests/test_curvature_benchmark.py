"""benchmarks/curvature_throughput.py runs end to end on tiny sizes and prints a finite figure in every row (slow
set), and refuses a budget too small to measure before any work."""

from __future__ import annotations

import re

import pytest
from benchmark_scripts import figures, run

SCRIPT = 'curvature_throughput.py'
TINY = (
  *('--repeats', '3', '--rounds', '3', '--mlp-widths', '16', '--mlp-batch', '32', '--cnn-channels', '4'),
  *('--cnn-widths', '8', '--cnn-batch', '4', '--train-steps', '2', '--eigen-widths', '16', '--k', '3'),
  *('--krylov-depth', '12', '--sweep-widths', '8', '--sweep-steps', '2', '--learning-rates', '2', '--seeds', '2'),
)


def test_a_budget_too_small_to_measure_is_refused_before_any_work():
  out = run(SCRIPT, '--repeats', '2', '--sweep-steps', '0', returncode=1)
  assert '--repeats 2: a median needs at least 3 timed calls' in out
  assert '--sweep-steps 0: nothing to time' in out
  assert 'machine:' not in out and 'ratios' not in out


@pytest.mark.slow
def test_every_row_prints_a_finite_figure():
  out = run(SCRIPT, *TINY)
  for kind in ('MLP 64-16-10, digits batch 32', 'CNN conv 4 + 8-10, 28x28x1 batch 4'):
    params, *ms = figures(kind, out, 5)
    assert params > 0 and min(ms) > 0
  for label in (
    'trainer steps/s, sgd ',
    'trainer steps/s, dal ',
    'trainer steps/s, dal, fd curvature',
    'Lanczos wall seconds',
    'one HVP, ms',
    'Lanczos in HVP-equivalents',
    'Lanczos iteration alone (matvec v/2), seconds',
    'sweep, 4 members vmapped, aggregate steps/s',
    'sweep, 4 runs one after another, steps/s',
    'grad_and_hvp / gradient, MLP',
    'grad_and_hvp / gradient, CNN',
    'fd (g, Hg) / gradient, MLP',
    'hvp / gradient, CNN',
    'DAL step / SGD step',
    'DAL step (fd curvature) / SGD step',
    'Lanczos HVP-equivalents / HVPs',
    'sweep, vmapped / one after another',
  ):
    assert figures(label, out)[0] > 0, label
  assert figures('Lanczos HVPs (Krylov depth)', out) == [12]
  for i in range(3):
    value, estimate, residual = figures(f'lambda_{i}', out, 3)
    assert residual <= estimate + 1e-4 * max(1.0, abs(value))  # the Lanczos estimate is what the pair misses by
  assert figures('sweep, largest relative parameter difference', out)[0] < 1e-3
  assert re.search(r'grad_and_hvp / gradient, MLP\s+[\d.]+\s+target <= 2\.2: (met|missed by \d+%)', out)
  assert re.search(r'DAL step / SGD step\s+[\d.]+\s+target <= 2\.5: (met|missed by \d+%)', out)
