"""The trainer's edge-of-stability diagnostics against closed forms.

On linear least squares the loss is an exact quadratic: H = JᵀJ/n (J the Jacobian of the predictions in the
flattened parameters) is constant, so λ_0, u_0, gᵀu_0, sc_0 = α_PF(hλ_0)gᵀu_0 and the next gᵀu_0 after a GD step,
(1 − hλ_0)gᵀu_0, are known exactly. A DAL run of a tanh MLP through the runner checks the rate the diagnostics
take and the warm start where H changes.
"""

from __future__ import annotations

import cmath
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from smoothrl.launch.run import config as config_lib
from smoothrl.launch.run import supervised
from smoothrl.launch.run.files import read_metrics
from smoothrl.launch.run.kind import TrainOptions
from smoothrl.supervised import models, trainer
from smoothrl.supervised.data import Dataset

RATES = (0.02, 0.06, 0.11)  # hλ_0 ≈ 0.4 (real-stable), 1.3 (complex-stable), 2.4 (unstable) with λ_0 ≈ 22
DEPTH = 3  # Krylov steps per evaluation: far too few from a random start for the 21 parameters here
EVALUATIONS = 12


def _regression(n=60, d=20, seed=0):
  rng = np.random.default_rng(seed)
  x = (rng.normal(size=(n, d)) * np.geomspace(0.2, 4.0, d)).astype(np.float32)
  y = (x @ rng.normal(size=(d, 1)) + 0.3 * rng.normal(size=(n, 1))).astype(np.float32)
  data = Dataset(x, y, x[:8], y[:8], 1, 'regression', 'linear')
  model = models.make_model(models.ModelConfig(widths=(), activation='linear'), (d,), 1)
  return data, model


def _eos_trainer(data, model, name='sgd', depth=DEPTH, **options):
  metrics = trainer.MetricsConfig(gc=False, edge_of_stability=True, eos_krylov_depth=depth)
  return trainer.make_trainer(model, data, trainer.OptimizerConfig(name=name, **options), metrics=metrics)


def _dense(model, data, params):
  """(H, g, E) of the quadratic ½ mean (f − y)² at params in float64, H = JᵀJ/n from the predictions' Jacobian."""
  flat, unravel = ravel_pytree(params)
  x = jnp.asarray(data.x_train)
  predict = jax.jit(lambda f: model.apply(unravel(f), {}, x, False)[0][:, 0])
  jac = np.asarray(jax.jit(jax.jacobian(predict))(flat), np.float64)
  residual = np.asarray(predict(flat), np.float64) - data.y_train[:, 0]
  n = x.shape[0]
  return jac.T @ jac / n, jac.T @ residual / n, 0.5 * np.mean(residual**2)


@pytest.fixture(scope='module')
def quadratic():
  """Three GD members (the rates of RATES) on the same initial parameters, evaluated EVALUATIONS times in a row
  by one vmapped `observe`: each evaluation starts Lanczos from the u_0 the last one carried in the state.

  Returns (data, model, params, [the metrics of each evaluation], the u_0 carried at the end (member 0)).
  """
  data, model = _regression()
  t = _eos_trainer(data, model)
  state = jax.jit(jax.vmap(t.init))(jnp.stack([jax.random.PRNGKey(0)] * len(RATES)), jnp.asarray(RATES))
  observe = jax.jit(jax.vmap(t.observe))
  history = []
  for _ in range(EVALUATIONS):
    metrics, state = observe(state)
    history.append({k: np.asarray(v) for k, v in metrics.items()})
  member = lambda tree, i: jax.tree.map(lambda a: a[i], tree)
  return data, model, member(state.params, 0), history, member(state.top_vector, 0)


def test_lambda_0_u_0_and_the_projection_are_the_dense_ones(quadratic):
  data, model, params, history, u0 = quadratic
  metrics = history[-1]
  hessian, g, _ = _dense(model, data, params)
  lam, vectors = np.linalg.eigh(hessian)
  dense_u0 = vectors[:, -1] * np.sign(g @ vectors[:, -1])  # the convention gᵀu_0 ≥ 0
  np.testing.assert_allclose(metrics['lambda_0'], lam[-1], rtol=1e-5)
  assert np.all(metrics['lambda_0_residual'] < 1e-3 * lam[-1])
  carried = np.asarray(ravel_pytree(u0)[0], np.float64)
  np.testing.assert_allclose(carried, dense_u0, atol=1e-4)  # the state carries u_0, signed
  np.testing.assert_allclose(metrics['g_u0'], g @ dense_u0, rtol=1e-4)
  assert np.all(metrics['g_u0'] > 0)
  np.testing.assert_allclose(metrics['two_over_h'], [2 / h for h in RATES], rtol=1e-6)


def test_the_stability_coefficient_is_alpha_pf_times_the_projection(quadratic):
  data, model, params, history, _ = quadratic
  metrics = history[-1]
  hessian, g, _ = _dense(model, data, params)
  lam, vectors = np.linalg.eigh(hessian)
  x = abs(g @ vectors[:, -1])
  for i, h in enumerate(RATES):
    z = h * lam[-1]
    sc0 = cmath.log(1 - z + 0j) / z * x  # Definition 3.3.4 on the principal branch: log(z − 1) + iπ beyond z = 1
    assert metrics['sc0_real'][i] == pytest.approx(sc0.real, rel=1e-4, abs=1e-5), (h, z)
    assert metrics['sc0_imag'][i] == pytest.approx(sc0.imag, rel=1e-4, abs=1e-5), (h, z)
  # Real-stable, complex-stable, unstable: Re sc_0 > 0 exactly beyond hλ_0 = 2 (λ_0 > 2/h), Im sc_0 ≠ 0 beyond 1.
  assert list(metrics['sc0_real'] > 0) == [False, False, True]
  assert list(metrics['sc0_imag'] == 0) == [True, False, False]


def test_the_pf_predicts_the_next_projection_of_gradient_descent_exactly(quadratic):
  data, model, params, history, _ = quadratic
  metrics = history[-1]
  hessian, g, loss = _dense(model, data, params)
  lam, vectors = np.linalg.eigh(hessian)
  x = abs(g @ vectors[:, -1])
  for i, h in enumerate(RATES):
    z = h * lam[-1]
    # g_{t+1} = (I − hH)g_t on a quadratic: along u_0 the factor is 1 − hλ_0 (Remark 3.4.2).
    assert metrics['next_g_u0'][i] == pytest.approx((1 - z) * x, rel=1e-4, abs=1e-5)
    assert metrics['next_g_u0_pf'][i] == pytest.approx(metrics['next_g_u0'][i], rel=1e-4, abs=1e-5)
    assert metrics['next_g_u0_ngf'][i] == pytest.approx(math.exp(-z) * x, rel=1e-4)
    assert metrics['next_g_u0_igr'][i] == pytest.approx(math.exp(-z - z * z / 2) * x, rel=1e-4)
    # The NGF does not (e^{−z} > 1 − z, by 0.08x already at z = 0.4), nor the IGR flow beyond z = 1.
    assert abs(metrics['next_g_u0_ngf'][i] - metrics['next_g_u0'][i]) > 0.05 * x, h
    if z > 1:
      assert abs(metrics['next_g_u0_igr'][i] - metrics['next_g_u0'][i]) > 0.05 * x, h
    # E(θ − hg) − E(θ) = −h gᵀg + (h²/2) gᵀHg exactly.
    change = -h * g @ g + h**2 / 2 * g @ hessian @ g
    assert metrics['next_loss_change'][i] == pytest.approx(change, rel=1e-4, abs=1e-4 * loss)


def test_a_supervised_run_records_the_diagnostics_of_a_dal_rate(tmp_path):
  """Through the runner (one vmapped member, evaluations every 2 steps): DAL takes h = 2/‖Hĝ‖ at θ (Eq 3.20), so
  the recorded 2/h is ‖Hg‖/‖g‖ ≤ λ_0 (DAL runs at or beyond the edge of stability); the state carries u_0 from
  one evaluation to the next through the vmapped program and its checkpoints."""
  fields = {
    'steps': 6,
    'log_period': 2,
    'checkpoint_period': 2,
    'data.name': 'iris',
    'model.widths': (6,),
    'model.activation': 'tanh',
    'optimizer.name': 'dal',
    'optimizer.max_rate': 100.0,
    'metrics.gc': False,
    'metrics.edge_of_stability': True,
    'metrics.eos_krylov_depth': 4,
  }
  config = config_lib.replace(supervised.FitConfig(out=str(tmp_path / 'dal')), **fields)
  supervised.validate(config)
  supervised.train([config], TrainOptions(show_progress=False, compiled=True))
  records = [r for r in read_metrics(tmp_path / 'dal' / 'metrics.jsonl') if r['kind'] == 'eval']
  assert [r['step'] for r in records] == [0, 2, 4, 6]
  for r in records:
    assert r['two_over_h'] == pytest.approx(r['hg_norm'] / r['grad_norm'], rel=1e-3)
    assert r['two_over_h'] <= r['lambda_0'] * (1 + 1e-4) and r['g_u0'] >= 0
    h = 2 / r['two_over_h']
    assert r['next_g_u0_pf'] == pytest.approx((1 - h * r['lambda_0']) * r['g_u0'], rel=1e-4, abs=1e-9)
  # The last u_0, warm-started through 3 evaluations of 4 Krylov steps, is an eigenvector to 2% of λ_0.
  assert records[-1]['lambda_0_residual'] < 2e-2 * records[-1]['lambda_0']
  residuals = [r['lambda_0_residual'] for r in records]
  assert all(a > b for a, b in zip(residuals, residuals[1:]))  # each warm start improves on the last


def test_without_the_diagnostics_the_state_is_what_it_was():
  """Off, `top_vector` is () and adds no leaf: the checkpoints of earlier runs restore onto the state."""
  data, model = _regression()
  t = trainer.make_trainer(model, data, trainer.OptimizerConfig(), metrics=trainer.MetricsConfig(gc=False))
  state = jax.eval_shape(t.init, jax.random.PRNGKey(0), 0.1)
  assert state.top_vector == ()
  fields = (state.params, state.model_state, state.opt_state, state.key, state.learning_rate, state.step)
  assert len(jax.tree.leaves(state)) == len(jax.tree.leaves(fields))
  metrics, after = jax.eval_shape(t.observe, state)
  assert 'sc0_real' not in metrics and 'lambda_0' not in metrics
  assert jax.tree.structure(after) == jax.tree.structure(state)


def test_the_warm_start_reaches_what_a_cold_start_of_the_same_depth_does_not(quadratic):
  """Each evaluation spends DEPTH Hessian-vector products; started from the last u_0 they add up (a restarted
  Lanczos), where the first evaluation, from a random vector, falls short of λ_0."""
  data, model, params, history, _ = quadratic
  exact = np.linalg.eigvalsh(_dense(model, data, params)[0])[-1]
  errors = [abs(float(m['lambda_0'][0]) - exact) / exact for m in history]
  assert errors[0] > 1e-2, errors  # cold
  assert errors[-1] < 1e-5, errors  # warm, after EVALUATIONS − 1 restarts
  assert errors[1] < errors[0]
