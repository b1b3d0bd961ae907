"""One GD step's worth (time h) of a flow on a ~11k-parameter tanh MLP: adaptive diffrax against the thesis' Euler.

    .venv/bin/python benchmarks/flow_integration.py [--flows ngf,igr,pf] [--h 0.1] [--repeats 3]

The thesis integrates its flows with explicit Euler at dt = 5e-5 (Appendix A.3: 2,000 field evaluations per GD
step of h = 0.1). Here each flow (`smoothrl.flows.fields`: the NGF, the IGR flow and the principal flow by
Lanczos, `--pf-method`, since a dense 11k × 11k Hessian per evaluation is out of reach) is integrated for time h
from the same start, on one synthetic regression batch (MLP 16 → 96 → 96 → 1, tanh, squared error; the tanh
network is holomorphic, as the complex PF state needs), by

- `integrate` (diffrax Tsit5, PID controller, `--rtol` 1e-6, `--atol`), and
- `euler` (dt = `--dt`, 5e-5),

both in `--dtype` (float32 by default) and jitted, each timed as the median of `--repeats` calls after its
compilation (the two methods timed in turn, so that load on a shared machine hits them alike). The reference is
diffrax at rtol 1e-10, atol 1e-12 in float64. Reported per method: wall seconds, solver steps, field evaluations
(counted by a host callback in one extra, untimed run; `--no-count` skips it), the error ‖θ − θ_ref‖ and the same
relative to the displacement ‖θ_ref − θ_0‖; then the Euler / diffrax wall-time ratio per flow.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from smoothrl.flows import fields, holomorphic
from smoothrl.flows import integrate as it

FLOWS = ('ngf', 'igr', 'pf')
REFERENCE = (1e-10, 1e-12)  # rtol, atol of the float64 reference
MAX_STEPS = 1 << 16


def _ints(text: str) -> tuple[int, ...]:
  try:
    values = tuple(int(w) for w in text.split(','))
  except ValueError:
    raise argparse.ArgumentTypeError(f'{text!r} is not a comma-separated list of ints, as in 96,96') from None
  if not values or min(values) < 1:
    raise argparse.ArgumentTypeError(f'{text!r}: every width must be a positive int')
  return values


def _flows(text: str) -> tuple[str, ...]:
  names = tuple(text.split(','))
  unknown = [n for n in names if n not in fields.FLOWS]
  if unknown or not names:
    raise argparse.ArgumentTypeError(f'{text!r}: the flows are {tuple(fields.FLOWS)}')
  return names


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--flows', type=_flows, default=FLOWS, help='comma-separated, from fields.FLOWS')
  parser.add_argument('--widths', type=_ints, default=(96, 96), help='hidden widths of the MLP')
  parser.add_argument('--inputs', type=int, default=16)
  parser.add_argument('--batch', type=int, default=256)
  parser.add_argument('--h', type=float, default=0.1, help='the learning rate: each flow runs for time h')
  parser.add_argument('--rtol', type=float, default=1e-6)
  parser.add_argument('--atol', type=float, default=1e-8)
  parser.add_argument('--dt', type=float, default=it.EULER_DT, help='the Euler step')
  parser.add_argument('--pf-method', choices=fields.METHODS, default='lanczos')
  parser.add_argument('--krylov-depth', type=int, default=20, help="the PF's HVPs per evaluation (lanczos)")
  parser.add_argument('--dtype', choices=('float32', 'float64'), default='float32')
  parser.add_argument('--repeats', type=int, default=3, help='timed calls of each program')
  parser.add_argument('--no-count', action='store_true', help='skip the run that counts field evaluations')
  parser.add_argument('--seed', type=int, default=0)
  return parser


def _problems(args: argparse.Namespace) -> list[str]:
  out = []
  if args.repeats < 1:
    out.append(f'--repeats {args.repeats}: at least one timed call')
  for flag, value in (('--h', args.h), ('--dt', args.dt), ('--rtol', args.rtol), ('--atol', args.atol)):
    if not value > 0:
      out.append(f'{flag} {value}: must be positive')
  if args.h > 0 and args.dt > args.h:
    out.append(f'--dt {args.dt}: larger than --h {args.h}, a single Euler step')
  return out


def mlp_init(rng: np.random.Generator, sizes: Sequence[int]) -> list[dict[str, np.ndarray]]:
  """LeCun-normal weights and zero biases for the layer sizes (inputs, hidden…, outputs), in float64 numpy."""
  return [{'w': rng.normal(size=(a, b)) / np.sqrt(a), 'b': np.zeros(b)} for a, b in zip(sizes[:-1], sizes[1:])]


def mlp_loss(params: list[dict[str, jax.Array]], x: jax.Array, y: jax.Array) -> jax.Array:
  """½ mean squared error of a tanh MLP: holomorphic in the parameters (no |·|, no piecewise activations)."""
  for layer in params[:-1]:
    x = jnp.tanh(x @ layer['w'] + layer['b'])
  out = x @ params[-1]['w'] + params[-1]['b']
  return 0.5 * jnp.mean((out[:, 0] - y) ** 2)


def _batch(rng: np.random.Generator, inputs: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
  """Gaussian inputs and targets sin(2xᵀv/√inputs) for a random direction v."""
  x = rng.normal(size=(batch, inputs))
  return x, np.sin(x @ rng.normal(size=inputs) / np.sqrt(inputs) * 2)


def _cast(tree: Any, dtype: Any) -> Any:
  return jax.tree.map(lambda a: jnp.asarray(a, dtype), tree)


def _timed(call: Callable[[], Any]) -> float:
  start = time.perf_counter()
  jax.block_until_ready(call())
  return time.perf_counter() - start


def _counted(field: Callable[..., Any]) -> tuple[Callable[..., Any], list[int]]:
  """The field with a host callback counting its evaluations (for one untimed run)."""
  count = [0]

  def bump(_: Any) -> None:
    count[0] += 1

  def wrapped(params: Any, *args: Any) -> Any:
    out = field(params, *args)
    jax.debug.callback(bump, jax.tree.leaves(out)[0].ravel()[0], ordered=False)
    return out

  return wrapped, count


def _field(name: str, h: float, args: argparse.Namespace) -> Callable[..., Any]:
  options = {'method': args.pf_method, 'krylov_depth': args.krylov_depth} if name in ('pf', 'pf+third') else {}
  return fields.make(name, mlp_loss, h, **options)


def _methods(field: Callable[..., Any], h: float, args: argparse.Namespace) -> dict[str, Callable[..., Any]]:
  """Each method as `(params, x, y, tolerance) -> (θ(h), solver steps)`, unjitted (the caller jits); the
  tolerance (rtol, atol) is traced, so the float64 reference of diffrax shares its program when the dtypes match."""

  def adaptive(p, x, y, tolerance):
    rtol, atol = tolerance
    traj = it.integrate(field, p, h, x, y, rtol=rtol, atol=atol, holomorphic=True, max_steps=MAX_STEPS)
    return jax.tree.map(lambda a: a[-1], traj.ys), traj.num_steps

  def small_steps(p, x, y, tolerance):
    traj = it.euler(field, p, h, x, y, dt=args.dt, holomorphic=True)
    return jax.tree.map(lambda a: a[-1], traj.ys), traj.num_steps

  return {'diffrax': adaptive, 'euler': small_steps}


def _flat(tree: Any) -> np.ndarray:
  """One complex128 numpy vector of the leaves (complex for the PF's state)."""
  return np.concatenate([np.asarray(a).astype(np.complex128).ravel() for a in jax.tree.leaves(tree)])


def main(argv: Sequence[str] | None = None) -> int:
  args = _parser().parse_args(argv)
  problems = _problems(args)
  if problems:
    print('\n'.join(problems), file=sys.stderr)
    return 1
  with jax.enable_x64(True):  # float64 for the reference; the timed runs keep --dtype throughout
    return _measure(args)


def _measure(args: argparse.Namespace) -> int:
  dtype = jnp.float32 if args.dtype == 'float32' else jnp.float64
  rng = np.random.default_rng(args.seed)
  params64 = _cast(mlp_init(rng, (args.inputs, *args.widths, 1)), jnp.float64)
  batch64 = _cast(_batch(rng, args.inputs, args.batch), jnp.float64)
  size = sum(a.size for a in jax.tree.leaves(params64))
  print(f'machine: {platform.node()}, {jax.devices()[0].device_kind}, jax {jax.__version__}')
  print(
    f'MLP {args.inputs}-{"-".join(map(str, args.widths))}-1 tanh, {size:,} parameters, batch {args.batch}, '
    f'h = {args.h}, {args.dtype}; diffrax Tsit5 rtol {args.rtol:g} atol {args.atol:g}; Euler dt {args.dt:g} '
    f'({int(round(args.h / args.dt)):,} steps); PF by {args.pf_method}'
    + (f' (depth {args.krylov_depth})' if args.pf_method == 'lanczos' else '')
  )
  params, batch = _cast(params64, dtype), _cast(batch64, dtype)
  tolerance = (jnp.asarray(args.rtol, dtype), jnp.asarray(args.atol, dtype))
  if any(name.startswith('pf') for name in args.flows):
    holomorphic.check_holomorphic(mlp_loss, params, *batch)  # the principal flows' state is complex
  print(f'{"flow":8s} {"method":8s} {"wall s":>9s} {"steps":>7s} {"evals":>7s} {"error":>10s} {"rel. error":>10s}')
  ratios = {}
  start = _flat(params64)
  for name in args.flows:
    field = _field(name, args.h, args)
    programs = {m: jax.jit(f) for m, f in _methods(field, args.h, args).items()}
    reference_tolerance = tuple(jnp.asarray(v, jnp.float64) for v in REFERENCE)
    reference = _flat(programs['diffrax'](params64, *batch64, reference_tolerance)[0])
    displacement = np.linalg.norm(reference - start)
    results = {m: jax.block_until_ready(p(params, *batch, tolerance)) for m, p in programs.items()}  # compiles
    times: dict[str, list[float]] = {m: [] for m in programs}
    for _ in range(args.repeats):
      for m, program in programs.items():
        times[m].append(_timed(lambda program=program: program(params, *batch, tolerance)))
    evaluations = {}
    if not args.no_count:
      counted, count = _counted(field)
      for m, f in _methods(counted, args.h, args).items():
        count[0] = 0
        jax.block_until_ready(jax.jit(f)(params, *batch, tolerance))
        jax.effects_barrier()
        evaluations[m] = count[0]
    wall = {m: statistics.median(t) for m, t in times.items()}
    for m, (end, steps) in results.items():
      error = np.linalg.norm(_flat(end) - reference)
      evals = f'{evaluations[m]:>7,}' if m in evaluations else f'{"-":>7s}'
      print(f'{name:8s} {m:8s} {wall[m]:9.4f} {int(steps):>7,} {evals} {error:10.3e} {error / displacement:10.3e}')
    ratios[name] = wall['euler'] / wall['diffrax']
  print(f'reference: diffrax Tsit5 rtol {REFERENCE[0]:g} atol {REFERENCE[1]:g}, float64')
  for name, ratio in ratios.items():
    print(f'euler / diffrax wall time, {name}: {ratio:.2f}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
