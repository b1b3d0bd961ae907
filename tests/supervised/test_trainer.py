"""The trainer against closed forms on a linear least-squares model, whose loss is an exact quadratic."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from smoothrl.curvature import eigen
from smoothrl.supervised import losses, models, trainer
from smoothrl.supervised.data import Dataset


def _problem(n=24, d=3, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, d)).astype(np.float32)
  y = (x @ rng.normal(size=(d, 1)) + 0.3 * rng.normal(size=(n, 1))).astype(np.float32)
  data = Dataset(x, y, x[:8], y[:8], 1, 'regression', 'linear')
  model = models.make_model(models.ModelConfig(widths=(), activation='linear'), (d,), 1)
  return data, model


def _loss(model, data):
  return lambda p: losses.squared_error(model.apply(p, {}, jnp.asarray(data.x_train), False)[0], data.y_train)


def _trainer(data, model, name='sgd', **metrics):
  return trainer.make_trainer(
    model, data, trainer.OptimizerConfig(name=name), metrics=trainer.MetricsConfig(gc=False, **metrics)
  )


def test_a_gradient_descent_step_is_theta_minus_h_g():
  data, model = _problem()
  t = _trainer(data, model)
  state = t.init(jax.random.PRNGKey(0), 0.05)
  g = jax.grad(_loss(model, data))(state.params)
  after = jax.jit(t.train, static_argnums=1)(state, 1)
  expected = jax.tree.map(lambda p, d: p - 0.05 * d, state.params, g)
  for a, b in zip(jax.tree.leaves(after.params), jax.tree.leaves(expected)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  assert int(after.step) == 1


def test_the_measured_drift_is_the_closed_form_of_a_quadratic():
  """For E quadratic with Hessian H, θ_NGF(h) − (θ − hg) = h ψ(hH) g with ψ(z) = (e^{−z} − 1 + z)/z."""
  data, model = _problem()
  h = 0.4
  t = _trainer(data, model, ngf_drift=True, ngf_substeps=400)
  state = t.init(jax.random.PRNGKey(1), h)
  metrics = jax.jit(t.evaluate)(state)
  loss = _loss(model, data)
  hessian = np.asarray(eigen.hessian_matrix(lambda p: loss(p), state.params), np.float64)
  g = np.asarray(ravel_pytree(jax.grad(loss)(state.params))[0], np.float64)
  lam, u = np.linalg.eigh(hessian)
  z = h * lam
  psi = np.where(np.abs(z) > 1e-8, (np.exp(-z) - 1 + z) / np.where(z == 0, 1, z), 0.0)
  exact = np.linalg.norm(h * u @ (psi * (u.T @ g)))
  assert float(metrics['ngf_drift']) == pytest.approx(exact, rel=5e-3)
  # Theorem 3.7.1's estimate (h²/2)‖Hg‖ is its leading term: close, and not equal at this h.
  estimate = h**2 / 2 * np.linalg.norm(hessian @ g)
  assert float(metrics['drift']) == pytest.approx(estimate, rel=1e-4)
  assert abs(estimate - exact) / exact > 0.01


def test_a_dal_step_takes_two_over_the_norm_of_h_g_hat():
  data, model = _problem()
  t = _trainer(data, model, name='dal')
  state = t.init(jax.random.PRNGKey(2), 0.1)
  loss = _loss(model, data)
  hessian = np.asarray(eigen.hessian_matrix(lambda p: loss(p), state.params), np.float64)
  flat, unravel = ravel_pytree(state.params)
  g = np.asarray(ravel_pytree(jax.grad(loss)(state.params))[0], np.float64)
  rate = min(2 / np.linalg.norm(hessian @ (g / np.linalg.norm(g))), 5.0)
  after = jax.jit(t.train, static_argnums=1)(state, 1)
  assert float(jax.jit(t.evaluate)(after)['dal_rate']) == pytest.approx(rate, rel=1e-4)
  np.testing.assert_allclose(ravel_pytree(after.params)[0], flat - rate * g, rtol=1e-4, atol=1e-6)


def test_minibatches_visit_every_example_once_an_epoch():
  """With batch b and the loss of a batch linear in its examples' gradients, one epoch of SGD at a tiny rate moves
  the parameters by h Σ_batches g_B = h (n/b) g_full, to first order."""
  data, model = _problem(n=24)
  full = _trainer(data, model)
  mini = trainer.make_trainer(
    model, data, trainer.OptimizerConfig(name='sgd'), batch_size=6, metrics=trainer.MetricsConfig(gc=False)
  )
  h = 1e-4
  s0 = full.init(jax.random.PRNGKey(3), h)
  one_full = ravel_pytree(jax.jit(full.train, static_argnums=1)(s0, 1).params)[0] - ravel_pytree(s0.params)[0]
  epoch = ravel_pytree(jax.jit(mini.train, static_argnums=1)(s0, 4).params)[0] - ravel_pytree(s0.params)[0]
  np.testing.assert_allclose(epoch, 4 * one_full, rtol=2e-2)
