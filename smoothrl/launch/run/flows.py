"""The flow run kind: gradient descent against its continuous-time models (thesis Chapter 3), through the recorder.

A run (`FlowConfig`) takes one problem, one learning rate h and a number of iterations N; it runs gradient descent
θ_n = θ_{n−1} − h∇E(θ_{n−1}) (Eq 3.1) and, from the same θ_0, each flow asked for ('ngf', 'igr', 'third', 'pf',
'pf+third': Eqs 3.2, 3.3, 3.4, 3.9, 3.11, `smoothrl.flows.fields`), and writes, per iteration n = 0..N, one `eval`
record: the losses E(θ_n) of GD and Re E(θ_flow(nh)) of each flow, the global error ‖θ_flow(nh; θ_0) − θ_n‖
(Figures 3.9, A.7), the per-iteration error ‖θ_flow(h; θ_{n−1}) − θ_n‖ (Figure 3.4), ‖Im θ_flow(nh)‖, and λ_0 of
the Hessian at θ_n. `trajectories.npz` (plain arrays, no pickle) holds the GD iterates and, per flow, its path
sampled `integrator.samples` times per step, θ_flow(nh) and θ_flow(h; θ_{n−1}), real and imaginary parts apart.

Problems: the toys of `smoothrl.flows.problems` ('quadratic', 'shifted_square', 'square', 'rosenbrock', 'cos') and
two networks built with `smoothrl.supervised`: 'mlp' (Figure 3.9: an MLP 2 → width → 1, tanh, on `num_points`
points x ~ N(0, I₂) with targets y ~ N(0, 1), mean squared error) and 'breast_cancer' (Figure A.7: an MLP 30 →
width → 1, tanh, on the standardised UCI breast-cancer training split, binary cross-entropy with logits). Both
losses are holomorphic (tanh, squares, softplus), so the principal flow can go complex on them.

The principal flows are complex once some hλ_i > 1 (Section 3.3): `complex=True` integrates them in complex space
(their loss checked holomorphic before any work, `holomorphic.check_holomorphic`); `complex=False` integrates the
real part of their field in real space, which is the PF itself while every hλ_i < 1 along the path and otherwise
the ablation that drops the imaginary part the thesis says is needed. `integrator.method`: 'diffrax' (adaptive,
`integrate.integrate`), 'euler' (the thesis' small fixed step, `integrate.euler`) or 'closed_form' (the exact
flows of a quadratic, `problems.quadratic_solution`; the only one at hλ_i = 1, where the PF's field is infinite).

One compiled solve of time h serves every run of a process with the same problem structure and flow: h is an
argument of it, not a constant, and the global path is the chain θ_flow(nh) = θ_flow(h; θ_flow((n−1)h)) of the
autonomous flow, so the global and per-iteration errors share that program. Runs are short; they keep no
checkpoint, and a stopped run starts again (a finished one is skipped on resume).
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from smoothrl.curvature import eigen
from smoothrl.flows import coefficients, fields, holomorphic, integrate, problems
from smoothrl.launch.run import config as config_lib
from smoothrl.launch.run import recorder as recorder_lib
from smoothrl.launch.run.files import atomic_file
from smoothrl.launch.run.kind import RunKind, TrainOptions
from smoothrl.launch.run.progress import Progress
from smoothrl.supervised import data, losses, models

KIND_NAME = 'flow'
TRAJECTORIES_FILE = 'trajectories.npz'
MAX_SEED = 2**32 - 1
NETWORKS: tuple[str, ...] = ('mlp', 'breast_cancer')
PROBLEMS: tuple[str, ...] = (*problems.TOYS, *NETWORKS)
QUADRATICS: tuple[str, ...] = ('quadratic', 'shifted_square', 'square')  # those with a closed form
FLOWS: tuple[str, ...] = tuple(fields.FLOWS)
COMPLEX_FLOWS: tuple[str, ...] = ('pf', 'pf+third')
INTEGRATORS: tuple[str, ...] = ('diffrax', 'euler', 'closed_form')
PF_BRANCHES: tuple[str, ...] = ('continued', 'principal')
NETWORK_LOSSES: tuple[str, ...] = ('mse', 'bce')
DEFAULT_LOSS = {'mlp': 'mse', 'breast_cancer': 'bce'}
DENSE_LAMBDA_LIMIT = 4096  # λ_0 from the dense Hessian up to this many parameters, by Lanczos beyond
SCORE = 'global_error_pf'


@dataclasses.dataclass(frozen=True)
class ProblemConfig:
  """The loss E and the start θ_0.

  Attributes:
    name: one of `PROBLEMS`.
    start: θ_0 of a toy (empty: its figure's, `problems.TOYS`); the networks start at their initialisation from
      the run's seed.
    matrix: A of 'quadratic', row-major D × D, symmetric (empty: diag(1, 0.01) of Figures 3.2, 3.7).
    linear: b of 'quadratic' (empty: 0).
    centre: c of 'square' and 'shifted_square' (None: 0 and 0.6).
    rosenbrock: (a, b) of 'rosenbrock'.
    width: the hidden units of the networks.
    num_points: 'mlp': the Gaussian points; 'breast_cancer': the training examples kept (0: the whole split).
    loss: the networks' loss, 'mse' (mean of (f − y)²) or 'bce' (binary cross-entropy with logits); empty: 'mse'
      for 'mlp', 'bce' for 'breast_cancer'.
  """

  name: str = 'quadratic'
  start: tuple[float, ...] = ()
  matrix: tuple[float, ...] = ()
  linear: tuple[float, ...] = ()
  centre: float | None = None
  rosenbrock: tuple[float, ...] = (1.0, 100.0)
  width: int = 10
  num_points: int = 5
  loss: str = ''


@dataclasses.dataclass(frozen=True)
class IntegratorConfig:
  """How the flows are integrated over each step of time h.

  Attributes:
    method: 'diffrax', 'euler' or 'closed_form' (quadratics only).
    solver: diffrax's solver ('tsit5', 'dopri5', 'dopri8').
    rtol, atol: diffrax's tolerances.
    max_steps: diffrax's most steps per solve of time h.
    dt: the Euler step (the thesis' 5e-5, Appendix A.3).
    samples: points of the saved path per step of time h (the figures' curves).
  """

  method: str = 'diffrax'
  solver: str = 'tsit5'
  rtol: float = 1e-9
  atol: float = 1e-11
  max_steps: int = integrate.MAX_STEPS
  dt: float = integrate.EULER_DT
  samples: int = 16


@dataclasses.dataclass(frozen=True)
class FlowConfig(config_lib.JsonConfig):
  """One flow run.

  Attributes:
    seed: the networks' data and initialisation (the toys do not use it).
    out: the run directory.
    h: the learning rate.
    steps: the GD iterations N; every flow runs for time Nh.
    flows: the flows set against GD, from `FLOWS`.
    complex: integrate the principal flows in complex space (else the real part of their field, in real space).
    pf_method: the principal flows' φ(hH)g, 'dense' or 'lanczos' (`fields.principal`).
    pf_branch: the branch of log(1 − hλ) at complex hλ: 'continued' (`alpha_pf_continued`, the cut on
      Re hλ = 1) or 'principal' (`fields.principal`, the cut on the ray hλ > 1).
    krylov_depth: 'lanczos''s depth (0: `fields`' default, min(D, 30)).
    x64: run in float64 (the errors of Figure 3.7 are ~1e-6 or below only there).
  """

  seed: int = 0
  out: str = 'runs/flow'
  h: float = 0.9
  steps: int = 10
  flows: tuple[str, ...] = ('ngf', 'igr', 'pf')
  complex: bool = True
  pf_method: str = 'dense'
  pf_branch: str = 'continued'
  krylov_depth: int = 0
  x64: bool = True
  problem: ProblemConfig = ProblemConfig()
  integrator: IntegratorConfig = IntegratorConfig()


PRESETS: dict[str, dict[str, Any]] = {
  # Figure 3.7 (b): E = θᵀAθ, A = diag(1, 0.01), h = 0.9: GD oscillates along u_0 and the complex PF follows it.
  'quadratic-oscillating': {'problem.name': 'quadratic', 'h': 0.9, 'steps': 10},
  # Figure 3.8 (b): the banana function at h = 0.0017 (λ_0 just above 2/h at the start).
  'banana': {'problem.name': 'rosenbrock', 'h': 0.0017, 'steps': 20, 'flows': ('ngf', 'igr', 'pf', 'pf+third')},
  # Figure 3.9: the MLP 2 → 10 → 1 on 5 Gaussian points, h = 0.2.
  'mlp-5-points': {'problem.name': 'mlp', 'h': 0.2, 'steps': 10, 'flows': ('ngf', 'igr', 'third', 'pf'), 'seed': 3},
}


# ---------------------------------------------------------------------------------------------------------------
# Problems


class Problem(NamedTuple):
  """A built problem: `loss(params, *args)`, θ_0, the args, whether E is holomorphic, and D."""

  loss: Callable[..., jax.Array]
  params: Any
  args: tuple[Any, ...]
  holomorphic: bool
  size: int
  hessian: np.ndarray | None  # the constant Hessian of a quadratic, for its closed form
  linear: np.ndarray | None


def _is_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _toy_options(p: ProblemConfig) -> dict[str, Any]:
  options: dict[str, Any] = {'start': p.start or None}
  if p.name == 'quadratic':
    if p.matrix:
      n = math.isqrt(len(p.matrix))
      if n * n != len(p.matrix):
        raise ValueError(f'problem.matrix must hold D × D entries (row-major), got {len(p.matrix)}')
      options['matrix'] = np.reshape(np.asarray(p.matrix, np.float64), (n, n))
    options['linear'] = p.linear or None
  elif p.name in ('square', 'shifted_square'):
    options['centre'] = p.centre
  elif p.name == 'rosenbrock':
    if len(p.rosenbrock) != 2:
      raise ValueError(f'problem.rosenbrock must be (a, b), got {p.rosenbrock!r}')
    options['a'], options['b'] = p.rosenbrock
  return options


_MODELS: dict[tuple[Any, ...], Any] = {}


def _network_loss(name: str, width: int, inputs: int, loss: str) -> tuple[Any, Callable[..., jax.Array]]:
  """(the haiku model, loss(params, x, y)), one object per structure so that compiled programs are reused."""
  key = (name, width, inputs, loss)
  if key not in _MODELS:
    model = models.make_model(models.ModelConfig(kind='mlp', widths=(width,), activation='tanh'), (inputs,), 1)

    def mse(params: Any, x: jax.Array, y: jax.Array) -> jax.Array:
      return 2 * losses.squared_error(model.apply(params, {}, x, False)[0], y)  # mean (f − y)²

    def bce(params: Any, x: jax.Array, y: jax.Array) -> jax.Array:
      f = model.apply(params, {}, x, False)[0]
      return jnp.mean(jax.nn.softplus(f) - y * f)  # −y log σ(f) − (1 − y) log(1 − σ(f)), holomorphic

    _MODELS[key] = (model, mse if loss == 'mse' else bce)
  return _MODELS[key]


def build_problem(config: FlowConfig) -> Problem:
  """The problem of `config` in the current precision (float64 under `jax.enable_x64`).

  Raises:
    ValueError: problem parameters that do not fit it.
  """
  p = config.problem
  dtype = jnp.result_type(float)
  if p.name in problems.TOYS:
    t = problems.toy(p.name, **_toy_options(p))
    theta = jnp.asarray(t.start, dtype)
    args = tuple(jnp.asarray(a, dtype) for a in t.args)
    hessian = linear = None
    if p.name == 'quadratic':
      hessian, linear = 2 * np.asarray(t.args[0]), np.asarray(t.args[1])
    elif p.name in QUADRATICS:
      hessian, linear = np.eye(theta.shape[0]), -np.full(theta.shape[0], float(t.args[0]))
    return Problem(t.loss, theta, args, t.holomorphic, int(theta.shape[0]), hessian, linear)
  loss_name = p.loss or DEFAULT_LOSS[p.name]
  if p.name == 'mlp':
    rng = np.random.default_rng(config.seed)
    x = rng.standard_normal((p.num_points, 2))
    y = rng.standard_normal((p.num_points, 1))
  else:
    dataset = data.load(data.DataConfig(name='breast_cancer', num_train=p.num_points))
    x, y = dataset.x_train, dataset.y_train.reshape(-1, 1)
  model, loss = _network_loss(p.name, p.width, x.shape[1], loss_name)
  x, y = jnp.asarray(x, dtype), jnp.asarray(y, dtype)
  params, _ = model.init(jax.random.PRNGKey(config.seed), x)
  params = jax.tree.map(lambda a: jnp.asarray(a, dtype), params)
  return Problem(loss, params, (x, y), True, int(ravel_pytree(params)[0].size), None, None)


# ---------------------------------------------------------------------------------------------------------------
# Validation


def validate(config: FlowConfig, compiled_programs: bool = False) -> None:
  """Raises one `ConfigError` listing every problem of `config` before any work starts; a complex principal flow
  on a loss that is not holomorphic is refused with `holomorphic.check_holomorphic`'s reason."""
  del compiled_programs  # flow runs have no compiled programs of the compiled backend (`KIND.group` is None)
  c, p, i = config, config.problem, config.integrator
  found: list[str] = []
  check = lambda ok, message: None if ok else found.append(message)
  check(_is_int(c.seed) and 0 <= c.seed <= MAX_SEED, f'seed must be an integer in [0, 2**32), got {c.seed!r}')
  check(_is_real(c.h) and c.h > 0, f'h must be a finite positive number, got {c.h!r}')
  check(_is_int(c.steps) and c.steps > 0, f'steps must be a positive integer, got {c.steps!r}')
  flows_ok = isinstance(c.flows, tuple) and len(c.flows) > 0 and all(isinstance(f, str) for f in c.flows)
  check(flows_ok, f'flows must be a non-empty list of flow names from {", ".join(FLOWS)}, got {c.flows!r}')
  if flows_ok:
    unknown = [f for f in c.flows if f not in FLOWS]
    check(not unknown, f'unknown flow(s) {unknown}; valid: {", ".join(FLOWS)}')
    check(len(set(c.flows)) == len(c.flows), f'flows lists a flow twice: {c.flows!r}')
  check(isinstance(c.complex, bool), f'complex must be true or false, got {c.complex!r}')
  check(isinstance(c.x64, bool), f'x64 must be true or false, got {c.x64!r}')
  check(c.pf_method in fields.METHODS, f'unknown pf_method {c.pf_method!r}; valid: {", ".join(fields.METHODS)}')
  check(c.pf_branch in PF_BRANCHES, f'unknown pf_branch {c.pf_branch!r}; valid: {", ".join(PF_BRANCHES)}')
  check(_is_int(c.krylov_depth) and c.krylov_depth >= 0, f'krylov_depth must be >= 0, got {c.krylov_depth!r}')
  check(p.name in PROBLEMS, f'unknown problem {p.name!r}; valid: {", ".join(PROBLEMS)}')
  if p.name in NETWORKS:
    check(not p.start, f'problem.start applies to the toy problems; {p.name!r} starts at its initialisation')
    check(_is_int(p.width) and p.width > 0, f'problem.width must be a positive integer, got {p.width!r}')
    least = 1 if p.name == 'mlp' else 0
    check(
      _is_int(p.num_points) and p.num_points >= least,
      f'problem.num_points must be an integer >= {least} for {p.name!r}, got {p.num_points!r}',
    )
    check(p.loss in ('', *NETWORK_LOSSES), f'unknown problem.loss {p.loss!r}; valid: {", ".join(NETWORK_LOSSES)}')
  check(i.method in INTEGRATORS, f'unknown integrator.method {i.method!r}; valid: {", ".join(INTEGRATORS)}')
  check(i.solver in integrate.SOLVERS, f'unknown integrator.solver {i.solver!r}; valid: {", ".join(integrate.SOLVERS)}')
  for name in ('rtol', 'atol', 'dt'):
    value = getattr(i, name)
    check(_is_real(value) and value > 0, f'integrator.{name} must be a positive number, got {value!r}')
  check(_is_int(i.max_steps) and i.max_steps > 0, f'integrator.max_steps must be positive, got {i.max_steps!r}')
  check(_is_int(i.samples) and i.samples > 0, f'integrator.samples must be positive, got {i.samples!r}')
  if i.method == 'closed_form':
    check(p.name in QUADRATICS, f'integrator.method closed_form is for the quadratics ({", ".join(QUADRATICS)})')
    check(
      c.complex,
      'integrator.method closed_form gives the exact (complex) flows; complex=false applies to the '
      'numerical integrators',
    )
  if not found:
    found += _problem_checks(config)
  if found:
    raise config_lib.ConfigError('invalid config:\n  - ' + '\n  - '.join(found))


def _problem_checks(config: FlowConfig) -> list[str]:
  """What only the built problem tells: its parameters, a singular PF field, a non-holomorphic complex flow."""
  with jax.enable_x64(config.x64):
    try:
      problem = _problem(config)
    except ValueError as e:
      return [str(e)]
    found = []
    pf = [f for f in config.flows if f in COMPLEX_FLOWS]
    if config.pf_method == 'lanczos' and config.krylov_depth > problem.size:
      found.append(
        f'krylov_depth {config.krylov_depth} exceeds the {problem.size} parameters of {config.problem.name!r}'
      )
    if pf and problem.hessian is not None and config.integrator.method != 'closed_form':
      z = config.h * np.linalg.eigvalsh(problem.hessian)
      if np.any(np.abs(z - 1) < 1e-12):
        found.append(
          f"hλ = 1 for an eigenvalue of this quadratic at h = {config.h}: the principal flow's field is infinite "
          'there (its solution is not: erratum 5); use integrator.method=closed_form'
        )
    if pf and config.complex:
      try:
        holomorphic.check_holomorphic(problem.loss, problem.params, *problem.args)
      except holomorphic.NotHolomorphicError as e:
        found.append(
          f'complex principal flows ({", ".join(pf)}) need a holomorphic loss, and {config.problem.name!r} is '
          f'not: {e} Set complex=false to integrate the real part of the field.'
        )
  return found


_PROBLEMS: dict[str, Problem] = {}


def _problem(config: FlowConfig) -> Problem:
  """`build_problem`, kept per problem (and seed, for the networks) and precision."""
  key = json.dumps(
    {
      'problem': dataclasses.asdict(config.problem),
      'seed': config.seed if config.problem.name in NETWORKS else 0,
      'x64': bool(jax.config.jax_enable_x64),
    },
    sort_keys=True,
  )
  if key not in _PROBLEMS:
    _PROBLEMS[key] = build_problem(config)
  return _PROBLEMS[key]


def canonical(config: FlowConfig) -> FlowConfig:
  """`config` without its directory (and without the seed of a toy, which does not use it)."""
  config = dataclasses.replace(config, out='')
  return config if config.problem.name in NETWORKS else dataclasses.replace(config, seed=0)


# ---------------------------------------------------------------------------------------------------------------
# The compiled pieces


_SOLVES: dict[tuple[Any, ...], Callable[..., tuple[Any, jax.Array]]] = {}
_JITS: dict[tuple[Any, ...], Callable[..., Any]] = {}


def alpha_pf_continued(z: jax.Array) -> jax.Array:
  """α_PF(z) = log(1 − z)/z (Eq 3.9) with the branch cut moved from the ray z > 1 to the line Re z = 1.

  For Re z < 1 it is `coefficients.alpha_pf` (real on the real axis, the series near 0); for Re z ≥ 1 it is
  (log(z − 1) + iπ)/z, the thesis' branch at real z > 1 (Section 3.3) continued analytically off the axis. At
  complex θ of a non-quadratic loss the eigenvalues of the complex-symmetric Hessian leave the real axis, and one
  that starts beyond 1/h crosses it back and forth as θ oscillates; the principal branch jumps by 2πi/z at each
  crossing (a discontinuous field, on which an adaptive solver stalls and Euler chatters), this one does not. It
  jumps only where Re hλ crosses 1, where α_PF is singular on the real axis anyway.
  """
  z = jnp.asarray(z)
  z = z.astype(jnp.result_type(z.dtype, jnp.complex64))
  above = jnp.real(z) >= 1
  below = coefficients.alpha_pf(jnp.where(above, 0, z))
  continued = (jnp.log(jnp.where(above, z, 2) - 1) + 1j * jnp.pi) / jnp.where(above, z, 1)
  return jnp.where(above, continued, below)


def third_order_term(loss: Callable[..., jax.Array], params: Any, *args: Any) -> Any:
  """T[g, g] of Eq 3.11: the JVP along g of θ ↦ H(θ)g with g = ∇E(θ) held fixed (holomorphic at complex θ)."""
  grad = jax.grad(lambda p: loss(p, *args), holomorphic=holomorphic.is_complex(params))
  g = jax.lax.stop_gradient(grad(params))
  return jax.jvp(lambda p: jax.jvp(grad, (p,), (g,))[1], (params,), (g,))[1]


def make_field(
  loss: Callable[..., jax.Array], flow: str, method: str = 'dense', depth: int = 0, branch: str = 'continued'
) -> Callable[..., Any]:
  """field(params, h, *args) of `flow` (h an argument, so that one compiled program serves every h).

  The principal flows take `alpha_pf_continued` (branch='continued', by `fields.spectral`) or the principal branch
  of `fields.principal` / `fields.principal_third` (branch='principal'); the other flows are `fields.make`'s.
  """
  depth_option = depth or None

  def field(params: Any, h: jax.Array, *args: Any) -> Any:
    if flow not in COMPLEX_FLOWS:
      return fields.make(flow, loss, h)(params, *args)
    if branch == 'principal':
      return fields.make(flow, loss, h, method=method, krylov_depth=depth_option)(params, *args)
    out = fields.spectral(loss, h, alpha_pf_continued, method=method, krylov_depth=depth_option)(params, *args)
    if flow == 'pf+third':
      t = third_order_term(loss, params, *args)
      out = jax.tree.map(lambda a, b: a - (h**2 / 12) * b, out, t)
    return out

  return field


def _field(loss: Callable[..., jax.Array], flow: str, method: str, depth: int, real_part: bool, branch: str):
  base = make_field(loss, flow, method, depth, branch)

  def field(params: Any, h: jax.Array, *args: Any) -> Any:
    out = base(params, h, *args)
    return jax.tree.map(jnp.real, out) if real_part else out

  return field


def _solver(config: FlowConfig, loss: Callable[..., jax.Array], flow: str) -> Callable[..., tuple[Any, jax.Array]]:
  """solve(params, h, *args) -> (θ at `samples` + 1 times in [0, h], solver steps), jitted, one per structure."""
  i = config.integrator
  real_part = flow in COMPLEX_FLOWS and not config.complex
  key = (
    loss,
    flow,
    config.pf_branch,
    config.pf_method,
    config.krylov_depth,
    real_part,
    i.method,
    i.solver,
    i.rtol,
    i.atol,
    i.max_steps,
    i.dt,
    i.samples,
  )
  if key not in _SOLVES:
    field = _field(loss, flow, config.pf_method, config.krylov_depth, real_part, config.pf_branch)
    grid = jnp.linspace(0.0, 1.0, i.samples + 1)

    def solve(params: Any, h: jax.Array, *args: Any) -> tuple[Any, jax.Array]:
      ts = h * grid.astype(h.dtype)
      if i.method == 'euler':
        out = integrate.euler(field, params, h, h, *args, dt=i.dt, saveat=ts, holomorphic=True)
      else:
        out = integrate.integrate(
          field,
          params,
          h,
          h,
          *args,
          solver=i.solver,
          rtol=i.rtol,
          atol=i.atol,
          max_steps=i.max_steps,
          saveat=ts,
          holomorphic=True,
        )
      return out.ys, out.num_steps

    _SOLVES[key] = jax.jit(solve)
  return _SOLVES[key]


def _closed_form(flow: str) -> Callable[..., jax.Array]:
  """exact(H, b, starts (S, D), h, times (T,)) -> (S, T, D): `problems.quadratic_solution` from each start."""
  return _jitted(
    f'closed-{flow}',
    None,
    lambda: jax.jit(
      jax.vmap(
        lambda hs, b, start, h, ts: problems.quadratic_solution(flow, hs, b, start, h, ts), (None, None, 0, None, None)
      )
    ),
  )


def _jitted(
  name: str, loss: Callable[..., jax.Array] | None, make: Callable[[], Callable[..., Any]]
) -> Callable[..., Any]:
  key = (name, loss)
  if key not in _JITS:
    _JITS[key] = make()
  return _JITS[key]


def _gd(loss: Callable[..., jax.Array], steps: int) -> Callable[..., Any]:
  return _jitted(f'gd{steps}', loss, lambda: jax.jit(lambda p, h, *a: integrate.gd(loss, p, h, steps, *a)))


def _real_losses(loss: Callable[..., jax.Array]) -> Callable[..., jax.Array]:
  """Re E at each of a stack of parameters (complex ones for the complex flows)."""
  return _jitted('losses', loss, lambda: jax.jit(lambda ps, *a: jax.vmap(lambda p: jnp.real(loss(p, *a)))(ps)))


def _lambda_0(loss: Callable[..., jax.Array], size: int) -> Callable[..., jax.Array]:
  """λ_0 of the Hessian at each of a stack of real parameters: dense up to `DENSE_LAMBDA_LIMIT`, else Lanczos."""

  def make() -> Callable[..., jax.Array]:
    if size <= DENSE_LAMBDA_LIMIT:
      one = lambda p, *a: fields.dense_spectrum(loss, p, *a).values[0]
    else:
      one = lambda p, *a: eigen.top_eigenpairs(loss, p, *a, k=1, krylov_depth=min(size, 30)).values[0]
    return jax.jit(lambda ps, *a: jax.lax.map(lambda p: one(p, *a), ps))

  return _jitted(f'lambda0-{size <= DENSE_LAMBDA_LIMIT}', loss, make)


# ---------------------------------------------------------------------------------------------------------------
# One run


class FlowResult(NamedTuple):
  """One flow against GD: θ_flow at the path's times, at t = nh, after one step from each θ_{n−1}, and the cost."""

  path: np.ndarray  # (N·samples + 1, D), complex
  iterates: np.ndarray  # (N + 1, D): θ_flow(nh; θ_0)
  one_step: np.ndarray  # (N, D): θ_flow(h; θ_{n−1})
  solver_steps: int


def _flat(tree: Any) -> np.ndarray:
  """A stack of pytrees (leading axis) as a (T, D) array in `ravel_pytree` order."""
  leaves = jax.tree.leaves(tree)
  return np.concatenate([np.asarray(x).reshape(x.shape[0], -1) for x in leaves], axis=1)


def _index(tree: Any, n: int) -> Any:
  return jax.tree.map(lambda x: x[n], tree)


def _run_flow(config: FlowConfig, problem: Problem, flow: str, gd: Any) -> FlowResult:
  """The flow from θ_0 for time Nh (a chain of solves of time h) and from each GD iterate for time h."""
  steps, samples = config.steps, config.integrator.samples
  h = jnp.asarray(config.h, jnp.result_type(float))
  if config.integrator.method == 'closed_form':
    exact = _closed_form(flow)
    theta_0 = _flat(jax.tree.map(lambda x: x[None], problem.params))[0]
    times = h * jnp.arange(steps * samples + 1) / samples
    hessian, linear = (jnp.asarray(a, h.dtype) for a in (problem.hessian, problem.linear))
    path = np.asarray(exact(hessian, linear, jnp.asarray(theta_0)[None], h, times))[0]
    one_step = np.asarray(exact(hessian, linear, jnp.asarray(_flat(gd)[:-1]), h, h[None]))[:, 0]
    return FlowResult(path, path[::samples], one_step, 0)
  solve = _solver(config, problem.loss, flow)
  goes_complex = flow in COMPLEX_FLOWS and config.complex
  start = holomorphic.complexify(problem.params) if goes_complex else problem.params
  segments, total = [], 0
  state = start
  for n in range(steps):
    ys, used = solve(state, h, *problem.args)
    segments.append(_flat(ys)[(0 if n == 0 else 1) :])
    state, total = _index(ys, -1), total + int(used)
  path = np.concatenate(segments)
  one_step = [path[samples]]  # the first segment starts at θ_0
  for n in range(1, steps):
    p = _index(gd, n)
    ys, used = solve(holomorphic.complexify(p) if goes_complex else p, h, *problem.args)
    one_step.append(_flat(ys)[-1])
    total += int(used)
  return FlowResult(path, path[::samples], np.stack(one_step), total)


def _norms(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  return np.sqrt(np.sum(np.abs(a - b) ** 2, axis=-1))


def _unflatten_stack(flat: np.ndarray, template: Any) -> Any:
  """(T, D) rows back into a stack of pytrees like `template` (for evaluating the loss at them)."""
  _, unravel = ravel_pytree(template)
  leaves = [unravel(jnp.asarray(row)) for row in flat]
  return jax.tree.map(lambda *xs: jnp.stack(xs), *leaves)


def _write_trajectories(out: Path, arrays: dict[str, np.ndarray]) -> None:
  """`trajectories.npz` written atomically: plain numeric arrays only (loadable with allow_pickle=False)."""
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  with atomic_file(out / TRAJECTORIES_FILE, 'wb') as f:
    f.write(buffer.getvalue())


def load_trajectories(run_dir: str | Path) -> dict[str, np.ndarray]:
  """The arrays of a run's `trajectories.npz`, complex ones recombined: 'ts', 'path_ts', 'gd' and per flow
  '<flow>/path', '<flow>/iterates', '<flow>/one_step'."""
  with np.load(Path(run_dir) / TRAJECTORIES_FILE, allow_pickle=False) as f:
    raw = {k: f[k] for k in f.files}
  out: dict[str, np.ndarray] = {}
  for key, value in raw.items():
    if key.endswith('.real'):
      out[key[: -len('.real')]] = value + 1j * raw[key[: -len('.real')] + '.imag']
    elif not key.endswith('.imag'):
      out[key] = value
  return out


def _train_one(config: FlowConfig, show_progress: bool, resume: bool) -> dict[str, Any]:
  done = recorder_lib.finished_summary(config.out, config.to_json()) if resume else None
  if done is not None:
    return done
  with recorder_lib.Recorder(config.out, config.to_json(), kind=KIND_NAME) as rec:
    try:
      with jax.enable_x64(config.x64):
        return _run(config, rec, show_progress)
    except config_lib.TrainingError as e:
      return rec.fail(e)
    except BaseException as e:
      if rec.failure is None:
        rec.fail(e)
      raise


def _run(config: FlowConfig, rec: recorder_lib.Recorder, show_progress: bool) -> dict[str, Any]:
  start = time.perf_counter()
  rec.start(None)
  problem = _problem(config)
  h = jnp.asarray(config.h, jnp.result_type(float))
  n_steps = config.steps
  gd = _gd(problem.loss, n_steps)(problem.params, h, *problem.args)
  gd_flat = _flat(gd)
  gd_loss = np.asarray(_real_losses(problem.loss)(gd, *problem.args), np.float64)
  lambda_0 = np.asarray(_lambda_0(problem.loss, problem.size)(gd, *problem.args), np.float64)
  results: dict[str, FlowResult] = {}
  with Progress(len(config.flows), enabled=show_progress, unit='flows') as progress:
    for k, flow in enumerate(config.flows):
      results[flow] = _run_flow(config, problem, flow, gd)
      progress.update(k + 1, force=k + 1 == len(config.flows), flow=flow)
  flow_loss = {
    f: np.asarray(_real_losses(problem.loss)(_unflatten_stack(r.iterates, problem.params), *problem.args))
    for f, r in results.items()
  }
  records = []
  for n in range(n_steps + 1):
    record: dict[str, Any] = {
      'step': n,
      'kind': 'eval',
      't': n * config.h,
      'loss_gd': float(gd_loss[n]),
      'lambda_0': float(lambda_0[n]),
      'h_lambda_0': float(config.h * lambda_0[n]),
    }
    for f, r in results.items():
      record[f'loss_{f}'] = float(flow_loss[f][n])
      record[f'global_error_{f}'] = float(_norms(r.iterates[n], gd_flat[n]))
      record[f'imag_norm_{f}'] = float(np.linalg.norm(np.imag(r.iterates[n])))
      if n >= 1:
        record[f'per_iteration_error_{f}'] = float(_norms(r.one_step[n - 1], gd_flat[n]))
    rec.check_loss(record['loss_gd'], n)
    rec.write(record)
    records.append(record)
  arrays: dict[str, np.ndarray] = {
    'ts': config.h * np.arange(n_steps + 1),
    'path_ts': config.h * np.arange(n_steps * config.integrator.samples + 1) / config.integrator.samples,
    'gd': gd_flat,
    'gd_loss': gd_loss,
    'lambda_0': lambda_0,
  }
  for f, r in results.items():
    for name, value in (('path', r.path), ('iterates', r.iterates), ('one_step', r.one_step)):
      arrays[f'{f}/{name}.real'] = np.real(value)
      arrays[f'{f}/{name}.imag'] = np.imag(value)
  _write_trajectories(Path(config.out), arrays)
  last = records[-1]
  summary = {
    'steps': n_steps,
    'h': config.h,
    'problem': config.problem.name,
    'parameters': problem.size,
    'h_lambda_0': records[0]['h_lambda_0'],
    'global_error': {f: last[f'global_error_{f}'] for f in results},
    'max_global_error': {f: max(r[f'global_error_{f}'] for r in records) for f in results},
    'max_per_iteration_error': {f: max(r[f'per_iteration_error_{f}'] for r in records[1:]) for f in results},
    'solver_steps': {f: r.solver_steps for f, r in results.items()},
    'wall_seconds': time.perf_counter() - start,
    'final_eval': last,
  }
  return rec.finish(summary, n_steps)


def train(configs: Sequence[FlowConfig], options: TrainOptions) -> list[dict[str, Any]]:
  """Runs flow runs one after another (each through its own `Recorder`); on resume, finished runs are read back.
  A run whose GD loss turns non-finite stops alone with its failure record."""
  return [_train_one(c, options.show_progress and n == 0, options.resume) for n, c in enumerate(configs)]


KIND = RunKind(
  name=KIND_NAME,
  config_type=FlowConfig,
  presets=PRESETS,
  validate=validate,
  train=train,
  canonical=canonical,
  group=None,
  score=SCORE,
  higher_is_better=False,
  subject=lambda config: f'flow/{config.get("problem", {}).get("name", "?")}',
  step_name='iterations',
)
