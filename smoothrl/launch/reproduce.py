"""`smoothrl reproduce`: the CPU-scale reproductions of thesis figures (`smoothrl.launch.reproductions`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from smoothrl.launch.reproductions import REPRODUCTIONS
from smoothrl.launch.reproductions.common import FIGURE_FILE, RESULT_FILE
from smoothrl.launch.run import config as config_lib
from smoothrl.launch.run import recorder


def add_parser(sub) -> argparse.ArgumentParser:
  """Adds the `reproduce` command to the `smoothrl` parser's subcommands."""
  listing = '\n'.join(f'  {r.name:<18} {r.figure}: {r.claim}' for r in REPRODUCTIONS.values())
  p = sub.add_parser(
    'reproduce',
    help='run a CPU-scale reproduction of a thesis figure',
    description='Train the runs of a small-scale proxy of a thesis figure into OUT/runs/, then write OUT/figure.png '
    'and OUT/result.json with the numbers read back from the run directories. Run again, it resumes.',
    epilog=f'reproductions:\n{listing}',
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  p.add_argument('name', nargs='?', help='the reproduction (see the list below); none: list them')
  p.add_argument('--out', default=None, help='its directory (default: runs/reproductions/NAME)')
  p.add_argument('--quick', action='store_true', help='a tiny version that checks the pipeline in seconds')
  return p


def main(args: argparse.Namespace, refuse) -> int:
  """Runs `smoothrl reproduce`; `refuse` prints a ConfigError and returns the exit status."""
  if args.name is None:
    for r in REPRODUCTIONS.values():
      print(f'{r.name:<18} {r.figure}: {r.claim}\n{"":<18} {r.settings}')
    return 0
  if args.name not in REPRODUCTIONS:
    return refuse(config_lib.ConfigError(f'unknown reproduction {args.name!r}; valid: {", ".join(REPRODUCTIONS)}'))
  reproduction = REPRODUCTIONS[args.name]
  out = Path(args.out or f'runs/reproductions/{args.name}')
  try:
    recorder.check_directory(out, f'--out {out}')
    reproduction.run(out, args.quick)
  except config_lib.ConfigError as e:
    return refuse(e)
  except config_lib.TrainingError as e:
    print(f'smoothrl: {args.name}: {e}', file=sys.stderr)
    return 1
  result = json.loads((out / RESULT_FILE).read_text())
  print(f'{reproduction.figure} ({reproduction.name}), a small-scale proxy: {reproduction.claim}')
  print(f'figure: {out / FIGURE_FILE}; numbers: {out / RESULT_FILE} ({len(result)} entries)')
  return 0
