"""benchmarks/flow_integration.py runs end to end on a tiny MLP, in process, and prints a finite figure in every
row; bad budgets are refused before any work."""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / 'benchmarks' / 'flow_integration.py'


def _module():
  spec = importlib.util.spec_from_file_location('flow_integration', SCRIPT)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_a_tiny_run_prints_every_row_and_refuses_bad_budgets(capsys):
  bench = _module()
  assert bench.main(['--dt', '0.5', '--h', '0.1', '--repeats', '0']) == 1
  err = capsys.readouterr().err
  assert '--repeats 0: at least one timed call' in err and '--dt 0.5: larger than --h 0.1' in err
  args = [
    '--flows',
    'ngf',
    '--widths',
    '4',
    '--inputs',
    '3',
    '--batch',
    '8',
    '--h',
    '0.002',
    '--dt',
    '1e-4',
    '--dtype',
    'float64',
  ]
  assert bench.main([*args, '--repeats', '1', '--no-count']) == 0
  out = capsys.readouterr().out
  assert '21 parameters' in out
  for method, steps in (('diffrax', None), ('euler', 20)):
    row = re.search(rf'^ngf\s+{method}\s+(\S+)\s+(\S+)\s+-\s+(\S+)\s+(\S+)$', out, re.M)
    assert row, out
    wall, taken, error, relative = (float(v.replace(',', '')) for v in row.groups())
    assert all(math.isfinite(v) for v in (wall, error, relative)) and wall > 0 and relative < 1e-2
    assert steps is None or taken == steps
  ratio = re.search(r'euler / diffrax wall time, ngf: (\S+)', out)
  assert ratio and float(ratio.group(1)) > 0
