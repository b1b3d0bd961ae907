"""GAN training steps/s against the step's forward and backward passes alone, and the cost of each drift regulariser
over a plain step (thesis Section 4.6.3, Table 4.2), measured in one run.

    .venv/bin/python benchmarks/gan_step.py [--quick] [--steps 10] [--repeats 5] [--batch 64]

The network is DIGITS_NETWORK on the 8x8 digits (`smoothrl.gan.networks`, 'patches' convolutions), the step
`smoothrl.gan.trainer`'s default: SN on the discriminator, alternating updates, the non-saturating loss, Adam with
β₁ = 0.5 for both players. Every program is a jitted `lax.scan` of `--steps` steps, compiled before it is timed;
the programs are timed in turn (one call of each, `--repeats` times over) so that load from other jobs hits them
alike, and each figure is the median of its calls, each waited for with `block_until_ready`.

1. Training: `GanTrainer.train` (a fresh batch of data and latents per step, the power iteration, both players'
   updates and every logged metric) against the floor, the same step's forward and backward passes alone: both
   players' losses and gradients (`losses_and_grads`) on pre-drawn batches (a distinct one per step, so that XLA
   cannot hoist work out of the loop) at parameters passed through an optimisation barrier. Floor ratio = training
   steps/s over floor steps/s; target ≥ 0.85.
2. Each explicit regulariser of `smoothrl.gan.trainer.REGULARISERS` (the two-half estimator of ‖∇E‖², Eq B.245)
   in the same training step: steps/s and its cost over the plain step (seconds per step, regularised / plain).

--quick: a small MLP pair on the ring of 8 with SGD and no SN, a few steps, one regulariser ('consensus', whose
penalties have all four terms), compiled without XLA's backend optimisations: a check that the script runs, not a
measurement.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import datetime
import platform
import time
from collections.abc import Callable
from typing import Any

import common
import jax
import jax.numpy as jnp
import numpy as np
import optax

from smoothrl.gan import data, mixtures, networks, trainer

TARGET = 0.85  # the least floor ratio: training steps/s over forward-and-backward steps/s
MIN_REPEATS = 3
LEARNING_RATE = 2e-4
ZETA = 0.1  # ζ of the regularisers that take one (its value does not change the cost)
BATCHES = 8  # distinct pre-drawn batches of the floor program
# --quick times consensus, whose penalties have every term (the other regularisers differ in coefficients only).
QUICK = {'steps': 3, 'repeats': 3, 'batch': 8, 'regularisers': ('consensus',)}
QUICK_NETWORK = networks.NetworkConfig(
  kind='mlp', data_shape=(2,), latent_dim=2, generator_widths=(8,), discriminator_widths=(8,)
)


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--quick', action='store_true', help='a tiny network and few steps: a check that it runs')
  parser.add_argument('--steps', type=int, default=10, help='training steps per timed call (one lax.scan)')
  parser.add_argument('--repeats', type=int, default=5, help='timed calls of each program')
  parser.add_argument('--batch', type=int, default=64, help='examples of data and of samples per step')
  parser.add_argument(
    '--regularisers',
    type=lambda text: tuple(text.split(',')),
    default=tuple(n for n in trainer.REGULARISERS if n != 'none'),
    help='comma-separated regularisers to time (default: every one)',
  )
  return parser


def check(args: argparse.Namespace) -> None:
  """Stops the script, before any work, when a flag leaves nothing to measure."""
  problems = []
  if args.repeats < MIN_REPEATS:
    problems.append(f'--repeats {args.repeats}: a median needs at least {MIN_REPEATS} timed calls of each program')
  if args.steps < 1:
    problems.append(f'--steps {args.steps}: give at least 1')
  if args.batch < 2 or args.batch % 2:
    problems.append(f'--batch {args.batch}: give an even size >= 2 (the regularisers split it into halves)')
  unknown = [n for n in args.regularisers if n not in trainer.REGULARISERS or n == 'none']
  if unknown:
    valid = ', '.join(n for n in trainer.REGULARISERS if n != 'none')
    problems.append(f'--regularisers {",".join(unknown)}: unknown; valid: {valid}')
  if problems:
    raise SystemExit('; '.join(problems))


def regularised(config: trainer.GanConfig, name: str) -> trainer.GanConfig:
  """`config` with the regulariser `name`: the drift ones at the players' learning rate, the others at ζ."""
  if name in trainer.DRIFT_REGULARISERS:
    return dataclasses.replace(config, regulariser=name, drift_rates=(LEARNING_RATE, LEARNING_RATE))
  return dataclasses.replace(config, regulariser=name, regulariser_coefficient=ZETA)


def setup(args: argparse.Namespace) -> dict[str, Any]:
  """The network, sampler, step config and optimisers of the run."""
  if args.quick:
    nets, sampler, label = networks.make_networks(QUICK_NETWORK), mixtures.ring().sample, 'MLP 2-8-1 pair, ring of 8'
    config = trainer.GanConfig(batch_size=args.batch, method='none', adam_betas=None)
    optimiser = lambda player: optax.sgd(LEARNING_RATE)
  else:
    digits = data.load_images('digits')
    nets, sampler = networks.make_networks(networks.DIGITS_NETWORK), data.array_sampler(digits.train)
    label = f'DIGITS_NETWORK (dcgan, {networks.DIGITS_NETWORK.conv_impl}), digits'
    config = trainer.GanConfig(batch_size=args.batch)
    optimiser = lambda player: trainer.player_optimizer(config, player, LEARNING_RATE)
  return {'nets': nets, 'sampler': sampler, 'config': config, 'optimiser': optimiser, 'label': label}


def make(run: dict[str, Any], config: trainer.GanConfig) -> trainer.GanTrainer:
  return trainer.make_trainer(
    run['nets'], run['sampler'], run['optimiser']('discriminator'), run['optimiser']('generator'), config
  )


def training(gan: trainer.GanTrainer, steps: int, options: dict[str, Any]) -> Callable[[trainer.GanState], Any]:
  """`state -> (state, metrics)`: `steps` training steps in one scan, the metrics averaged."""

  def run(state):
    state, metrics = gan.train(state, steps)
    return state, jax.tree.map(jnp.mean, metrics)

  return jax.jit(run, compiler_options=options)


def floor(gan: trainer.GanTrainer, run: dict[str, Any], steps: int, options: dict[str, Any]):
  """`state -> scalar`: `steps` evaluations of both players' losses and gradients in one scan, on `BATCHES` distinct
  pre-drawn batches (batch i mod BATCHES at step i), every gradient summed into the result."""
  batch = run['config'].batch_size

  def draw(key):
    data_key, z_key = jax.random.split(key)
    return run['sampler'](data_key, batch), run['nets'].generator.latent(z_key, batch)

  keys = jax.random.split(jax.random.PRNGKey(1), BATCHES)
  real, z = jax.jit(jax.vmap(draw), compiler_options=options)(keys)

  def body(carry, i):
    g_params, d_params, vectors, total = jax.lax.optimization_barrier(carry)
    out = gan.losses_and_grads(g_params, d_params, vectors, real[i % BATCHES], z[i % BATCHES])
    leaves = jax.tree.leaves((out.d_grads, out.g_grads, out.d_loss, out.g_loss))
    total = total + sum(jnp.sum(x) for x in leaves)
    return (g_params, d_params, vectors, total), None

  def program(state):
    carry = (state.g_params, state.d_params, state.spectral_state, jnp.zeros((), jnp.float32))
    return jax.lax.scan(body, carry, jnp.arange(steps))[0][-1]

  return jax.jit(program, compiler_options=options)


def compiled(fun: Callable[[Any], Any], state: Any) -> Callable[[], Any]:
  """A call of `fun` on `state`, compiled."""
  program = fun.lower(state).compile()
  return lambda: program(state)


def _against(ratio: float) -> str:
  return f'target >= {TARGET:g}: ' + ('met' if ratio >= TARGET else f'missed by {100 * (1 - ratio / TARGET):.0f}%')


def main() -> None:
  args = _parser().parse_args()
  if args.quick:
    for name, value in QUICK.items():
      setattr(args, name, value)
  check(args)
  started = time.perf_counter()
  options = {'xla_backend_optimization_level': 0} if args.quick else {}
  run = setup(args)
  plain = make(run, run['config'])
  state = jax.jit(plain.init, compiler_options=options)(jax.random.PRNGKey(0))
  names = list(args.regularisers)
  programs = {'train': training(plain, args.steps, options), 'floor': floor(plain, run, args.steps, options)}
  for name in names:
    programs[name] = training(make(run, regularised(run['config'], name)), args.steps, options)
  compiling = time.perf_counter()
  with concurrent.futures.ThreadPoolExecutor(2) as pool:  # XLA compiles outside the GIL
    calls = dict(zip(programs, pool.map(lambda fun: compiled(fun, state), programs.values())))
  compile_seconds = time.perf_counter() - compiling
  for name, call in calls.items():  # every program's result is finite
    out = jax.block_until_ready(call())
    if not all(bool(np.all(np.isfinite(np.asarray(x)))) for x in jax.tree.leaves(out)):
      raise SystemExit(f'{name}: a non-finite result')
  seconds = common.in_turn(calls, args.repeats)
  rate = {name: args.steps / s for name, s in seconds.items()}
  config = run['config']
  print(
    f'machine: {platform.processor() or platform.machine()}, {jax.device_count()} {jax.default_backend()} '
    f'device(s), jax {jax.__version__}; {datetime.date.today().isoformat()}; {compile_seconds:.0f} s compiling, '
    f'{time.perf_counter() - started:.0f} s in all'
  )
  print(
    f'{run["label"]}: {config.method} discriminator, {config.update} updates, {config.loss} loss, batch '
    f'{config.batch_size}; {args.steps} steps per call, median of {args.repeats}'
    + (' (--quick: not a measurement)' if args.quick else '')
  )
  print(f'{"":<40}{"steps/s":>12}{"ms/step":>12}')
  print(f'{"training step":<40}{rate["train"]:>12.2f}{1e3 / rate["train"]:>12.3f}')
  print(f'{"forward and backward alone":<40}{rate["floor"]:>12.2f}{1e3 / rate["floor"]:>12.3f}')
  ratio = rate['train'] / rate['floor']
  print(f'{"floor ratio (training / fwd+bwd)":<40}{ratio:>12.3f}  {_against(ratio)}')
  print(f'{"regulariser (two-half estimator)":<40}{"steps/s":>12}{"ms/step":>12}{"cost / plain":>14}')
  for name in names:
    print(f'{name:<40}{rate[name]:>12.2f}{1e3 / rate[name]:>12.3f}{seconds[name] / seconds["train"]:>14.2f}')


if __name__ == '__main__':
  main()
