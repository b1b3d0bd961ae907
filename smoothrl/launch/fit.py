"""`smoothrl fit`: supervised runs from the command line.

    smoothrl fit --data digits --model mlp:100,100 --optimizer dal-p --p 0.5 --steps 2000 --out runs/digits

Several learning rates (`--lr 0.01,0.1`) and seeds (`--seeds 0-2`) make one run directory each, trained as members
of one vmapped program. Any other field of `FitConfig` is set with `--set FIELD=VALUE`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from smoothrl.launch.run import config as config_lib
from smoothrl.launch.run import recorder, supervised
from smoothrl.launch.run.files import CONFIG_FILE
from smoothrl.launch.run.kind import TrainOptions
from smoothrl.launch.sweeps import spec as sweep
from smoothrl.supervised import models


def _floats(text: str) -> tuple[float, ...]:
  try:
    values = tuple(float(part) for part in text.split(',') if part.strip())
  except ValueError:
    raise argparse.ArgumentTypeError(f'expected comma-separated numbers like 0.01,0.1, got {text!r}') from None
  if not values:
    raise argparse.ArgumentTypeError('expected at least one number')
  return values


def _model(text: str) -> dict[str, Any]:
  try:
    return models.parse_model(text)
  except ValueError as e:
    raise argparse.ArgumentTypeError(str(e)) from None


def add_parser(sub, seeds_type, positive_type, layers_type, members_help: str) -> argparse.ArgumentParser:
  """Adds the `fit` command to the `smoothrl` parser's subcommands."""
  p = sub.add_parser(
    'fit',
    help='train a supervised model',
    description='Train a supervised model and write its run directory: config.json, metrics.jsonl (an "eval" '
    'record every --log-period steps: train/test loss and accuracy, gradient norm, ||Hg||, the rate and its '
    'drift, Geometric Complexity, lambda_0 with --set metrics.top_eigenvalue=true) and summary.json.',
  )
  p.add_argument('--preset', default=None, help=f'start from a preset: {", ".join(sorted(supervised.PRESETS))}')
  p.add_argument(
    '--data',
    default=None,
    help='data set: iris, digits, breast_cancer, wine, two_moons, regression1d, mnist, fashion_mnist (default: digits)',
  )
  p.add_argument('--data-path', default=None, help='directory of IDX files for mnist / fashion_mnist')
  p.add_argument('--model', type=_model, default=None, help='mlp:W1,W2,... (hidden widths), cnn[:C1,C2] or resnet18')
  p.add_argument('--activation', default=None, help='relu, elu, tanh or linear')
  p.add_argument(
    '--sn-layers', type=layers_type, default=None, help='layers to spectrally normalise, from the output: e.g. -1,-2'
  )
  p.add_argument(
    '--optimizer', default=None, help='sgd, momentum, adam, dal (Eq 3.20), dal-p (Eq 3.21), momentum-dal (Eq 3.22)'
  )
  p.add_argument('--lr', type=_floats, default=None, help='learning rate(s), e.g. 0.1 or 0.01,0.03,0.1')
  p.add_argument('--p', type=float, default=None, help='the power of DAL-p (default 0.5)')
  p.add_argument('--steps', type=positive_type, default=None, help='optimiser steps')
  p.add_argument('--batch-size', type=int, default=None, help='examples per step (0: full batch)')
  p.add_argument('--log-period', type=positive_type, default=None, help='steps between evaluations')
  p.add_argument('--checkpoint-period', type=int, default=None, help='steps between checkpoints (0: none)')
  p.add_argument('--seed', type=int, default=None, help='random seed')
  p.add_argument('--seeds', type=seeds_type, default=None, help='several seeds, e.g. 0-2: one run each')
  p.add_argument('--set', action='append', default=[], metavar='FIELD=VALUE', help='any config field (repeatable)')
  p.add_argument('--out', default=None, help='run directory (with several runs, the parent of theirs)')
  p.add_argument('--resume', default=None, metavar='DIR', help='continue the run in DIR with its config.json')
  p.add_argument('--members-per-program', type=positive_type, default=None, metavar='N', help=members_help)
  p.add_argument('--no-progress', action='store_true', help='do not draw the progress line')
  return p


def configs_from_args(args: argparse.Namespace) -> list[supervised.FitConfig]:
  """The runs the flags describe: one per learning rate × seed (each in OUT/lr_<h>/seed_<s> when several)."""
  if args.resume:
    return [_resumed_config(args.resume)]
  base = supervised.FitConfig()
  if args.preset:
    if args.preset not in supervised.PRESETS:
      raise config_lib.ConfigError(f'unknown preset {args.preset!r}; valid: {", ".join(sorted(supervised.PRESETS))}')
    base = config_lib.replace(base, **supervised.PRESETS[args.preset])
  flags = {
    'data': 'data.name',
    'data_path': 'data.path',
    'activation': 'model.activation',
    'optimizer': 'optimizer.name',
    'p': 'optimizer.p',
    'steps': 'steps',
    'batch_size': 'batch_size',
    'log_period': 'log_period',
    'checkpoint_period': 'checkpoint_period',
    'seed': 'seed',
    'out': 'out',
  }
  updates: dict[str, Any] = {
    field: getattr(args, flag) for flag, field in flags.items() if getattr(args, flag) is not None
  }
  if args.model is not None:
    updates |= {f'model.{k}': v for k, v in args.model.items()}
  if args.sn_layers is not None:
    updates['model.sn_layers'] = args.sn_layers
  for text in args.set:
    key, sep, value = text.partition('=')
    if not sep or not key.strip():
      raise config_lib.ConfigError(f'--set {text!r}: expected FIELD=VALUE')
    updates[key.strip()] = sweep.read_value(value)
  config = config_lib.replace(base, **updates)
  rates = args.lr or (config.optimizer.learning_rate,)
  seeds = args.seeds or (config.seed,)
  if len(rates) == 1 and len(seeds) == 1:
    return [config_lib.replace(config, seed=seeds[0], **{'optimizer.learning_rate': rates[0]})]
  out = lambda h, s: '/'.join([config.out] + ([f'lr_{h:g}'] if len(rates) > 1 else []) + [f'seed_{s}'])
  return [
    config_lib.replace(config, seed=s, out=out(h, s), **{'optimizer.learning_rate': h}) for h in rates for s in seeds
  ]


def _resumed_config(run_dir: str) -> supervised.FitConfig:
  path = Path(run_dir) / CONFIG_FILE
  if not path.is_file():
    raise config_lib.ConfigError(f'cannot resume {run_dir}: it has no config.json')
  try:
    return supervised.FitConfig.from_dict(json.loads(path.read_text(encoding='utf-8')))
  except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError) as e:
    raise config_lib.ConfigError(f'cannot resume {run_dir}: its config.json is not a supervised config ({e})') from None


def main(args: argparse.Namespace, refuse) -> int:
  """Runs `smoothrl fit`; `refuse` prints a ConfigError and returns the exit status."""
  try:
    configs = configs_from_args(args)
    for config in configs:
      supervised.validate(config)
      recorder.check_directory(config.out, f'--out {config.out}')
  except config_lib.ConfigError as e:
    return refuse(e)
  options = TrainOptions(
    show_progress=not args.no_progress,
    resume=bool(args.resume),
    compiled=True,
    max_members=args.members_per_program,
  )
  try:
    summaries = supervised.train(configs, options)
  except config_lib.ConfigError as e:  # a data file that is missing, a checkpoint that does not fit
    return refuse(e)
  failed = 0
  for config, summary in zip(configs, summaries):
    name = f'seed {config.seed}, lr {config.optimizer.learning_rate:g}'
    if summary.get('state') == 'failed':
      failed += 1
      print(f'{name}: run failed: {summary["error"]}; records in {config.out}/', file=sys.stderr)
      continue
    final = summary['final_eval']
    score = (
      f'test accuracy {final["test_accuracy"]:.4f}'
      if 'test_accuracy' in final
      else f'test loss {final["test_loss"]:.4g}'
    )
    print(f'{name}: {score} after {config.steps} steps; results in {config.out}/')
  return 1 if failed else 0
