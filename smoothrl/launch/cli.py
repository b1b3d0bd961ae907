"""The `smoothrl` command line.

    smoothrl train --agent dqn --env minatar/breakout --steps 20000 --method sn --layers -2 --out runs/x
    smoothrl fit --data digits --model mlp:100,100 --optimizer dal-p --p 0.5 --steps 2000 --out runs/d
    smoothrl sweep SPEC.yaml | smoothrl summary DIR | smoothrl plot DIR | smoothrl reproduce NAME

Every flag of `train` maps onto a field of `TrainConfig`, of `fit` onto a `FitConfig` (`launch.fit`); the run
directory's `config.json` records the full config.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from smoothrl.launch import fit, kinds, reproduce
from smoothrl.launch.analysis import plots, report, results
from smoothrl.launch.run import config as config_lib
from smoothrl.launch.run import recorder, rl, workers
from smoothrl.launch.run.files import CONFIG_FILE
from smoothrl.launch.run.kind import TrainOptions
from smoothrl.launch.sweeps import backends
from smoothrl.launch.sweeps import spec as sweep

_FAILURES_LISTED = 10  # failed runs a sweep names with their reasons when it ends (index.json holds them all)

# Flags for the DQN hyperparameters of thesis Table E.1, the network (Table E.6) and the smoothness method.
_SECTIONS = {
  'dqn': 'DQN hyperparameters (defaults: thesis Table E.1)',
  'network': 'critic architecture (defaults: thesis Table E.3; Table E.6 varies depth and widths)',
  'method': 'smoothness method (thesis Section 7.3)',
  'regulariser': 'baselines the thesis compared SN with (Appendix E.1.2)',
  'c51': 'C51 support (--agent c51; Bellemare et al. 2017)',
  'atari': 'Atari protocol (atari/<Game> environments)',
}
_HELP = {
  'gamma': 'discount factor',
  'update_period': 'environment steps per learner update',
  'target_update_period': 'environment steps between target-network refreshes',
  'epsilon_start': 'exploration epsilon at the start',
  'epsilon_end': 'final exploration epsilon',
  'epsilon_decay_steps': 'the step at which epsilon reaches its end value, decaying linearly from the end of warm-up',
  'warmup_steps': 'steps of random acting before learning starts',
  'replay_capacity': 'replay buffer size',
  'batch_size': 'transitions per update',
  'loss': 'TD loss: mse (Table E.1) or huber (Table E.4)',
  'learning_rate': 'Adam learning rate',
  'adam_eps': "Adam's epsilon",
  'adam_b1': "Adam's beta1",
  'adam_b2': "Adam's beta2",
  'eps_placement': "Adam's epsilon outside the square root (PyTorch, optax eps) or inside (thesis Eq 2.22)",
  'conv_layers': 'number of convolutions',
  'conv_channels': 'channels of every convolution, or one per convolution (e.g. 32,64,64)',
  'kernel_size': 'convolution kernel size, or one per convolution (e.g. 8,4,3)',
  'stride': 'convolution stride, or one per convolution (e.g. 4,2,1)',
  'padding': 'convolution padding (VALID as the MinAtar reference network)',
  'hidden': 'units of the hidden dense layer',
  'conv_impl': 'how convolutions are computed, same parameters and outputs: patches (a matmul over shifted '
  'slices, fast in compiled loops on a CPU) or xla',
  'method': 'none | sn | divout (Eq 7.13) | divgrad (Eq 7.28) | muleps (Eq 7.31)',
  'layers': 'selected layers, indexed from the output, e.g. -2 or -2,-3 (-1 is the output layer)',
  'lipschitz': 'K: SN divides weights by max(sigma/K, 1)',
  'sn_always': 'SN divides by sigma/K even when sigma < K',
  'sn_grad_through_sigma': 'backpropagate through sigma in SN (off in the thesis)',
  'power_iterations': 'power-iteration steps per learner update',
  'power_iteration_on_acting': 'also advance the power iteration once per acting step (PyTorch spectral_norm in '
  'training mode, the thesis code); off: once per learner update',
  'obs_scale': 'factor on the observations before the first layer (1/255 for Atari frames, as snrl and Dopamine)',
  'gradient_penalty': 'none | norm_of_sum (||sum_i dQ_i/ds||) | sum_of_norms (sum_i ||dQ_i/ds||) | '
  'norm_of_max (||d max_i Q_i/ds||), added to the TD loss',
  'penalty_coef': "the gradient penalty's coefficient zeta",
  'batch_norm': 'batch normalisation after every hidden ReLU',
  'protocol': 'noop (up to 30 no-op starts: Rainbow, the thesis) or sticky (sticky actions 0.25: Dopamine)',
  'terminal_on_life_loss': 'a lost life ends the episode for learning (discount 0)',
  'full_action_space': 'all 18 actions instead of the minimal set',
  'max_episode_frames': 'episode cap in emulator frames',
  'num_atoms': 'atoms of the categorical support',
  'v_min': 'smallest atom',
  'v_max': 'largest atom',
}
_RUN_HELP = {
  'runner': 'host (a Python loop around jitted acting and learning; any environment) or compiled (the whole '
  'loop in lax.scan on the JAX-native environment)',
  'agent': 'agent to train: dqn or c51',
  'env': 'environment, e.g. minatar/breakout',
  'steps': 'environment steps',
  'seed': 'random seed',
  'out': 'run directory (created)',
  'eval_period': 'steps between evaluation phases (one also runs at the end)',
  'eval_steps': 'environment steps per evaluation phase',
  'eval_epsilon': 'epsilon during evaluation',
  'smoothness_states': 'visited states sampled per evaluation for the smoothness measure max ||dQ/ds|| '
  '(Appendix E.2.2; the thesis uses thousands)',
  'log_period': 'steps between training-metric entries',
  'sigma_log_period': 'steps between entries with the spectral norm of every critic layer',
  'checkpoint_period': 'steps between checkpoints (a multiple of --log-period; 0 turns them off)',
  'tensorboard': 'also write the metrics as TensorBoard scalars into OUT/tensorboard',
}


def _layers(text: str) -> tuple[int, ...]:
  try:
    return tuple(int(part) for part in text.split(',') if part.strip())
  except ValueError:
    raise argparse.ArgumentTypeError(f'layers must be comma-separated integers like -2,-3, got {text!r}') from None


def _int_or_ints(text: str) -> int | tuple[int, ...]:
  try:
    values = tuple(int(part) for part in text.split(','))
  except ValueError:
    raise argparse.ArgumentTypeError(f'expected an integer or comma-separated integers, got {text!r}') from None
  return values[0] if len(values) == 1 else values


def _seeds(text: str) -> tuple[int, ...]:
  seeds: list[int] = []
  try:
    for part in text.split(','):
      low, _, high = part.strip().partition('-')
      values = range(int(low), int(high) + 1) if high else [int(low)]
      if len(seeds) + len(values) > sweep.MAX_RUNS:  # counted before a range is built
        raise argparse.ArgumentTypeError(f'more than {sweep.MAX_RUNS:,} seeds in {text!r}')
      seeds.extend(values)
  except ValueError:
    raise argparse.ArgumentTypeError(f'seeds must look like 0-9 or 0,3,5, got {text!r}') from None
  if not seeds or len(set(seeds)) != len(seeds):
    raise argparse.ArgumentTypeError(f'seeds must be distinct and non-empty, got {text!r}')
  return tuple(seeds)


_MEMBERS_HELP = (
  'the compiled runner with vmapped runs (on an accelerator): at most N of them in one program, '
  "the others in further programs after it (default: as many as the device's memory holds)"
)


def _positive(text: str) -> int:
  value = int(text)
  if value < 1:
    raise argparse.ArgumentTypeError(f'must be at least 1, got {value}')
  return value


def _resource(text: str) -> float:
  try:
    value = float(text)
  except ValueError:
    value = math.nan
  if not math.isfinite(value) or value < 0:
    raise argparse.ArgumentTypeError(f'expected a number >= 0, got {text!r}')
  return value


class _HelpFormatter(argparse.HelpFormatter):
  """Help with a literal '%' (as in '95%'): argparse %-formats help strings, so each '%' that starts neither '%%'
  nor a '%(name)s' placeholder is escaped."""

  def _get_help_string(self, action):
    return re.sub(r'%%|%\(|%', lambda m: m.group() if len(m.group()) == 2 else '%%', super()._get_help_string(action))


class _RawDescriptionHelpFormatter(_HelpFormatter, argparse.RawDescriptionHelpFormatter):
  """`_HelpFormatter` that keeps the description's and epilog's line breaks."""


class _Parser(argparse.ArgumentParser):
  """An argument parser, and the parsers of its subcommands, with `_HelpFormatter` unless told otherwise."""

  def __init__(self, *args, formatter_class=_HelpFormatter, **kwargs):
    super().__init__(*args, formatter_class=formatter_class, **kwargs)


def _bool(text: str) -> bool:
  if text.lower() in ('1', 'true', 'yes', 'on'):
    return True
  if text.lower() in ('0', 'false', 'no', 'off'):
    return False
  raise argparse.ArgumentTypeError(f'expected true or false, got {text!r}')


def _add_field(group, field: dataclasses.Field, dest: str, help_text: str) -> None:
  flag = '--' + field.name.replace('_', '-')
  kind = {int: int, float: float, bool: _bool}.get(type(field.default), str)
  if field.name == 'layers':
    kind = _layers
  elif field.name in ('conv_channels', 'kernel_size', 'stride'):
    kind = _int_or_ints
  default = field.default
  shown = ','.join(map(str, default)) if isinstance(default, tuple) else default
  group.add_argument(
    flag, dest=dest, type=kind, default=None, metavar=field.name.upper(), help=f'{help_text} (default: {shown})'
  )


def _train_parser(sub) -> argparse.ArgumentParser:
  p = sub.add_parser(
    'train',
    help='train one agent',
    description='Train one agent and write its run directory: '
    'config.json, metrics.jsonl (one JSON object per line with "step" and "kind": episode, train, '
    'sigma, eval) and summary.json.',
  )
  p.add_argument(
    '--preset', default=None, help=f'start from a preset: {", ".join(sorted(config_lib.PRESETS))} (flags override it)'
  )
  p.add_argument('--no-progress', action='store_true', help='do not draw the progress line')
  p.add_argument(
    '--resume',
    default=None,
    metavar='DIR',
    help="continue the run in DIR from its last checkpoint, with DIR's config.json (other flags are "
    'ignored); a finished run is left as it is',
  )
  p.add_argument(
    '--seeds',
    type=_seeds,
    default=None,
    metavar='SEEDS',
    help='several seeds, e.g. 0-9 or 0,3,5: one run directory per seed, OUT/seed_<s>',
  )
  p.add_argument(
    '--workers',
    type=int,
    default=0,
    help='with several seeds on a CPU: processes running them side by side, each pinned to its share '
    'of the cores (default 0: one per core; 1: one after another in this process)',
  )
  p.add_argument('--members-per-program', type=_positive, default=None, metavar='N', help=_MEMBERS_HELP)
  for field in dataclasses.fields(config_lib.TrainConfig):
    if field.name in _SECTIONS:
      continue
    _add_field(p, field, field.name, _RUN_HELP[field.name])
  p.set_defaults(agent=None)
  for section, title in _SECTIONS.items():
    group = p.add_argument_group(title)
    cls = type(getattr(config_lib.TrainConfig(), section))
    for field in dataclasses.fields(cls):
      _add_field(group, field, f'{section}.{field.name}', _HELP[field.name])
  return p


def _sweep_parser(sub) -> argparse.ArgumentParser:
  p = sub.add_parser(
    'sweep',
    help='run a sweep: a spec file, or a grid given on the command line',
    description='Run every run of a sweep (a base config and lists whose cross product is taken). '
    'The whole sweep is validated before anything runs. Re-running a sweep skips finished runs '
    'and resumes stopped ones; failed runs are recorded in OUT/index.json and skipped unless '
    '--retry-failed.',
    formatter_class=_RawDescriptionHelpFormatter,
    epilog=f'grid syntax: {sweep.GRID_SYNTAX}',
  )
  p.add_argument('spec', nargs='?', help='a sweep spec (YAML); see specs/ for the thesis experiments')
  p.add_argument(
    '--grid',
    action='append',
    default=[],
    metavar='FIELD=VALUES',
    help='a field and its values, e.g. dqn.learning_rate=1e-4,3e-4 or seed=0-4 (repeatable)',
  )
  p.add_argument(
    '--set',
    action='append',
    default=[],
    metavar='FIELD=VALUE',
    help='a fixed field of the base config for --grid sweeps, e.g. steps=5000 (repeatable)',
  )
  p.add_argument('--preset', default=None, help='the base preset for --grid sweeps')
  p.add_argument(
    '--kind', default=kinds.DEFAULT, choices=sorted(kinds.KINDS), help='the run kind of --grid sweeps (default: rl)'
  )
  p.add_argument(
    '--out', default=None, help="the sweep directory (default: the spec's out, or runs/sweep for --grid sweeps)"
  )
  p.add_argument(
    '--backend',
    default='local',
    choices=backends.BACKENDS,
    help='local worker processes, the compiled runner (runs that share a structure run as one '
    'program), or a Ray cluster',
  )
  p.add_argument(
    '--workers',
    type=int,
    default=None,
    help='processes running runs side by side, each pinned to its share of the cores (local backend, '
    'and the compiled backend on a CPU; default: one per core)',
  )
  p.add_argument('--members-per-program', type=_positive, default=None, metavar='N', help=_MEMBERS_HELP)
  p.add_argument('--address', default=None, help='Ray cluster address (default: start a local one)')
  p.add_argument(
    '--cpus-per-run',
    type=_resource,
    default=None,
    metavar='N',
    help='CPUs the ray backend asks for each run (default 1)',
  )
  p.add_argument(
    '--gpus-per-run',
    type=_resource,
    default=None,
    metavar='G',
    help='GPUs the ray backend asks for each run (default 0; a fraction shares a GPU: 0.25 runs four on one)',
  )
  p.add_argument('--retry-failed', action='store_true', help='run failed runs again')
  p.add_argument('--no-progress', action='store_true', help='do not draw the progress line')
  return p


def _results_parsers(sub) -> None:
  for name, text in (
    (
      'plot',
      'write figures of runs or sweeps, each as PNG, PDF and SVG: learning curves with '
      'confidence bands over seeds (MinAtar Normalised Score, Table E.2), learning-rate x Adam-eps '
      'sensitivity heatmaps per method (Figure 7.4) when the runs vary both (a sensitivity curve when '
      'they vary one), per-method bars when they vary the method, and performance profiles and '
      'interval estimates of IQM, mean, median and optimality gap across games and seeds',
    ),
    (
      'summary',
      'print mean and 95% confidence interval over seeds of the final and best '
      'evaluation scores of each config, then across games and seeds the IQM, mean, median and '
      'optimality gap of normalised final scores with stratified-bootstrap CIs and the probability '
      'of improvement over the baseline (Agarwal et al. 2021)',
    ),
  ):
    p = sub.add_parser(name, help=text.split(':')[0], description=text[0].upper() + text[1:] + '.')
    p.add_argument('paths', nargs='+', help='run directories or sweep directories')
    if name == 'plot':
      p.add_argument('--out', default=None, help='directory for the figures (default: the first path)/plots')
    p.add_argument('--raw', action='store_true', help='raw returns instead of normalised scores')
    p.add_argument('--include-incomplete', action='store_true', help='also use unfinished runs (marked *)')


def parser() -> argparse.ArgumentParser:
  p = _Parser(
    prog='smoothrl',
    description='Smoothness-aware optimisation: RL agents, supervised models, sweeps and their results.',
  )
  sub = p.add_subparsers(dest='command', required=True)
  _train_parser(sub)
  fit.add_parser(sub, _seeds, _positive, _layers, _MEMBERS_HELP)
  _sweep_parser(sub)
  reproduce.add_parser(sub)
  _results_parsers(sub)
  return p


def _results_main(args: argparse.Namespace) -> int:
  missing = [path for path in args.paths if not Path(path).exists()]
  if missing:
    print(f'smoothrl: no such file or directory: {", ".join(missing)}', file=sys.stderr)
    return 2
  loaded = results.load_runs(args.paths)
  runs = results.usable_runs(loaded, include_incomplete=args.include_incomplete)
  failed = results.failed_runs(loaded)
  if not runs and not (failed and args.command == 'summary'):  # a table of failures alone is still a summary
    listed = f' ({len(failed)} failed: `smoothrl summary` lists them)' if failed else ''
    print(f'smoothrl: no runs with evaluations under {", ".join(args.paths)}{listed}', file=sys.stderr)
    return 2
  if args.command == 'plot':
    out = args.out or str(Path(args.paths[0]) / 'plots')
    try:
      written = plots.plot_runs(runs, out, normalise=not args.raw, failed=failed, aggregates=True)
    except config_lib.ConfigError as e:  # matplotlib not installed
      print(f'smoothrl: {e}', file=sys.stderr)
      return 2
    for path in written:
      print('\n'.join(map(str, plots.figure_files(path))))
  else:
    print(results.summary_table(runs, normalise=not args.raw, failed=failed))
    aggregates = report.aggregate_report(runs, normalise=not args.raw, failed=failed)
    if aggregates:
      print(f'\n{aggregates}')
  return 0


def _sweep_spec(args: argparse.Namespace):
  """The checked sweep of a spec file (its `out` replaced by `--out`) or of `--grid`, `--set` and `--preset`."""
  if args.spec and (args.grid or args.set or args.preset):
    raise config_lib.ConfigError('give either a spec file or --grid/--set/--preset, not both')
  if args.spec:
    return sweep.load_spec(args.spec, out=args.out)
  if not args.grid:
    raise config_lib.ConfigError('nothing to sweep: give a spec file or at least one --grid FIELD=VALUES')
  kind = kinds.get(args.kind)
  if args.preset and args.preset not in kind.presets:
    raise config_lib.ConfigError(f'unknown preset {args.preset!r}; valid: {", ".join(sorted(kind.presets))}')
  base = config_lib.replace(kind.config_type(), **kind.presets[args.preset]) if args.preset else kind.config_type()
  fixed = {}
  for text in args.set:
    key, sep, value = text.partition('=')
    if not sep or not key.strip():
      raise config_lib.ConfigError(f'--set {text!r}: expected FIELD=VALUE')
    if key.strip() == 'out':
      raise config_lib.ConfigError(f'--set {text!r}: the sweep directory is --out')
    fixed[key.strip()] = sweep.read_value(value)
  return sweep.grid_from_args(base, args.grid, out=args.out or 'runs/sweep', fixed=fixed)


def _refuse(error: Exception) -> int:
  """Prints why a command does not run on stderr, its last line `smoothrl: ...`; returns the exit status 2.

  A message of one problem takes one line; a longer one is followed by a line that counts its problems.
  """
  lines = str(error).splitlines() or ['']
  problems = [line[4:] for line in lines[1:] if line.startswith('  - ')]
  if len(lines) == 2 and len(problems) == 1:
    header = error.source if isinstance(error, sweep.SweepError) else lines[0].rstrip(':')
    lines = [f'{header}: {problems[0]}']
  print('smoothrl: ' + '\n'.join(lines), file=sys.stderr)
  if len(lines) > 1:
    count = f'{len(problems)} problems' if len(problems) > 1 else 'the problem'
    print(f'smoothrl: nothing ran: {count} listed above', file=sys.stderr)
  return 2


def _sweep_main(args: argparse.Namespace) -> int:
  try:
    for flag, value in (('--cpus-per-run', args.cpus_per_run), ('--gpus-per-run', args.gpus_per_run)):
      if value is not None and args.backend != 'ray':
        raise config_lib.ConfigError(f'{flag} is an option of the ray backend, not of the {args.backend} one')
    spec = _sweep_spec(args)
    counts = backends.run_sweep(
      spec,
      backend=args.backend,
      workers=args.workers,
      retry_failed=args.retry_failed,
      address=args.address,
      show_progress=not args.no_progress,
      max_members=args.members_per_program,
      cpus_per_run=args.cpus_per_run,
      gpus_per_run=args.gpus_per_run,
    )
  except config_lib.ConfigError as e:
    return _refuse(e)
  print(
    f'sweep {spec.name}: {counts["done"]} done, {counts["failed"]} failed, {counts["pending"]} pending; '
    f'index in {spec.out}/{backends.INDEX}'
  )
  failed = [r for r in json.loads((Path(spec.out) / backends.INDEX).read_text())['runs'] if r['state'] == 'failed']
  for run in failed[:_FAILURES_LISTED]:
    print(f'  failed: {run["name"]}: {run.get("error", "no reason recorded")}', file=sys.stderr)
  if len(failed) > _FAILURES_LISTED:
    print(f'  ... and {len(failed) - _FAILURES_LISTED} more failed runs', file=sys.stderr)
  return 1 if counts['failed'] else 0


def configs_from_args(args: argparse.Namespace) -> list[config_lib.TrainConfig]:
  """The runs the flags describe: one, or one per seed of `--seeds` (each in OUT/seed_<s>)."""
  base = config_lib.preset(args.preset) if args.preset else config_lib.TrainConfig()
  options = ('command', 'preset', 'no_progress', 'seeds', 'workers', 'members_per_program', 'resume')
  updates: dict[str, Any] = {k: v for k, v in vars(args).items() if v is not None and k not in options}
  config = config_lib.replace(base, **updates)
  if args.seeds is None:
    return [config]
  return [config_lib.replace(config, seed=s, out=f'{config.out}/seed_{s}') for s in args.seeds]


def _attach_layer_values(argv: Sequence[str]) -> list[str]:
  """Lets `--layers -2,-3` through: argparse would read '-2,-3' as an option, so it becomes `--layers=-2,-3`
  (and `--sn-layers` alike)."""
  out, argv = [], list(argv)
  while argv:
    token = argv.pop(0)
    if token in ('--layers', '--sn-layers') and argv and argv[0].startswith('-'):
      token = f'--layers={argv.pop(0)}'
    out.append(token)
  return out


def _resumed_config(run_dir: str) -> config_lib.TrainConfig:
  """The checked config of the run in `run_dir`; ConfigError for a directory that holds no run to resume."""
  if not Path(run_dir).is_dir():
    raise config_lib.ConfigError(
      f'cannot resume {run_dir}: ' + ('not a directory' if Path(run_dir).exists() else 'no such directory')
    )
  path = Path(run_dir) / CONFIG_FILE
  if not path.exists():
    raise config_lib.ConfigError(f'cannot resume {run_dir}: it has no config.json')
  try:
    data = json.loads(path.read_text(encoding='utf-8'))
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise config_lib.ConfigError(f'cannot resume {run_dir}: its config.json is not readable JSON ({e})') from None
  try:
    config = config_lib.TrainConfig.from_dict(data)
    rl.validate(config)
  except (TypeError, AttributeError) as e:  # JSON values of the wrong types
    raise config_lib.ConfigError(
      f'cannot resume {run_dir}: its config.json has values of the wrong type ({e})'
    ) from None
  except config_lib.ConfigError as e:
    raise config_lib.ConfigError(f'cannot resume {run_dir}: its config.json: {e}') from None
  return config


def main(argv: Sequence[str] | None = None) -> int:
  args = parser().parse_args(_attach_layer_values(sys.argv[1:] if argv is None else argv))
  if args.command == 'sweep':
    return _sweep_main(args)
  if args.command == 'fit':
    return fit.main(args, _refuse)
  if args.command == 'reproduce':
    return reproduce.main(args, _refuse)
  if args.command in ('plot', 'summary'):
    return _results_main(args)
  try:  # everything is checked before a directory is made
    configs = [_resumed_config(args.resume)] if args.resume else configs_from_args(args)
    for config in configs:
      rl.validate(config)
    workers.count(args.workers, len(configs))
    for config in configs:
      recorder.check_directory(config.out, f'run directory {config.out}' if args.resume else f'--out {config.out}')
  except config_lib.ConfigError as e:
    return _refuse(e)
  progress = not args.no_progress
  try:
    summaries = rl.train(
      configs,
      TrainOptions(
        show_progress=progress, resume=bool(args.resume), workers=args.workers, max_members=args.members_per_program
      ),
    )
  except config_lib.ConfigError as e:  # what only the device or a checkpoint can tell
    return _refuse(e)
  failed = 0
  for config, summary in zip(configs, summaries):
    if summary.get('state') == 'failed':  # stopped alone (a non-finite loss); the other runs went on
      failed += 1
      print(f'seed {config.seed}: run failed: {summary["error"]}; records in {config.out}/', file=sys.stderr)
      continue
    final = summary['final_eval']
    print(
      f'seed {config.seed}: evaluation return {final["return_mean"]:.2f} over {final["episodes"]} episodes '
      f'(epsilon {config.eval_epsilon}) after {config.steps} steps; results in {config.out}/ '
      '(config.json, metrics.jsonl, summary.json)'
    )
  return 1 if failed else 0


if __name__ == '__main__':
  sys.exit(main())
