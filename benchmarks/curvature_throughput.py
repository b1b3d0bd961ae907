"""Cost of the curvature tools, of DAL and of the supervised trainer, all measured in one run of this script.

    .venv/bin/python benchmarks/curvature_throughput.py [--repeats 9] [--train-steps 20] [--rounds 3]

Every program is jitted and compiled before it is timed; the programs compared in a ratio are timed in turn
(one call of each, `--repeats` or `--rounds` times over) so that load from other jobs on a shared machine hits
them alike, and each figure is the median of its calls, each call waited for with `block_until_ready`.

1. (g, Hg) from `curvature.products.grad_and_hvp` (one linearisation of ∇E, thesis Appendix A.3's Hg) against
   the gradient g alone (target ≤ 2.2×), on an MLP on scikit-learn's digits (64→256→256→10, a batch of 512
   training examples) and on the small CNN (`kind='cnn'`, 28×28×1 inputs, a batch of 128 random images). Also
   timed: the finite-difference (g, Hg) of Appendix A.3 (two gradients) and one HVP `hvp` along a random
   direction. The number of matrix products (`dot`) and convolutions in each compiled program says what the
   linearisation adds.
2. The trainer's `train(state, steps)` (a `lax.scan` of `--train-steps` steps) with DAL (h = 2/‖Hĝ‖, Eq 3.20,
   Hg exact) against plain gradient descent, full batch on the digits training split, the MLP of part 1: steps/s
   of each and the cost of a DAL step over an SGD step (target ≤ 2.5×); also DAL with the finite-difference Hg.
3. The top-k (5) eigenpairs of the Hessian of the full-batch digits loss of a ~100k-parameter MLP
   (64→256→320→10, 102,090 parameters) by `curvature.eigen.top_eigenpairs` (Lanczos with full
   re-orthogonalisation): wall seconds, the HVPs spent (the Krylov depth), the seconds over those of one HVP
   (HVP-equivalents), the Lanczos iteration alone (the same depth on the matvec v ↦ v/2: the re-orthogonalisation
   and bookkeeping), and per eigenvalue the Lanczos residual estimate and the residual ‖Hu − λu‖ computed anew.
4. A learning-rate sweep, 16 rates (geometric, 0.01 to 1) × 3 seeds of full-batch gradient descent on digits (a
   64→64→64→10 MLP, `--sweep-steps` steps): the 48 members vmapped in one program (`jax.vmap` of `init` and
   `train`) against the same 48 runs one after another (one jitted program, compiled once, called per run):
   aggregate steps/s of each.
"""

from __future__ import annotations

import argparse
import collections
import platform
import re
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import common
import jax
import jax.numpy as jnp
import numpy as np

from smoothrl.curvature import eigen, products
from smoothrl.supervised import data, losses, models, trainer

TARGETS = {'grad_and_hvp': 2.2, 'dal': 2.5}  # the most each cost may be, in gradients or SGD steps
MIN_REPEATS = 3  # a median of fewer calls is one noisy call
CNN_SHAPE = (28, 28, 1)


def _widths(text: str) -> tuple[int, ...]:
  try:
    values = tuple(int(w) for w in text.split(','))
  except ValueError:
    raise argparse.ArgumentTypeError(f'{text!r} is not a comma-separated list of widths, as in 256,256') from None
  if not values or min(values) < 1:
    raise argparse.ArgumentTypeError(f'{text!r}: every width must be a positive int')
  return values


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--repeats', type=int, default=9, help='timed calls of each program in parts 1 and 2')
  parser.add_argument('--rounds', type=int, default=3, help='timed calls of each program in parts 3 and 4')
  parser.add_argument('--mlp-widths', type=_widths, default=(256, 256), help='hidden widths, parts 1 and 2')
  parser.add_argument('--mlp-batch', type=int, default=512, help='digits training examples per batch, part 1')
  parser.add_argument('--cnn-channels', type=_widths, default=(32, 64))
  parser.add_argument('--cnn-widths', type=_widths, default=(100, 100), help="the CNN's dense head")
  parser.add_argument('--cnn-batch', type=int, default=128)
  parser.add_argument('--train-steps', type=int, default=20, help='steps per timed `train` call, part 2')
  parser.add_argument('--eigen-widths', type=_widths, default=(256, 320), help='hidden widths, part 3')
  parser.add_argument('--k', type=int, default=5, help='eigenpairs, part 3')
  parser.add_argument('--krylov-depth', type=int, default=0, help='0: eigen.default_krylov_depth(k, n)')
  parser.add_argument('--sweep-widths', type=_widths, default=(64, 64), help='hidden widths, part 4')
  parser.add_argument('--sweep-steps', type=int, default=20, help='steps of each sweep member, part 4')
  parser.add_argument('--learning-rates', type=int, default=16)
  parser.add_argument('--seeds', type=int, default=3)
  return parser


def _mlp_size(inputs: int, widths: Sequence[int], outputs: int) -> int:
  sizes = (inputs, *widths, outputs)
  return sum((a + 1) * b for a, b in zip(sizes, sizes[1:]))


def check_budget(args: argparse.Namespace) -> None:
  """Stops the script, before any work, when a flag leaves nothing to measure."""
  problems = []
  for flag, value in (('--repeats', args.repeats), ('--rounds', args.rounds)):
    if value < MIN_REPEATS:
      problems.append(f'{flag} {value}: a median needs at least {MIN_REPEATS} timed calls of each program')
  for flag, value in (
    ('--train-steps', args.train_steps),
    ('--sweep-steps', args.sweep_steps),
    ('--learning-rates', args.learning_rates),
    ('--seeds', args.seeds),
    ('--cnn-batch', args.cnn_batch),
    ('--mlp-batch', args.mlp_batch),
    ('--k', args.k),
  ):
    if value < 1:
      problems.append(f'{flag} {value}: nothing to time, give at least 1')
  if problems:
    raise SystemExit('; '.join(problems))


def check_sizes(args: argparse.Namespace, num_train: int, inputs: int, outputs: int) -> None:
  """Stops the script, before any work, when the data or the model cannot hold what a flag asks for."""
  problems = []
  if args.mlp_batch > num_train:
    problems.append(f'--mlp-batch {args.mlp_batch}: the digits training split has {num_train} examples')
  n = _mlp_size(inputs, args.eigen_widths, outputs)
  if args.k > n:
    problems.append(f'--k {args.k}: the MLP of --eigen-widths has {n:,} parameters, give at most that')
  elif args.krylov_depth and not args.k <= args.krylov_depth <= n:
    problems.append(f'--krylov-depth {args.krylov_depth}: Lanczos needs k = {args.k} to n = {n:,} HVPs')
  if problems:
    raise SystemExit('; '.join(problems))


def compiled(fun: Callable[..., Any], *args: Any) -> tuple[Callable[[], Any], collections.Counter]:
  """`fun` jitted and compiled for `args`, as a call of no arguments, and a count of its compiled HLO's ops."""
  program = jax.jit(fun).lower(*args).compile()
  ops = collections.Counter(re.findall(r'= \S+ ([a-z][\w-]*)\(', program.as_text()))
  return lambda: program(*args), ops


def num_params(params: Any) -> int:
  return sum(int(np.size(x)) for x in jax.tree.leaves(params))


def _loss(model: models.Model, model_state: Any) -> Callable[[Any, jax.Array, jax.Array], jax.Array]:
  return lambda p, x, y: losses.cross_entropy(model.apply(p, model_state, x, False)[0], y)


def _direction(params: Any, key: jax.Array) -> Any:
  """A standard normal pytree like `params`."""
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(key, len(leaves))
  return jax.tree.unflatten(tree, [jax.random.normal(k, a.shape, a.dtype) for k, a in zip(keys, leaves)])


def product_costs(
  model: models.Model, x: jax.Array, y: jax.Array, repeats: int
) -> tuple[dict[str, float], dict[str, collections.Counter], int]:
  """Median seconds of the gradient, `grad_and_hvp`, `fd_grad_and_hvp` and `hvp` of the batch loss at the initial
  parameters, timed in turn; their compiled programs' op counts; the number of parameters."""
  params, model_state = model.init(jax.random.PRNGKey(0), x[:1])
  loss = _loss(model, model_state)
  v = _direction(params, jax.random.PRNGKey(1))
  programs = {
    'gradient': compiled(jax.grad(loss), params, x, y),
    'grad_and_hvp': compiled(lambda p, x, y: products.grad_and_hvp(loss, p, x, y), params, x, y),
    'fd_grad_and_hvp': compiled(lambda p, x, y: products.fd_grad_and_hvp(loss, p, x, y), params, x, y),
    'hvp': compiled(lambda p, v, x, y: products.hvp(loss, p, v, x, y), params, v, x, y),
  }
  seconds = common.in_turn({name: call for name, (call, _) in programs.items()}, repeats)
  return seconds, {name: ops for name, (_, ops) in programs.items()}, num_params(params)


TRAINER_RUNS: dict[str, trainer.OptimizerConfig] = {
  'sgd': trainer.OptimizerConfig(name='sgd', learning_rate=0.5),
  'dal': trainer.OptimizerConfig(name='dal'),
  'dal, fd curvature': trainer.OptimizerConfig(name='dal', curvature='fd'),
}


def trainer_rates(model: models.Model, dataset: data.Dataset, steps: int, repeats: int) -> dict[str, float]:
  """Steps/s of the trainer's `train(state, steps)` for each optimiser of `TRAINER_RUNS`, full batch, timed in
  turn."""
  calls = {}
  for name, config in TRAINER_RUNS.items():
    tr = trainer.make_trainer(model, dataset, config)
    state = jax.jit(tr.init)(jax.random.PRNGKey(0), config.learning_rate)
    calls[name], _ = compiled(lambda s, tr=tr: tr.train(s, steps), state)
  return {name: steps / seconds for name, seconds in common.in_turn(calls, repeats).items()}


class LanczosCost(NamedTuple):
  """Median seconds of `top_eigenpairs`, of one HVP and of the Lanczos iteration alone (a matvec v ↦ v/2 in place
  of the HVP); the eigenpairs; ‖Hu − λu‖ of each, by one more HVP; the number of parameters."""

  seconds: float
  hvp_seconds: float
  bookkeeping_seconds: float
  pairs: eigen.Eigenpairs
  true_residuals: np.ndarray
  num_params: int


def lanczos_cost(model: models.Model, x: jax.Array, y: jax.Array, k: int, depth: int, rounds: int) -> LanczosCost:
  """`LanczosCost` of `top_eigenpairs` (k pairs, Krylov depth `depth`, 0 for the default) on the loss of (x, y) at
  the initial parameters, the three programs timed in turn."""
  params, model_state = model.init(jax.random.PRNGKey(0), x[:1])
  loss = _loss(model, model_state)
  n = num_params(params)
  depth = depth or eigen.default_krylov_depth(k, n)
  key = jax.random.PRNGKey(2)
  top = lambda p, key, x, y: eigen.top_eigenpairs(loss, p, x, y, k=k, krylov_depth=depth, key=key)
  bookkeeping = lambda key: eigen.lanczos(lambda v: 0.5 * v, jax.random.normal(key, (n,)), depth)
  u = _direction(params, key)
  calls = {
    'lanczos': compiled(top, params, key, x, y)[0],
    'hvp': compiled(lambda p, u, x, y: products.hvp(loss, p, u, x, y), params, u, x, y)[0],
    'bookkeeping': compiled(bookkeeping, key)[0],
  }
  seconds = common.in_turn(calls, rounds)
  pairs = calls['lanczos']()

  def residuals(p, vectors, values, x, y):
    hu = jax.vmap(lambda u: products.hvp(loss, p, u, x, y))(vectors)
    scaled = jax.tree.map(lambda b: values.reshape((-1,) + (1,) * (b.ndim - 1)) * b, vectors)
    return jnp.sqrt(
      sum(jnp.sum(jnp.square(a - b).reshape(k, -1), axis=1) for a, b in zip(*map(jax.tree.leaves, (hu, scaled))))
    )

  true = np.asarray(jax.jit(residuals)(params, pairs.vectors, pairs.values, x, y))
  return LanczosCost(seconds['lanczos'], seconds['hvp'], seconds['bookkeeping'], pairs, true, n)


def sweep_rates(
  model: models.Model, dataset: data.Dataset, learning_rates: np.ndarray, seeds: int, steps: int, rounds: int
) -> tuple[float, float, float]:
  """Aggregate steps/s of a learning-rate × seed sweep of full-batch gradient descent, vmapped in one program and
  run one member after another (one compiled program, called per member), timed in turn; and the largest relative
  difference ‖θ_vmapped − θ_alone‖/‖θ_alone‖ between a member's final parameters in the two."""
  tr = trainer.make_trainer(model, dataset, trainer.OptimizerConfig(name='sgd'))
  rates = jnp.asarray(np.repeat(learning_rates, seeds), jnp.float32)
  keys = jnp.tile(jax.vmap(jax.random.PRNGKey)(jnp.arange(seeds)), (len(learning_rates), 1))
  run = lambda key, rate: tr.train(tr.init(key, rate), steps).params
  vmapped, _ = compiled(jax.vmap(run), keys, rates)
  one = jax.jit(run).lower(keys[0], rates[0]).compile()

  def one_after_another():
    return [jax.block_until_ready(one(key, rate)) for key, rate in zip(keys, rates)]

  seconds = common.in_turn({'vmapped': vmapped, 'sequential': one_after_another}, rounds)
  together, apart = vmapped(), one_after_another()
  gap = max(
    float(products.tree_norm(jax.tree.map(lambda a, b, i=i: a[i] - b, together, p)) / products.tree_norm(p))
    for i, p in enumerate(apart)
  )
  total = len(rates) * steps
  return total / seconds['vmapped'], total / seconds['sequential'], gap


def _arch(inputs: int, widths: Sequence[int], outputs: int) -> str:
  return '-'.join(str(w) for w in (inputs, *widths, outputs))


def _against(ratio: float, target: float) -> str:
  if ratio <= target:
    return f'target <= {target}: met'
  return f'target <= {target}: missed by {100 * (ratio / target - 1):.0f}%'


def main() -> None:
  args = _parser().parse_args()
  check_budget(args)
  digits = data.load(data.DataConfig(name='digits'))
  inputs, outputs = int(np.prod(digits.x_train.shape[1:])), digits.num_outputs
  check_sizes(args, len(digits.x_train), inputs, outputs)
  started = time.perf_counter()
  shape = digits.x_train.shape[1:]
  mlp = models.make_model(models.ModelConfig(kind='mlp', widths=args.mlp_widths), shape, outputs)
  cnn = models.make_model(
    models.ModelConfig(kind='cnn', channels=args.cnn_channels, widths=args.cnn_widths), CNN_SHAPE, 10
  )
  rng = np.random.default_rng(0)
  batches = {
    'MLP': (jnp.asarray(digits.x_train[: args.mlp_batch]), jnp.asarray(digits.y_train[: args.mlp_batch])),
    'CNN': (
      jnp.asarray(rng.random((args.cnn_batch, *CNN_SHAPE), np.float32)),
      jnp.asarray(rng.integers(0, 10, args.cnn_batch), jnp.int32),
    ),
  }
  names = {
    'MLP': f'MLP {_arch(inputs, args.mlp_widths, outputs)}, digits batch {args.mlp_batch}',
    'CNN': f'CNN conv {",".join(map(str, args.cnn_channels))} + {_arch(0, args.cnn_widths, 10)[2:]}, '
    f'28x28x1 batch {args.cnn_batch}',
  }
  costs = {kind: product_costs(model, *batches[kind], args.repeats) for kind, model in (('MLP', mlp), ('CNN', cnn))}
  steps = trainer_rates(mlp, digits, args.train_steps, args.repeats)
  eigen_mlp = models.make_model(models.ModelConfig(kind='mlp', widths=args.eigen_widths), shape, outputs)
  full = jnp.asarray(digits.x_train), jnp.asarray(digits.y_train)
  lanczos = lanczos_cost(eigen_mlp, *full, args.k, args.krylov_depth, args.rounds)
  sweep_mlp = models.make_model(models.ModelConfig(kind='mlp', widths=args.sweep_widths), shape, outputs)
  learning_rates = np.geomspace(0.01, 1.0, args.learning_rates)
  vmapped, sequential, gap = sweep_rates(sweep_mlp, digits, learning_rates, args.seeds, args.sweep_steps, args.rounds)
  members = args.learning_rates * args.seeds
  depth = int(lanczos.pairs.num_matvecs)
  hvp_equivalents = lanczos.seconds / lanczos.hvp_seconds

  print(
    f'machine: {platform.processor() or platform.machine()}, {jax.device_count()} {jax.default_backend()} '
    f'device(s), jax {jax.__version__}; {time.perf_counter() - started:.0f} s compiling and timing'
  )
  print(f'1. (g, Hg) against g, jitted, median of {args.repeats} calls timed in turn')
  print(f'{"":<48}{"params":>9}{"gradient ms":>13}{"grad_and_hvp ms":>17}{"fd (g, Hg) ms":>15}{"hvp ms":>9}')
  for kind, (seconds, _, n) in costs.items():
    ms = {name: 1e3 * s for name, s in seconds.items()}
    print(
      f'{names[kind]:<48}{n:>9,}{ms["gradient"]:>13.2f}{ms["grad_and_hvp"]:>17.2f}'
      f'{ms["fd_grad_and_hvp"]:>15.2f}{ms["hvp"]:>9.2f}'
    )
  for kind, (_, ops, _) in costs.items():
    counts = ', '.join(
      f'{name} {ops[name]["dot"]} dot, {ops[name]["convolution"]} conv' for name in ('gradient', 'grad_and_hvp')
    )
    print(f'   compiled {kind}: {counts}')
  print(
    f'2. trainer.train, full batch digits ({len(digits.x_train):,} examples), {names["MLP"].split(",")[0]}, '
    f'{args.train_steps} steps per call, median of {args.repeats} calls timed in turn'
  )
  for name, rate in steps.items():
    print(f'{"trainer steps/s, " + name:<48}{rate:>12.1f}')
  print(
    f'3. top-{args.k} Lanczos eigenpairs of the full-batch digits Hessian, MLP '
    f'{_arch(inputs, args.eigen_widths, outputs)} ({lanczos.num_params:,} parameters), median of {args.rounds}'
  )
  print(f'{"Lanczos wall seconds":<48}{lanczos.seconds:>12.3f}')
  print(f'{"Lanczos HVPs (Krylov depth)":<48}{depth:>12d}')
  print(f'{"one HVP, ms":<48}{1e3 * lanczos.hvp_seconds:>12.2f}')
  print(f'{"Lanczos in HVP-equivalents (s / s of one HVP)":<48}{hvp_equivalents:>12.1f}')
  print(f'{"Lanczos iteration alone (matvec v/2), seconds":<48}{lanczos.bookkeeping_seconds:>12.3f}')
  print(f'{"":<6}{"eigenvalue":>14}{"residual estimate":>20}{"|Hu - lambda u|":>18}')
  for i, (value, estimate, true) in enumerate(
    zip(np.asarray(lanczos.pairs.values), np.asarray(lanczos.pairs.residuals), lanczos.true_residuals)
  ):
    print(f'{"lambda_" + str(i):<6}{value:>14.5g}{estimate:>20.3g}{true:>18.3g}')
  print(
    f'4. sweep of {args.learning_rates} learning rates x {args.seeds} seeds, full-batch gradient descent on digits, '
    f'MLP {_arch(inputs, args.sweep_widths, outputs)}, {args.sweep_steps} steps each, median of {args.rounds}'
  )
  print(f'{f"sweep, {members} members vmapped, aggregate steps/s":<48}{vmapped:>12.1f}')
  print(f'{f"sweep, {members} runs one after another, steps/s":<48}{sequential:>12.1f}')
  print(f'{"sweep, largest relative parameter difference":<48}{gap:>12.2g}')
  print('ratios, each measured in this run')
  for kind, (seconds, _, _) in costs.items():
    ratio = seconds['grad_and_hvp'] / seconds['gradient']
    print(f'{f"grad_and_hvp / gradient, {kind}":<48}{ratio:>12.2f}  {_against(ratio, TARGETS["grad_and_hvp"])}')
    print(f'{f"fd (g, Hg) / gradient, {kind}":<48}{seconds["fd_grad_and_hvp"] / seconds["gradient"]:>12.2f}')
    print(f'{f"hvp / gradient, {kind}":<48}{seconds["hvp"] / seconds["gradient"]:>12.2f}')
  ratio = steps['sgd'] / steps['dal']
  print(f'{"DAL step / SGD step":<48}{ratio:>12.2f}  {_against(ratio, TARGETS["dal"])}')
  print(f'{"DAL step (fd curvature) / SGD step":<48}{steps["sgd"] / steps["dal, fd curvature"]:>12.2f}')
  print(f'{"Lanczos HVP-equivalents / HVPs":<48}{hvp_equivalents / depth:>12.2f}')
  print(f'{"Lanczos iteration alone / Lanczos":<48}{lanczos.bookkeeping_seconds / lanczos.seconds:>12.2f}')
  print(f'{"sweep, vmapped / one after another":<48}{vmapped / sequential:>12.2f}')


if __name__ == '__main__':
  main()
