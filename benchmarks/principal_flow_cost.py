"""Cost and accuracy of the matrix-free principal-flow vector field (thesis Eq 3.9), measured in one run.

    .venv/bin/python benchmarks/principal_flow_cost.py [--quick] [--krylov-depth 20] [--repeats 9]

Every program is jitted and compiled before it is timed; the programs compared in a ratio are timed in turn (one
call of each, `--repeats` times over) so that load from other jobs hits them alike, and each figure is the median
of its calls, each waited for with `block_until_ready`.

1. Cost in HVP-equivalents: one evaluation of `fields.principal(..., method='lanczos', krylov_depth=k)`, θ̇ =
   φ(hH)g by k Lanczos steps on HVPs, over one Hessian-vector product (`curvature.products.hvp`, along a random
   direction), on a tanh MLP (784→128→10 by default, 101,770 parameters) with softmax cross-entropy on a synthetic
   batch; target ≤ 1.2 k. h puts hλ_0 at 1.5 (λ_0 by power iteration on the HVP), so θ̇ is complex. Also
   the gradient alone, and the gap between the field at depth k and at depth 2k (relative), a self-check where no
   dense reference fits (not with --quick).
2. Dense against matrix-free on a model whose dense Hessian fits (a tanh MLP 16→32→16→1, 1,089 parameters,
   squared error on a synthetic batch, hλ_0 = 1.5): the time of the dense field (D HVPs and an eigendecomposition)
   and of the Lanczos field at several depths, and the relative difference ‖θ̇_lanczos − θ̇_dense‖/‖θ̇_dense‖.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable, Sequence
from typing import Any

import common
import jax
import jax.numpy as jnp
import numpy as np

from smoothrl.curvature import products
from smoothrl.flows import fields

TARGET = 1.2  # the most one PF evaluation may cost, in HVPs per Lanczos step
MIN_REPEATS = 3
H_LAMBDA_0 = 1.5  # hλ_0: the complex-stable regime of Section 3.3.1


def _ints(text: str) -> tuple[int, ...]:
  try:
    values = tuple(int(w) for w in text.split(','))
  except ValueError:
    raise argparse.ArgumentTypeError(f'{text!r} is not a comma-separated list of ints, as in 128,64') from None
  if not values or min(values) < 1:
    raise argparse.ArgumentTypeError(f'{text!r}: every value must be a positive int')
  return values


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--quick', action='store_true', help='tiny models and depths: a check that the script runs')
  parser.add_argument('--repeats', type=int, default=9, help='timed calls of each program')
  parser.add_argument('--krylov-depth', type=int, default=20, help='Lanczos steps k of part 1')
  parser.add_argument('--inputs', type=int, default=784, help='inputs of the MLP of part 1')
  parser.add_argument('--widths', type=_ints, default=(128,), help='hidden widths of the MLP of part 1')
  parser.add_argument('--classes', type=int, default=10, help='outputs of the MLP of part 1')
  parser.add_argument('--batch', type=int, default=256, help='synthetic examples in part 1')
  parser.add_argument('--dense-inputs', type=int, default=16, help='inputs of the MLP of part 2')
  parser.add_argument('--dense-widths', type=_ints, default=(32, 16), help='hidden widths of the MLP of part 2')
  parser.add_argument('--dense-batch', type=int, default=128, help='synthetic examples in part 2')
  parser.add_argument('--depths', type=_ints, default=(10, 20, 40, 80), help='Lanczos depths of part 2')
  parser.add_argument('--x64', action='store_true', help='float64 throughout (default float32)')
  return parser


QUICK = {
  'repeats': 3,
  'krylov_depth': 4,
  'inputs': 8,
  'widths': (8,),
  'classes': 3,
  'batch': 8,
  'dense_inputs': 3,
  'dense_widths': (4,),
  'dense_batch': 8,
  'depths': (8,),
}
POWER_STEPS = 30  # power iterations on the compiled HVP for λ_0 in part 1


def mlp_size(inputs: int, widths: Sequence[int], outputs: int) -> int:
  sizes = (inputs, *widths, outputs)
  return sum((a + 1) * b for a, b in zip(sizes, sizes[1:]))


def check(args: argparse.Namespace) -> None:
  """Stops the script, before any work, when a flag leaves nothing to measure or asks for more than the model."""
  problems = []
  if args.repeats < MIN_REPEATS:
    problems.append(f'--repeats {args.repeats}: a median needs at least {MIN_REPEATS} timed calls of each program')
  n = mlp_size(args.inputs, args.widths, args.classes)
  if not 1 <= args.krylov_depth <= n // 2:
    problems.append(f'--krylov-depth {args.krylov_depth}: give 1 to {n // 2} (part 1 also runs depth 2k <= D = {n})')
  dense = mlp_size(args.dense_inputs, args.dense_widths, 1)
  if max(args.depths) > dense:
    problems.append(f'--depths {max(args.depths)}: the MLP of part 2 has D = {dense} parameters, give at most that')
  for flag, value in (('--batch', args.batch), ('--dense-batch', args.dense_batch), ('--classes', args.classes)):
    if value < 1:
      problems.append(f'{flag} {value}: give at least 1')
  if problems:
    raise SystemExit('; '.join(problems))


def compiled(fun: Callable[..., Any], *args: Any) -> Callable[[], Any]:
  program = jax.jit(fun).lower(*args).compile()
  return lambda: program(*args)


def init_mlp(seed: int, sizes: Sequence[int], dtype: Any) -> list[dict[str, jax.Array]]:
  """Normal weights of variance 1/fan-in and zero biases (drawn by numpy: nothing to compile)."""
  rng = np.random.default_rng(seed)
  return [
    {'w': jnp.asarray(rng.normal(size=(a, b)) / np.sqrt(a), dtype), 'b': jnp.zeros(b, dtype)}
    for a, b in zip(sizes, sizes[1:])
  ]


def forward(params: list[dict[str, jax.Array]], x: jax.Array) -> jax.Array:
  for layer in params[:-1]:
    x = jnp.tanh(x @ layer['w'] + layer['b'])
  return x @ params[-1]['w'] + params[-1]['b']


def cross_entropy(params: list[dict[str, jax.Array]], x: jax.Array, labels: jax.Array) -> jax.Array:
  logits = forward(params, x)
  return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1))


def squared_error(params: list[dict[str, jax.Array]], x: jax.Array, y: jax.Array) -> jax.Array:
  return 0.5 * jnp.mean((forward(params, x)[:, 0] - y) ** 2)


def relative(a: Any, b: Any) -> float:
  """‖a − b‖/‖b‖ over two pytrees, in numpy."""
  a, b = (np.concatenate([np.ravel(np.asarray(x)) for x in jax.tree.leaves(t)]) for t in (a, b))
  return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def num_params(params: Any) -> int:
  return sum(int(np.size(x)) for x in jax.tree.leaves(params))


def power_iteration(matvec: Callable[[Any], Any], v: Any) -> float:
  """The Rayleigh quotient after `POWER_STEPS` power iterations from v: the eigenvalue of largest |λ| (λ_0 for
  the nearly positive semi-definite Hessian of cross-entropy at initialisation)."""
  normalise = jax.jit(lambda v: products.tree_scale(1 / products.tree_norm(v), v))
  rayleigh = jax.jit(products.tree_vdot)
  for _ in range(POWER_STEPS):
    v = normalise(v)
    hv = matvec(v)
    value, v = rayleigh(v, hv), hv
  return float(value)


def hvp_cost(args: argparse.Namespace, dtype: Any) -> dict[str, Any]:
  """Part 1: seconds of the gradient, one HVP and one Lanczos PF field (depth k); the depth-k vs 2k gap."""
  rng = np.random.default_rng(0)
  sizes = (args.inputs, *args.widths, args.classes)
  params = init_mlp(0, sizes, dtype)
  x = jnp.asarray(rng.normal(size=(args.batch, args.inputs)), dtype)
  labels = jnp.asarray(rng.integers(0, args.classes, args.batch), jnp.int32)
  v = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), dtype), params)
  hvp = jax.jit(lambda p, v, x, y: products.hvp(cross_entropy, p, v, x, y)).lower(params, v, x, labels).compile()
  lambda_0 = power_iteration(lambda u: hvp(params, u, x, labels), v)
  h = H_LAMBDA_0 / lambda_0
  k = args.krylov_depth
  pf = lambda depth: fields.principal(cross_entropy, h, method='lanczos', krylov_depth=depth)
  calls = {
    'gradient': compiled(jax.grad(cross_entropy), params, x, labels),
    'hvp': lambda: hvp(params, v, x, labels),
    'pf': compiled(pf(k), params, x, labels),
  }
  seconds = common.in_turn(calls, args.repeats)
  gap = None if args.quick else relative(calls['pf'](), compiled(pf(2 * k), params, x, labels)())
  return {'seconds': seconds, 'n': num_params(params), 'lambda_0': lambda_0, 'h': h, 'gap': gap, 'sizes': sizes}


def dense_against_lanczos(args: argparse.Namespace, dtype: Any) -> dict[str, Any]:
  """Part 2: seconds of the dense PF field and of the Lanczos one at each depth; their relative differences."""
  rng = np.random.default_rng(1)
  sizes = (args.dense_inputs, *args.dense_widths, 1)
  params = init_mlp(2, sizes, dtype)
  x = jnp.asarray(rng.normal(size=(args.dense_batch, args.dense_inputs)), dtype)
  y = jnp.asarray(np.sin(rng.normal(size=args.dense_batch)), dtype)
  spectrum = jax.jit(lambda p, x, y: fields.dense_spectrum(squared_error, p, x, y))(params, x, y)
  lambda_0 = float(spectrum.values[0])
  h = H_LAMBDA_0 / lambda_0
  calls = {'dense': compiled(fields.principal(squared_error, h), params, x, y)}
  for depth in args.depths:
    field = fields.principal(squared_error, h, method='lanczos', krylov_depth=depth)
    calls[f'lanczos {depth}'] = compiled(field, params, x, y)
  seconds = common.in_turn(calls, args.repeats)
  dense = calls['dense']()
  gaps = {depth: relative(calls[f'lanczos {depth}'](), dense) for depth in args.depths}
  return {'seconds': seconds, 'gaps': gaps, 'n': num_params(params), 'lambda_0': lambda_0, 'h': h, 'sizes': sizes}


def _arch(sizes: Sequence[int]) -> str:
  return '-'.join(map(str, sizes))


def _against(ratio: float, target: float) -> str:
  if ratio <= target:
    return f'target <= {target:g}: met'
  return f'target <= {target:g}: missed by {100 * (ratio / target - 1):.0f}%'


def main() -> None:
  args = _parser().parse_args()
  if args.quick:
    for name, value in QUICK.items():
      setattr(args, name, value)
  check(args)
  if args.x64:
    jax.config.update('jax_enable_x64', True)
  dtype = jnp.float64 if args.x64 else jnp.float32
  started = time.perf_counter()
  cost = hvp_cost(args, dtype)
  dense = dense_against_lanczos(args, dtype)
  k = args.krylov_depth
  s = cost['seconds']
  print(
    f'machine: {platform.processor() or platform.machine()}, {jax.device_count()} {jax.default_backend()} '
    f'device(s), jax {jax.__version__}, {np.dtype(dtype).name}; {time.perf_counter() - started:.0f} s compiling '
    'and timing'
  )
  print(
    f'1. PF vector field by Lanczos (depth k = {k}) against one HVP: tanh MLP {_arch(cost["sizes"])} '
    f'({cost["n"]:,} parameters), softmax cross-entropy, synthetic batch {args.batch}, hλ_0 = 1.5, median of '
    f'{args.repeats}'
  )
  print(f'{"lambda_0, h":<48}{cost["lambda_0"]:>12.4g}{cost["h"]:>12.4g}')
  print(f'{"gradient, ms":<48}{1e3 * s["gradient"]:>12.3f}')
  print(f'{"one HVP, ms":<48}{1e3 * s["hvp"]:>12.3f}')
  print(f'{"one PF field evaluation, ms":<48}{1e3 * s["pf"]:>12.3f}')
  ratio = s['pf'] / s['hvp']
  print(f'{"PF field in HVP-equivalents":<48}{ratio:>12.2f}  {_against(ratio, TARGET * k)} ({TARGET:g} k)')
  print(f'{"PF field HVP-equivalents per Lanczos step":<48}{ratio / k:>12.3f}')
  gap = 'not run with --quick' if cost['gap'] is None else f'{cost["gap"]:>12.3g}'
  print(f'{f"relative gap, depth {k} vs depth {2 * k}":<48}{gap}')
  print(
    f'2. dense against Lanczos PF: tanh MLP {_arch(dense["sizes"])} ({dense["n"]:,} parameters), squared error, '
    f'synthetic batch {args.dense_batch}, hλ_0 = 1.5 (λ_0 {dense["lambda_0"]:.4g}), median of {args.repeats}'
  )
  print(f'{"":<24}{"ms":>12}{"dense / this":>14}{"rel. difference":>18}')
  ds = dense['seconds']
  print(f'{"dense (eigh of H)":<24}{1e3 * ds["dense"]:>12.3f}{1.0:>14.2f}{0.0:>18.3g}')
  for depth in args.depths:
    t = ds[f'lanczos {depth}']
    print(f'{f"lanczos, depth {depth}":<24}{1e3 * t:>12.3f}{ds["dense"] / t:>14.2f}{dense["gaps"][depth]:>18.3g}')


if __name__ == '__main__':
  main()
