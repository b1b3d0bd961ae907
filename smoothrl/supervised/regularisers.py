"""Explicit regularisers of a supervised loss (thesis Sections 6.3 and 8.4.1) and the regularised loss.

Every term is its coefficient times a value that `regularised_loss` also reports, unweighted, for logging:

- `l2`: ‖θ‖², the sum of squares of every parameter, weights and biases (Section 8.4.1, ζ Σ_l ‖W_l‖²).
- `grad_norm`: ‖∇_θ E‖², E the data loss of the batch; the coefficient h/4 gives the IGR modified loss
  Ẽ = E + (h/4)‖∇_θ E‖² (Eq 2.36, Section 8.4.2).
- `spectral`: Σ_l σ_l², the layers' squared spectral norms (Section 6.3, after Yoshida & Miyato).
- `jacobian`: GC on the batch, (1/|B|) Σ_x ‖df/dx‖²_F (Eq 8.1; Jacobian regularisation, Section 8.4.1).
- `gradient_penalty`: E_{p_reg} (‖∇_x f‖² − K²)² for `penalty_form` 'squared' (Eq 6.4), or E_{p_reg} (‖∇_x f‖ − K)²
  for 'abs' (the form of Section 8.6).

Choices:
- L2 is λ‖θ‖² without a half (the thesis' ζ Σ‖W_l‖²), over every parameter, biases included (its gradient is 2λθ).
- Spectral regularisation squares σ_l, as Yoshida & Miyato (2017) do: their (λ/2) Σ_l σ_l² is `spectral` = λ/2
  here. (The thesis' text says 'the sum of the spectral norms'; the cited method penalises the squares.) σ_l is
  exact (the top singular value of the layer's operator) unless `spectral_iterations` > 0, then it is power
  iteration from random vectors drawn afresh at each call.
- The gradient penalty's ‖∇_x f‖ is the Frobenius norm of the Jacobian of each example's outputs with respect to
  its inputs (the gradient norm for one output, Section 6.2), averaged over the penalty's points, not summed:
  the printed Σ_x (‖∇_x f‖ − K)² of Section 8.6 is this mean times the batch size.
- The penalty's points p_reg (Eq 6.4): 'data', the batch itself; 'interpolate', x + α (x_π − x) with π a random
  cyclic permutation of the batch and α ~ U[0, 1] per example, points on segments between pairs of data points (as
  WGAN-GP's interpolates between data and samples, with shuffled data in place of samples); 'noise', x + s ε with
  ε ~ N(0, I) and s = `penalty_noise`, points around the data.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from smoothrl.networks import smoothness
from smoothrl.networks.layers import LayerSpec

PENALTY_FORMS = ('squared', 'abs')
PENALTY_POINTS = ('data', 'interpolate', 'noise')
COEFFICIENTS = ('l2', 'grad_norm', 'spectral', 'jacobian', 'gradient_penalty')

Params = Any
DataLoss = Callable[[Params, jax.Array, jax.Array], jax.Array]
Model = Callable[[Params, jax.Array], jax.Array]
Loss = Callable[[Params, jax.Array, jax.Array, jax.Array | None], tuple[jax.Array, dict[str, jax.Array]]]


@dataclasses.dataclass(frozen=True)
class RegulariserConfig:
  """The coefficients of the explicit regularisers (0 turns a term off) and the gradient penalty's settings.

  Attributes:
    l2: λ of λ‖θ‖² (all parameters).
    grad_norm: coefficient of ‖∇_θ E‖², the explicit IGR term (h/4 for learning rate h).
    spectral: coefficient of Σ_l σ_l² over the layers given to `regularised_loss` (Yoshida & Miyato's λ/2).
    jacobian: ζ of ζ·GC on the batch (Jacobian regularisation).
    gradient_penalty: ζ of Eq 6.4.
    penalty_form: 'squared', ζ E(‖∇_x f‖² − K²)² (Eq 6.4); 'abs', ζ E(‖∇_x f‖ − K)² (Section 8.6).
    penalty_target: K >= 0 (K = 0 discourages any change of f near the points).
    penalty_points: p_reg: 'data', 'interpolate' (between data points and shuffled data) or 'noise' (data plus
      Gaussian noise); see the module docstring.
    penalty_noise: standard deviation of the noise of 'noise' points.
    spectral_iterations: 0 for exact σ_l; n > 0 for n power-iteration steps from random vectors.
  """

  l2: float = 0.0
  grad_norm: float = 0.0
  spectral: float = 0.0
  jacobian: float = 0.0
  gradient_penalty: float = 0.0
  penalty_form: str = 'squared'
  penalty_target: float = 1.0
  penalty_points: str = 'data'
  penalty_noise: float = 0.1
  spectral_iterations: int = 0


def _real(value: Any) -> bool:
  return isinstance(value, numbers.Real) and not isinstance(value, bool)


def validate(config: RegulariserConfig) -> list[str]:
  """The problems with `config`, one sentence each; empty when it is valid."""
  if not isinstance(config, RegulariserConfig):
    return [f'expected a RegulariserConfig, got {type(config).__name__}']
  problems = []
  for name in (*COEFFICIENTS, 'penalty_target', 'penalty_noise'):
    value = getattr(config, name)
    if not _real(value) or not math.isfinite(value):
      problems.append(f'{name} must be a finite number, got {value!r}')
    elif value < 0:
      problems.append(f'{name} must be >= 0, got {value!r}')
  if config.penalty_form not in PENALTY_FORMS:
    problems.append(f'penalty_form must be one of {", ".join(PENALTY_FORMS)}, got {config.penalty_form!r}')
  if config.penalty_points not in PENALTY_POINTS:
    problems.append(f'penalty_points must be one of {", ".join(PENALTY_POINTS)}, got {config.penalty_points!r}')
  iterations = config.spectral_iterations
  if isinstance(iterations, bool) or not isinstance(iterations, numbers.Integral):
    problems.append(f'spectral_iterations must be an int, got {iterations!r}')
  elif iterations < 0:
    problems.append(f'spectral_iterations must be >= 0, got {iterations!r}')
  return problems


def _check(config: RegulariserConfig) -> None:
  problems = validate(config)
  if problems:
    raise ValueError('invalid RegulariserConfig: ' + '; '.join(problems))


def regularisation_points(config: RegulariserConfig, x: jax.Array, key: jax.Array | None) -> jax.Array:
  """The points p_reg at which the gradient penalty is taken (Eq 6.4), one per example of the batch `x`.

  'data': `x`. 'interpolate': x_i + α_i (x_π(i) − x_i), π a random cyclic permutation of the batch (a single
  cycle, so that no example is paired with itself) and α_i ~ U[0, 1]. 'noise': x + `penalty_noise`·ε with
  ε ~ N(0, I). `key` (unused for 'data') draws π and α, or ε.
  """
  _check(config)
  x = jnp.asarray(x)
  if x.ndim < 1 or x.shape[0] < 1:
    raise ValueError(f'x needs a leading batch axis with at least one example, got shape {tuple(x.shape)}')
  if config.penalty_points == 'data':
    return x
  if key is None:
    raise ValueError(f'penalty_points={config.penalty_points!r} needs a PRNG key')
  if not jnp.issubdtype(x.dtype, jnp.floating):
    x = x.astype(jnp.float32)
  if config.penalty_points == 'interpolate':
    key_perm, key_alpha = jax.random.split(key)
    order = jax.random.permutation(key_perm, x.shape[0])
    # A random cyclic permutation: example order[k] is paired with order[k + 1], none with itself.
    perm = jnp.zeros_like(order).at[order].set(jnp.roll(order, -1))
    alpha = jax.random.uniform(key_alpha, (x.shape[0],) + (1,) * (x.ndim - 1), x.dtype)
    return x + alpha * (x[perm] - x)
  return x + config.penalty_noise * jax.random.normal(key, x.shape, x.dtype)


def _sq_norm(tree: Any) -> jax.Array:
  leaves = jax.tree.leaves(tree)
  if not leaves:
    return jnp.asarray(0.0, jnp.float32)
  return sum(jnp.sum(jnp.square(leaf)) for leaf in leaves)


def _safe_sqrt(x: jax.Array) -> jax.Array:
  """sqrt with a zero (not NaN) gradient at 0."""
  positive = x > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)


def needs_key(config: RegulariserConfig) -> bool:
  """Whether the loss of `config` draws random numbers (interpolated or noisy penalty points, power iteration)."""
  _check(config)
  points = config.gradient_penalty > 0 and config.penalty_points != 'data'
  return bool(points or (config.spectral > 0 and config.spectral_iterations > 0))


def regularised_loss(
  config: RegulariserConfig,
  data_loss: DataLoss,
  f: Model,
  specs: Sequence[LayerSpec] = (),
) -> Loss:
  """The data loss plus the active regularisers of `config`.

  Args:
    config: the coefficients; terms whose coefficient is 0 are left out when the loss is traced (no cost).
    data_loss: `(params, x, y) -> scalar`, the loss E of a batch.
    f: `(params, x) -> outputs`, the model's logits for a batch, examples independently (GC, gradient penalty).
    specs: the layers whose spectral norms `spectral` penalises (needed when `spectral` > 0); their weights are
      found in `params` as `smoothrl.networks.spectral` finds them.

  Returns:
    `loss(params, x, y, key) -> (total, aux)`: total = E + Σ_k c_k·value_k over the active terms; `aux` holds
    'data_loss' and each active term's unweighted value under its field name ('l2', 'grad_norm', 'spectral',
    'jacobian', 'gradient_penalty'). `key` may be None unless `needs_key(config)`; it is split in two, the first
    for `regularisation_points`, the second for the power iterations' starting vectors. The loss is pure,
    jittable and differentiable in `params` (the gradient-norm term differentiates a gradient).
  """
  _check(config)
  specs = tuple(specs)
  if config.spectral > 0 and not specs:
    raise ValueError("spectral > 0 needs the layers to penalise: pass specs (the model's LayerSpecs)")
  if not callable(data_loss) or not callable(f):
    raise ValueError('data_loss and f must be callables')
  randomised = needs_key(config)
  penalty_on_data = config.penalty_points == 'data'
  target = config.penalty_target

  def loss(params: Params, x: jax.Array, y: jax.Array, key: jax.Array | None = None):
    if randomised and key is None:
      raise ValueError('this regulariser config draws random numbers (penalty points or power iteration): pass a key')
    key_points = key_spectral = None
    if randomised:
      key_points, key_spectral = jax.random.split(key)
    if config.grad_norm > 0:
      data, grads = jax.value_and_grad(data_loss)(params, x, y)
    else:
      data = data_loss(params, x, y)
    aux: dict[str, jax.Array] = {'data_loss': data}
    total = data
    model = lambda inputs: f(params, inputs)

    if config.l2 > 0:
      aux['l2'] = _sq_norm(params)
      total = total + config.l2 * aux['l2']
    if config.grad_norm > 0:
      aux['grad_norm'] = _sq_norm(grads)
      total = total + config.grad_norm * aux['grad_norm']
    if config.spectral > 0:
      exact = config.spectral_iterations == 0
      sigmas = smoothness.layer_spectral_norms(
        params, specs, exact=exact, num_iterations=max(config.spectral_iterations, 1), key=key_spectral
      )
      aux['spectral'] = sum(jnp.square(sigmas[s.name]) for s in specs)
      total = total + config.spectral * aux['spectral']
    data_sq_norms = None
    if config.jacobian > 0 or (config.gradient_penalty > 0 and penalty_on_data):
      data_sq_norms = smoothness.jacobian_sq_norms(model, x)
    if config.jacobian > 0:
      aux['jacobian'] = jnp.mean(data_sq_norms)  # GC on the batch (Eq 8.1)
      total = total + config.jacobian * aux['jacobian']
    if config.gradient_penalty > 0:
      if penalty_on_data:
        sq_norms = data_sq_norms
      else:
        sq_norms = smoothness.jacobian_sq_norms(model, regularisation_points(config, x, key_points))
      if config.penalty_form == 'squared':
        aux['gradient_penalty'] = jnp.mean(jnp.square(sq_norms - target**2))
      else:
        aux['gradient_penalty'] = jnp.mean(jnp.square(_safe_sqrt(sq_norms) - target))
      total = total + config.gradient_penalty * aux['gradient_penalty']
    return total, aux

  return loss
