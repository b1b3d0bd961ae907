"""The explicit regularisers and the regularised loss (smoothrl.supervised.regularisers) on a tiny tanh network,
against values computed by hand in numpy: explicit backpropagation for ‖∇_θE‖² and the input Jacobians, SVDs for
the spectral norms, a dense Hessian for the IGR term's gradient, and finite differences of the whole loss."""

from __future__ import annotations

import dataclasses

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from smoothrl.networks.layers import LayerSpec
from smoothrl.supervised import regularisers as reg

N, N_IN, N_HIDDEN, N_OUT = 6, 3, 5, 2  # examples, inputs, hidden units, outputs
SPECS = (LayerSpec('l1', 'dense', (N_IN,)), LayerSpec('l2', 'dense', (N_HIDDEN,)))


def _key(seed: int) -> jax.Array:
  """A PRNG key whose programs compile quickly on a CPU (XLA's bit generator; threefry's take seconds each)."""
  return jax.random.key(seed, impl='rbg')


def _problem(seed: int = 0):
  rng = np.random.default_rng(seed)
  params = {
    'l1': {'w': rng.standard_normal((N_IN, N_HIDDEN)), 'b': 0.5 * rng.standard_normal(N_HIDDEN)},
    'l2': {'w': rng.standard_normal((N_HIDDEN, N_OUT)), 'b': 0.5 * rng.standard_normal(N_OUT)},
  }
  return params, rng.standard_normal((N, N_IN)), rng.standard_normal((N, N_OUT))


def model(params, x):
  return jnp.tanh(x @ params['l1']['w'] + params['l1']['b']) @ params['l2']['w'] + params['l2']['b']


def data_loss(params, x, y):
  return jnp.mean(jnp.square(model(params, x) - y))


# ----------------------------------------------------------------------------
# Hand-computed references (numpy, float64).
# ----------------------------------------------------------------------------


def _loss(config, params, x, y, key=None):
  """The regularised loss of `config`, jitted (one compilation instead of one per operation)."""
  return jax.jit(reg.regularised_loss(config, data_loss, model, SPECS))(params, x, y, key)


def _np_forward(p, x):
  h = np.tanh(x @ p['l1']['w'] + p['l1']['b'])
  return h, h @ p['l2']['w'] + p['l2']['b']


def _np_data_loss(p, x, y):
  return np.mean((_np_forward(p, x)[1] - y) ** 2)


def _np_param_grads(p, x, y):
  """∇_θ E by explicit backpropagation through the mean squared error."""
  h, out = _np_forward(p, x)
  d_out = 2 * (out - y) / out.size
  d_z = (d_out @ p['l2']['w'].T) * (1 - h**2)
  return {
    'l1': {'w': x.T @ d_z, 'b': d_z.sum(0)},
    'l2': {'w': h.T @ d_out, 'b': d_out.sum(0)},
  }


def _np_jacobians(p, x):
  """df/dx per example, (N, O, I): W₂ᵀ diag(1 − h²) W₁ᵀ."""
  h, _ = _np_forward(p, x)
  return np.einsum('ho,nh,ih->noi', p['l2']['w'], 1 - h**2, p['l1']['w'])


def _np_sq(tree) -> float:
  return float(sum(np.sum(np.asarray(a) ** 2) for a in jax.tree.leaves(tree)))


def _np_gp(p, points, form, k):
  sq = np.sum(_np_jacobians(p, points) ** 2, axis=(1, 2))
  return np.mean((sq - k**2) ** 2) if form == 'squared' else np.mean((np.sqrt(sq) - k) ** 2)


def _np_spectral(p) -> float:
  return float(sum(np.linalg.svd(p[name]['w'], compute_uv=False)[0] ** 2 for name in ('l1', 'l2')))


# ----------------------------------------------------------------------------
# Each term against its hand-computed value.
# ----------------------------------------------------------------------------


def test_every_term_and_the_total_match_hand_computed_values():
  params, x, y = _problem()
  config = reg.RegulariserConfig(
    l2=0.03, grad_norm=0.7, spectral=0.11, jacobian=0.05, gradient_penalty=0.2, penalty_target=1.5
  )
  with jax.enable_x64(True):
    total, aux = _loss(config, params, x, y)
    total, aux = float(total), {k: float(v) for k, v in aux.items()}
  want = {
    'data_loss': _np_data_loss(params, x, y),
    'l2': _np_sq(params),
    'grad_norm': _np_sq(_np_param_grads(params, x, y)),
    'spectral': _np_spectral(params),
    'jacobian': np.mean(np.sum(_np_jacobians(params, x) ** 2, axis=(1, 2))),  # GC on the batch (Eq 8.1)
    'gradient_penalty': _np_gp(params, x, 'squared', 1.5),  # Eq 6.4 at the data
  }
  assert set(aux) == set(want)
  for name, value in want.items():
    np.testing.assert_allclose(aux[name], value, rtol=1e-10, err_msg=name)
  weighted = sum(getattr(config, name) * want[name] for name in reg.COEFFICIENTS)
  np.testing.assert_allclose(total, want['data_loss'] + weighted, rtol=1e-10)


def test_the_abs_penalty_form_and_a_zero_target():
  params, x, y = _problem(1)
  for target in (0.8, 0.0):
    config = reg.RegulariserConfig(gradient_penalty=1.0, penalty_form='abs', penalty_target=target)
    with jax.enable_x64(True):
      total, aux = _loss(config, params, x, y)
    np.testing.assert_allclose(float(aux['gradient_penalty']), _np_gp(params, x, 'abs', target), rtol=1e-10)
    np.testing.assert_allclose(float(total), _np_data_loss(params, x, y) + _np_gp(params, x, 'abs', target), 1e-10)
  # For K = 0 the two forms are the mean of ‖J‖⁴ and of ‖J‖²: the latter is GC.
  gc = np.mean(np.sum(_np_jacobians(params, x) ** 2, axis=(1, 2)))
  np.testing.assert_allclose(float(aux['gradient_penalty']), gc, rtol=1e-10)


def test_interpolated_and_noisy_penalty_points_and_the_penalty_taken_at_them():
  params, x, y = _problem(2)
  config = reg.RegulariserConfig(gradient_penalty=1.0, penalty_points='interpolate', penalty_target=0.5)
  noisy = reg.RegulariserConfig(gradient_penalty=1.0, penalty_points='noise', penalty_noise=0.3)
  many = np.tile(x, (200, 1))

  @jax.jit
  def run(key):
    penalty = lambda c: reg.regularised_loss(c, data_loss, model, SPECS)(params, x, y, key)[1]['gradient_penalty']
    key_points = jax.random.split(key)[0]  # the half of its key the loss draws its points with
    return (
      reg.regularisation_points(config, x, key),
      penalty(config),
      reg.regularisation_points(config, x, key_points),
      reg.regularisation_points(noisy, many, key),
      penalty(noisy),
      reg.regularisation_points(noisy, x, key_points),
    )

  with jax.enable_x64(True):
    points, interpolated_penalty, interpolated_at, noisy_many, noisy_penalty, noisy_at = (
      np.asarray(a) for a in run(_key(0))
    )

  # 'interpolate': x_i + α_i (x_π(i) − x_i), π a cyclic permutation (no fixed point), α_i ∈ [0, 1].
  partners, alphas = [], []
  for i, p in enumerate(points):
    # The partner j makes p − x_i parallel to x_j − x_i; random data in 3 dimensions leaves no ambiguity.
    fits = []
    for j in range(N):
      if j != i:
        d = x[j] - x[i]
        alpha = float(np.dot(p - x[i], d) / np.dot(d, d))
        fits.append((np.linalg.norm(x[i] + alpha * d - p), j, alpha))
    error, j, alpha = min(fits)
    assert error < 1e-9
    partners.append(j)
    alphas.append(alpha)
  assert sorted(partners) == list(range(N))  # a permutation without fixed points...
  orbit = [0]
  while partners[orbit[-1]] != 0:
    orbit.append(partners[orbit[-1]])
  assert len(orbit) == N  # ...and a single cycle
  assert all(0 <= a <= 1 for a in alphas) and len(set(np.round(alphas, 6))) == N
  assert not np.allclose(interpolated_at, x)
  np.testing.assert_allclose(interpolated_penalty, _np_gp(params, interpolated_at, 'squared', 0.5), rtol=1e-10)

  # 'noise': x + s·ε, ε ~ N(0, I).
  eps = (noisy_many - many) / 0.3
  assert abs(eps.mean()) < 4 / np.sqrt(eps.size) and abs(eps.std() - 1) < 0.05
  np.testing.assert_allclose(noisy_penalty, _np_gp(params, noisy_at, 'squared', 1.0), rtol=1e-10)
  # 'data' leaves the batch as it is.
  np.testing.assert_array_equal(reg.regularisation_points(reg.RegulariserConfig(), x, None), x)


def test_power_iteration_spectral_term_approaches_the_exact_one():
  params, x, y = _problem(3)
  exact = _np_spectral(params)
  with jax.enable_x64(True):
    config = reg.RegulariserConfig(spectral=1.0, spectral_iterations=50)
    _, aux = _loss(config, params, x, y, _key(1))
  assert float(aux['spectral']) <= exact * (1 + 1e-6)  # the vectors are float32 unit vectors
  np.testing.assert_allclose(float(aux['spectral']), exact, rtol=1e-4)


# ----------------------------------------------------------------------------
# Gradients.
# ----------------------------------------------------------------------------


def _flat(tree):
  return np.concatenate([np.ravel(a) for a in jax.tree.leaves(tree)])


def test_the_gradient_norm_term_gives_the_igr_gradient_from_a_dense_hessian():
  """∇_θ (E + (h/4)‖∇_θE‖²) = ∇E + (h/2) H ∇E (Eq 2.36), H the dense Hessian of E."""
  params, x, y = _problem(4)
  h = 0.3
  with jax.enable_x64(True):
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    e = lambda v: data_loss(unravel(v), x, y)
    grad, hessian = (np.asarray(a) for a in jax.jit(lambda v: (jax.grad(e)(v), jax.hessian(e)(v)))(flat))
    loss = reg.regularised_loss(reg.RegulariserConfig(grad_norm=h / 4), data_loss, model, SPECS)
    got = _flat(jax.jit(jax.grad(lambda p: loss(p, x, y, None)[0]))(params))
  np.testing.assert_allclose(grad, _flat(_np_param_grads(params, x, y)), rtol=1e-10)  # the hand backprop agrees
  np.testing.assert_allclose(got, grad + h / 2 * hessian @ grad, rtol=1e-8, atol=1e-12)


def test_the_total_is_differentiable_and_its_gradient_matches_finite_differences():
  params, x, y = _problem(5)
  config = reg.RegulariserConfig(
    l2=0.02,
    grad_norm=0.5,
    spectral=0.1,
    jacobian=0.05,
    gradient_penalty=0.3,
    penalty_form='abs',
    penalty_points='interpolate',
  )
  key = _key(2)
  with jax.enable_x64(True):
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    loss = reg.regularised_loss(config, data_loss, model, SPECS)
    total = lambda v: loss(unravel(v), x, y, key)[0]
    directions = np.random.default_rng(0).standard_normal((4, flat.size))
    eps = 1e-5

    @jax.jit
    def grad_and_differences(v, d):
      shifted = jax.vmap(total)(jnp.concatenate([v + eps * d, v - eps * d]))
      return jax.grad(total)(v), (shifted[:4] - shifted[4:]) / (2 * eps)

    grad, fd = (np.asarray(a) for a in grad_and_differences(flat, directions))
  np.testing.assert_allclose(directions @ grad, fd, rtol=1e-6)
  assert np.all(np.isfinite(grad)) and np.linalg.norm(grad) > 0


# ----------------------------------------------------------------------------
# Inactive terms, validation.
# ----------------------------------------------------------------------------


def test_zero_coefficients_add_exactly_nothing_and_are_not_traced():
  params, x, y = _problem(6)
  calls = {'data_loss': 0}

  def counted_loss(p, xb, yb):
    calls['data_loss'] += 1
    assert not any(isinstance(a, jax.core.Tracer) for a in jax.tree.leaves(p)), 'differentiated needlessly'
    return data_loss(p, xb, yb)

  def never(p, xb):
    raise AssertionError('the model is evaluated although no term needs it')

  loss = reg.regularised_loss(reg.RegulariserConfig(penalty_form='abs', penalty_points='noise'), counted_loss, never)
  assert not reg.needs_key(reg.RegulariserConfig(penalty_points='noise'))
  total, aux = loss(params, x, y, None)
  assert calls['data_loss'] == 1  # called once, on concrete parameters: no gradient of it was taken
  assert set(aux) == {'data_loss'}
  assert float(total) == float(data_loss(params, x, y)) == float(aux['data_loss'])
  # One active term: the others add nothing, bit for bit.
  total, aux = reg.regularised_loss(reg.RegulariserConfig(l2=0.5), data_loss, never)(params, x, y, None)
  assert set(aux) == {'data_loss', 'l2'}
  assert float(total) == float(aux['data_loss'] + 0.5 * aux['l2'])


def test_bad_configs_are_refused_with_the_problems_named():
  assert reg.validate(reg.RegulariserConfig()) == []
  bad = reg.RegulariserConfig(
    l2=-1.0,
    jacobian=float('nan'),
    penalty_form='cubic',
    penalty_points='everywhere',
    penalty_target=-2.0,
    spectral_iterations=-1,
  )
  problems = reg.validate(bad)
  for word in ('l2', 'jacobian', 'penalty_form', 'penalty_points', 'penalty_target', 'spectral_iterations'):
    assert any(p.startswith(word) for p in problems), word
  assert len(problems) == 6
  assert reg.validate(dataclasses.replace(reg.RegulariserConfig(), grad_norm=True))  # a bool is not a number
  with pytest.raises(ValueError, match='penalty_form'):
    reg.regularised_loss(bad, data_loss, model, SPECS)
  with pytest.raises(ValueError, match='specs'):
    reg.regularised_loss(reg.RegulariserConfig(spectral=1.0), data_loss, model)
  params, x, y = _problem()
  with pytest.raises(ValueError, match='key'):
    reg.regularised_loss(reg.RegulariserConfig(gradient_penalty=1.0, penalty_points='noise'), data_loss, model)(
      params, x, y, None
    )
  assert reg.validate('l2=1') == ['expected a RegulariserConfig, got str']
