"""The benchmark scripts run end to end on small budgets and print finite figures (slow set), and refuse budgets
too small to measure before any work."""

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / 'benchmarks'


def _run(script, *args, returncode=0):
  done = subprocess.run(
    [sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True, timeout=900, check=False
  )
  assert done.returncode == returncode, done.stderr[-3000:]
  return done.stdout + done.stderr


def _figure(pattern, text):
  match = re.search(pattern, text)
  assert match, f'{pattern!r} not in:\n{text}'
  value = float(match.group(1))
  assert math.isfinite(value) and value > 0, match.group(0)
  return value


def test_a_budget_too_small_to_measure_is_refused_before_any_work():
  out = _run('compiled_throughput.py', '--steps', '15000', '--host-steps', '14000', returncode=1)
  assert '--host-steps 14000: too few steps to measure a rate' in out and 'give at least 15000' in out
  out = _run('atari_throughput.py', '--steps', '1999', returncode=1)
  assert '--steps 1999: too few steps' in out and 'give at least 2000' in out


@pytest.mark.slow
def test_compiled_throughput_prints_every_row_and_the_ratios():
  out = _run('compiled_throughput.py', '--steps', '15000', '--host-steps', '15000', '--members', '2', '--rounds', '1')
  for row in (
    'host runner, official MinAtar',
    'compiled runner ',
    'compiled runner, 2 vmapped',
    'learner only, scanned (floor)',
    'learner only, one call per update',
    'learner sampling a full replay, scanned',
  ):
    _figure(re.escape(row) + r'.*?([\d.]+)\s*$', '\n'.join(line for line in out.splitlines() if line.startswith(row)))
  evaluation = _figure(r'evaluation: 20 phases .*?, ([\d.]+) min in all', out)
  training = _figure(r'compiled runner \d+ updates/s, ([\d.]+) min per 5M-step run', out)
  with_evaluation = _figure(r'\(([\d.]+) with its evaluations\)', out)
  assert with_evaluation == pytest.approx(training + evaluation, abs=0.11)
  _figure(r'/ scanned floor \(\d+\) ([\d.]+)', out)
  _figure(r'/ one call per update \(\d+\) ([\d.]+)', out)
  _figure(r'/ learner sampling a full replay \(\d+\) ([\d.]+)', out)


@pytest.mark.slow
def test_dqn_throughput_prints_the_host_loop_against_the_learner():
  out = _run('dqn_throughput.py', '--steps', '8000', '--updates', '200')
  end_to_end = _figure(r'host loop, updates/s \(end to end\)\s+([\d.]+)', out)
  learner = _figure(r'learner only, updates/s\s+([\d.]+)', out)
  assert _figure(r'end-to-end / learner-only\s+([\d.]+)', out) == pytest.approx(end_to_end / learner, abs=0.01)


@pytest.mark.slow
def test_atari_throughput_prints_its_rates():
  out = _run('atari_throughput.py', '--steps', '2000', '--num-envs', '2')
  _figure(r'learner step alone, updates/s\s+([\d.]+)', out)
  _figure(r'projected 50M-frame run \(host runner\)\s+([\d.]+)h', out)


@pytest.mark.slow
def test_learner_profile_splits_the_update_into_kernels():
  out = _run('learner_profile.py', '--updates', '30')
  _figure(r'([\d.]+)\s+all kernels', out)
