"""The toy losses of the thesis' flow figures (Chapter 3, Appendix A.5), and the flows' closed forms on quadratics.

Each loss is a pure function `loss(theta, *args) -> scalar` of a 1-D parameter vector, as the fields of
`smoothrl.flows.fields` take them; `TOYS` holds each figure's setting (`toy(name)`):

| name | E(θ) | figure, thesis settings | holomorphic |
|---|---|---|---|
| 'quadratic' | θᵀAθ + bᵀθ, A = diag(1, 0.01), b = 0 (no ½: erratum 5, hλ_0 = 2h) | Figs 3.2, 3.7: h = 0.5, 0.9, 1.05 | yes |
| 'shifted_square' | ½(θ − 0.6)² | Fig 3.3: h = 1.2 | yes |
| 'square' | ½z² | Fig 3.6: h = 0.8, 1.5, 2.1 | yes |
| 'rosenbrock' | (a − x)² + b(y − x²)², a = 1, b = 100, from (−1.2, 1) | Fig 3.8: h = 0.0006, 0.0017, 0.005 | yes |
| 'cos' | cos θ + θ for θ < 0, 2(θ/3)² + 1 + θ/3 for θ ≥ 0 | Fig A.6 (paper Fig 30: h = 0.5, 0.85) | no |

The banana function's constants and start are not printed; the standard Rosenbrock function (a = 1, b = 100) from
Rosenbrock's own start (−1.2, 1) puts the three rates where the caption of Figure 3.8 does: λ_0 ≈ 1506 there, so
hλ_0 ≈ 0.9 (real stable), 2.6 (λ_0 just above 2/h) and 7.5 (λ_0 ≫ 2/h).

Figure A.6's function, as printed (thesis: 2(θ/3)²; the paper's Figure 30 omits the 2), is continuous at 0 (both
pieces equal 1) but not differentiable there: E' jumps from 1 (cosine piece) to 1/3. E' = 1 − sin θ ≥ 0 on θ < 0
and E' = 4θ/9 + 1/3 > 0 on θ ≥ 0, so E never increases: its only stationary points are θ = −3π/2 − 2πk, where
E' = E'' = 0 (degenerate, inflection points, the "local minima" at which flows stop). |E''| ≤ 1 everywhere, so
for h < 1 every hλ < 1 and the principal flow stays real. Its pieces are entire, but E is not holomorphic across
Re θ = 0, where the piece changes: `cos_valley` picks the piece by Re θ, and `holomorphic.check_holomorphic` refuses
it (it compares values), so complex flows on it are refused rather than silently continued across the switch.

`quadratic_solution` is every flow of Table 3.1 on a quadratic in closed form, the exact reference of the
quadratic figures (at hλ_i = 1 the principal flow's field is infinite but its solution is finite: erratum 5).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from smoothrl.flows import coefficients, stability

Loss = Callable[..., jax.Array]

QUADRATIC_MATRIX = ((1.0, 0.0), (0.0, 0.01))  # A of Figures 3.2 and 3.7 (Appendix A.5)
ROSENBROCK_START = (-1.2, 1.0)


def quadratic(theta: jax.Array, matrix: jax.Array, linear: jax.Array | None = None) -> jax.Array:
  """E = θᵀAθ + bᵀθ (Figures 3.2, 3.7 use it without ½, erratum 5), bilinear in θ: holomorphic. Hessian 2A."""
  value = theta @ matrix @ theta
  return value if linear is None else value + linear @ theta


def square(theta: jax.Array, centre: float | jax.Array = 0.0) -> jax.Array:
  """E = ½Σ(θ − c)²: ½z² of Figure 3.6 (c = 0) and ½(θ − 0.6)² of Figure 3.3; Hessian the identity."""
  return 0.5 * jnp.sum((theta - centre) ** 2)


def rosenbrock(theta: jax.Array, a: float | jax.Array = 1.0, b: float | jax.Array = 100.0) -> jax.Array:
  """The banana function of Figure 3.8, (a − x)² + b(y − x²)² at θ = (x, y) (Rosenbrock 1960); minimum (a, a²)."""
  x, y = theta[0], theta[1]
  return (a - x) ** 2 + b * (y - x**2) ** 2


def cos_valley(theta: jax.Array) -> jax.Array:
  """Figure A.6's E = cos θ + θ for θ < 0 and 2(θ/3)² + 1 + θ/3 for θ ≥ 0, summed over the entries of θ.

  The piece is chosen by Re θ; E is continuous but not differentiable at 0 (E' jumps from 1 to 1/3) and not
  holomorphic across Re θ = 0 (see the module docstring).
  """
  left = jnp.cos(theta) + theta
  right = 2 * (theta / 3) ** 2 + 1 + theta / 3
  return jnp.sum(jnp.where(jnp.real(theta) < 0, left, right))


class Toy(NamedTuple):
  """A figure's toy problem.

  Attributes:
    name: its key in `TOYS`.
    loss: `loss(theta, *args) -> scalar`.
    args: the loss's extra arguments (A and b of the quadratic, the centre of a square).
    start: θ_0, a 1-D float array.
    holomorphic: whether the loss is holomorphic, so complex flows may be taken on it.
    figure: the thesis figure(s).
    rates: the learning rates of the figure.
  """

  name: str
  loss: Loss
  args: tuple[Any, ...]
  start: np.ndarray
  holomorphic: bool
  figure: str
  rates: tuple[float, ...]


def _vector(values: Any, name: str) -> np.ndarray:
  array = np.asarray(values, dtype=np.float64)
  if array.ndim != 1 or array.size == 0 or not np.all(np.isfinite(array)):
    raise ValueError(f'{name} must be a non-empty 1-D sequence of finite numbers, got {values!r}')
  return array


def toy(
  name: str,
  *,
  start: Any = None,
  matrix: Any = None,
  linear: Any = None,
  centre: float | None = None,
  a: float = 1.0,
  b: float = 100.0,
) -> Toy:
  """The toy `name` with its figure's defaults, any of them replaced.

  Args:
    name: one of `TOYS`.
    start: θ_0 (default: the figure's).
    matrix: A of 'quadratic' (D × D, symmetric; default `QUADRATIC_MATRIX`).
    linear: b of 'quadratic' (default 0).
    centre: c of 'square' (0) and 'shifted_square' (0.6).
    a, b: the constants of 'rosenbrock'.

  Raises:
    ValueError: an unknown name, or parameters that do not fit it (naming them).
  """
  if name not in TOYS:
    raise ValueError(f'unknown toy problem {name!r}; valid: {", ".join(TOYS)}')
  base = TOYS[name]
  args = base.args
  if name == 'quadratic':
    a_matrix = np.asarray(QUADRATIC_MATRIX if matrix is None else matrix, dtype=np.float64)
    if a_matrix.ndim != 2 or a_matrix.shape[0] != a_matrix.shape[1] or not np.all(np.isfinite(a_matrix)):
      raise ValueError(f'matrix must be a square matrix of finite numbers, got {matrix!r}')
    if not np.allclose(a_matrix, a_matrix.T):
      raise ValueError(f'matrix must be symmetric, got {a_matrix.tolist()}')
    n = a_matrix.shape[0]
    b_vector = np.zeros(n) if linear is None else _vector(linear, 'linear')
    if b_vector.shape != (n,):
      raise ValueError(f'linear must have {n} entries (the size of matrix), got {b_vector.size}')
    args = (a_matrix, b_vector)
  elif name in ('square', 'shifted_square'):
    args = (float(base.args[0] if centre is None else centre),)
  elif name == 'rosenbrock':
    args = (float(a), float(b))
  theta = base.start if start is None else _vector(start, 'start')
  dimension = args[0].shape[0] if name == 'quadratic' else base.start.size
  if theta.shape != (dimension,):
    raise ValueError(f'start of {name!r} must have {dimension} entries, got {theta.size}')
  return base._replace(args=args, start=theta)


TOYS: dict[str, Toy] = {
  t.name: t
  for t in (
    Toy(
      'quadratic',
      quadratic,
      (np.asarray(QUADRATIC_MATRIX), np.zeros(2)),
      np.array([1.0, 1.0]),
      True,
      'Figures 3.2, 3.7',
      (0.5, 0.9, 1.05),
    ),
    Toy('shifted_square', square, (0.6,), np.array([0.0]), True, 'Figure 3.3', (1.2,)),
    Toy('square', square, (0.0,), np.array([1.0]), True, 'Figure 3.6', (0.8, 1.5, 2.1)),
    Toy(
      'rosenbrock', rosenbrock, (1.0, 100.0), np.array(ROSENBROCK_START), True, 'Figure 3.8', (0.0006, 0.0017, 0.005)
    ),
    Toy('cos', cos_valley, (), np.array([-2.0]), False, 'Figure A.6', (0.5, 0.85)),
  )
}


def quadratic_solution(flow: str, hessian: Any, linear: Any, theta_0: Any, h: float | jax.Array, t: Any) -> jax.Array:
  """θ(t) of a flow of Table 3.1 on E = ½θᵀHθ + bᵀθ, in closed form; complex, shape t.shape + (D,).

  In the eigenbasis (λ_i, u_i) of H every flow is θ̇ = α(hH)(Hθ + b), so c_i = θᵀu_i obeys ċ_i = α_i(λ_ic_i + b_i)
  with α_i = α(hλ_i) constant: c_i(t) = e^{α_iλ_it}c_i(0) + (e^{α_iλ_it} − 1)b_i/λ_i (c_i(0) − b_i t at λ_i = 0,
  where every α is −1). 'pf' and 'pf+third' (T[g, g] = 0 on a quadratic) take `stability.quadratic_pf_solution`,
  e^{α_PFλt} = (1 − hλ)^{t/h} on the principal branch, which is GD at t = nh; 'ngf', 'igr', 'third' are real.
  E = θᵀAθ + bᵀθ has H = 2A.
  """
  hessian = jnp.asarray(hessian)
  linear, theta_0 = jnp.asarray(linear, hessian.dtype), jnp.asarray(theta_0, hessian.dtype)
  t = jnp.asarray(t, hessian.dtype)
  if flow in ('pf', 'pf+third'):
    return stability.quadratic_pf_solution(hessian, linear, theta_0, h, t)
  if flow not in ('ngf', 'igr', 'third'):
    raise ValueError(f'unknown flow {flow!r}; the flows with a closed form here: ngf, igr, third, pf, pf+third')
  values, u = jnp.linalg.eigh(hessian)
  rate = coefficients.COEFFICIENTS[flow](h * values) * values  # α(hλ)λ, real and ≤ 0 for λ ≥ 0
  growth = jnp.exp(rate * t[..., None])
  safe = jnp.where(values == 0, 1, values)
  shift = jnp.where(values == 0, -t[..., None], jnp.expm1(rate * t[..., None]) / safe)
  coords = growth * (u.T @ theta_0) + shift * (u.T @ linear)
  return jnp.einsum('...i,ji->...j', coords, u).astype(jnp.result_type(hessian.dtype, jnp.complex64))
