"""Tests for smoothrl.networks.spectral against exact numpy references."""

from __future__ import annotations

import os

# OpenBLAS threads contend with XLA's thread pool on small CPU machines and make
# numpy's SVD orders of magnitude slower; this only helps if numpy is not yet
# loaded in the process.
os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')

# pylint: disable=g-import-not-at-top,wrong-import-position
import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from smoothrl.networks import spectral
from smoothrl.networks.layers import LayerSpec

# ----------------------------------------------------------------------------
# Independent numpy references.
# ----------------------------------------------------------------------------


def _rand(seed: int, shape) -> jax.Array:
  """Gaussian test data drawn with numpy (cheaper than compiling jax.random)."""
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _unit(seed: int, shape) -> jax.Array:
  x = _rand(seed, shape)
  return x / jnp.linalg.norm(x)


def _np_top_sigma(m: np.ndarray) -> float:
  return float(np.linalg.svd(np.asarray(m, np.float64), compute_uv=False)[0])


def _np_conv_batch(x: np.ndarray, w: np.ndarray, stride: int, padding: str) -> np.ndarray:
  """Cross-correlation of NHWC inputs with an HWIO kernel, in numpy."""
  _, h, wd, _ = x.shape
  kh, kw, _, c_out = w.shape
  if padding == 'VALID':
    oh, ow = (h - kh) // stride + 1, (wd - kw) // stride + 1
    pads = ((0, 0), (0, 0))
  else:
    oh, ow = -(-h // stride), -(-wd // stride)
    pad_h = max((oh - 1) * stride + kh - h, 0)
    pad_w = max((ow - 1) * stride + kw - wd, 0)
    pads = ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2))
  xp = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
  out = np.zeros((x.shape[0], oh, ow, c_out), np.float64)
  for a in range(kh):
    for b in range(kw):
      patch = xp[:, a : a + stride * (oh - 1) + 1 : stride, b : b + stride * (ow - 1) + 1 : stride, :]
      out += np.einsum('nijc,co->nijo', patch, w[a, b])
  return out


def _np_conv_matrix(spec: LayerSpec, w: np.ndarray) -> np.ndarray:
  """Operator matrix built column by column from numpy convolutions of basis inputs."""
  n = int(np.prod(spec.input_shape))
  basis = np.eye(n).reshape((n, *spec.input_shape))
  outs = _np_conv_batch(basis, np.asarray(w, np.float64), spec.stride, spec.padding)
  return outs.reshape(n, -1).T


def _converged(spec: LayerSpec, w: jax.Array, iters: int, seed: int = 0):
  state = {spec.name: _unit(1000 + seed, spec.input_shape)}
  run = jax.jit(lambda w, s: spectral.estimate([spec], {spec.name: {'w': w}}, s, iters))
  sigmas, state = run(w, state)
  return sigmas[spec.name], state[spec.name]


CONV_CASES = [
  pytest.param(LayerSpec('c', 'conv', (10, 10, 4)), (3, 3, 4, 16), id='3x3-s1-valid'),
  pytest.param(LayerSpec('c', 'conv', (9, 9, 3), padding='SAME'), (3, 3, 3, 5), id='3x3-s1-same'),
  pytest.param(LayerSpec('c', 'conv', (20, 20, 2), stride=4), (8, 8, 2, 4), id='8x8-s4-valid'),
  pytest.param(LayerSpec('c', 'conv', (9, 9, 2), stride=2, padding='SAME'), (4, 4, 2, 3), id='4x4-s2-same'),
]

# ----------------------------------------------------------------------------
# Dense layers.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize('shape', [(12, 5), (5, 12), (16, 16), (30, 1)])
def test_dense_sigma_matches_svd(shape):
  w = _rand(shape[0] * 100 + shape[1], shape)
  spec = LayerSpec('d', 'dense', (shape[0],))
  sig, v = _converged(spec, w, 200)
  np.testing.assert_allclose(float(sig), _np_top_sigma(np.asarray(w)), rtol=1e-3)
  assert v.shape == (shape[0],)
  np.testing.assert_allclose(float(jnp.linalg.norm(v)), 1.0, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(spectral.operator_matrix(spec, w)), np.asarray(w).T, rtol=1e-6)


def test_dense_apply_operator_and_shape():
  w = _rand(0, (4, 3))
  x = _rand(1, (4,))
  spec = LayerSpec('d', 'dense', (4,))
  np.testing.assert_allclose(np.asarray(spectral.apply_operator(spec, w, x)), np.asarray(x) @ np.asarray(w), rtol=1e-5)
  assert spectral.output_shape(spec, w) == (3,)


# ----------------------------------------------------------------------------
# Convolutional layers.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize('spec,w_shape', CONV_CASES)
def test_conv_operator_matrix_matches_numpy(spec, w_shape):
  w = _rand(1, w_shape)
  expected = _np_conv_matrix(spec, np.asarray(w))
  got = np.asarray(spectral.operator_matrix(spec, w))
  assert got.shape == expected.shape
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
  out_shape = spectral.output_shape(spec, w)
  assert int(np.prod(out_shape)) == expected.shape[0]


@pytest.mark.parametrize('spec,w_shape', CONV_CASES)
def test_conv_sigma_matches_svd(spec, w_shape):
  w = _rand(2, w_shape)
  exact = _np_top_sigma(_np_conv_matrix(spec, np.asarray(w)))
  sig, v = _converged(spec, w, 400)
  np.testing.assert_allclose(float(sig), exact, rtol=1e-3)
  assert v.shape == spec.input_shape
  np.testing.assert_allclose(float(jnp.linalg.norm(v)), 1.0, rtol=1e-5)


def test_conv_operator_norm_differs_from_reshaped_kernel_norm():
  spec = LayerSpec('c', 'conv', (10, 10, 4))
  w = _rand(3, (3, 3, 4, 16))
  operator_norm = _np_top_sigma(_np_conv_matrix(spec, np.asarray(w)))
  kernel_norm = _np_top_sigma(np.asarray(w).reshape(-1, 16))
  assert abs(operator_norm - kernel_norm) > 0.2 * kernel_norm
  np.testing.assert_allclose(float(spectral.exact_sigma(spec, w)), operator_norm, rtol=1e-4)


def test_exact_sigma_dense():
  w = _rand(30, (7, 4))
  spec = LayerSpec('d', 'dense', (7,))
  np.testing.assert_allclose(float(spectral.exact_sigma(spec, w)), _np_top_sigma(np.asarray(w)), rtol=1e-5)


def test_non_overlapping_conv_norm_equals_reshaped_kernel_norm():
  # With stride equal to the kernel size the operator is block diagonal.
  spec = LayerSpec('c', 'conv', (8, 8, 2), stride=4)
  w = _rand(4, (4, 4, 2, 3))
  np.testing.assert_allclose(
    float(spectral.exact_sigma(spec, w)), _np_top_sigma(np.asarray(w).reshape(-1, 3)), rtol=1e-4
  )


# ----------------------------------------------------------------------------
# Adjoint.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize(
  'spec,w_shape',
  CONV_CASES
  + [
    pytest.param(LayerSpec('d', 'dense', (7,)), (7, 3), id='dense'),
  ],
)
def test_apply_transpose_is_adjoint(spec, w_shape):
  w = _rand(5, w_shape)
  x = _rand(6, spec.input_shape)
  y = _rand(7, spectral.output_shape(spec, w))
  ax = spectral.apply_operator(spec, w, x)
  aty = spectral.apply_transpose(spec, w, y)
  assert aty.shape == spec.input_shape
  lhs = float(jnp.vdot(ax, y))
  rhs = float(jnp.vdot(x, aty))
  np.testing.assert_allclose(lhs, rhs, rtol=1e-4, atol=1e-4)
  m = _np_conv_matrix(spec, np.asarray(w)) if spec.kind == 'conv' else (np.asarray(w).T)
  np.testing.assert_allclose(np.asarray(aty).ravel(), m.T @ np.asarray(y).ravel(), rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------
# Gradients.
# ----------------------------------------------------------------------------


def test_sigma_gradient_is_top_singular_outer_product():
  spec = LayerSpec('d', 'dense', (9,))
  w = _rand(6, (9, 6))
  _, v = _converged(spec, w, 300)
  grad = jax.grad(spectral.sigma, argnums=1)(spec, w, v)
  u_np, _, vt_np = np.linalg.svd(np.asarray(w, np.float64))
  # w = U S Vᵀ with inputs on the left, so dσ/dw = u₁ v₁ᵀ (sign-invariant).
  expected = np.outer(u_np[:, 0], vt_np[0])
  assert float(jnp.abs(grad).max()) > 0.0
  np.testing.assert_allclose(np.asarray(grad), expected, atol=1e-3)


def test_sigma_gradient_at_any_v_and_no_gradient_to_v():
  spec = LayerSpec('d', 'dense', (5,))
  w = _rand(7, (5, 4))
  v = _unit(8, spec.input_shape)
  gw, gv = jax.grad(spectral.sigma, argnums=(1, 2))(spec, w, v)
  av = np.asarray(v) @ np.asarray(w)
  np.testing.assert_allclose(np.asarray(gw), np.outer(np.asarray(v), av / np.linalg.norm(av)), rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(np.asarray(gv), 0.0)


def test_stop_gradient_sigma_gives_zero_gradient():
  spec = LayerSpec('d', 'dense', (5,))
  w = _rand(9, (5, 4))
  v = _unit(10, spec.input_shape)
  g = jax.grad(lambda w_: jax.lax.stop_gradient(spectral.sigma(spec, w_, v)))(w)
  np.testing.assert_array_equal(np.asarray(g), 0.0)


def test_power_iteration_carries_no_gradient():
  spec = LayerSpec('d', 'dense', (5,))
  w = _rand(11, (5, 4))
  v = _unit(12, spec.input_shape)
  g = jax.grad(lambda w_: jnp.sum(spectral.power_iteration(spec, w_, v, 3)))(w)
  np.testing.assert_array_equal(np.asarray(g), 0.0)


def test_estimate_sigma_is_differentiable_in_params():
  spec = LayerSpec('d', 'dense', (5,))
  params = {'d': {'w': _rand(13, (5, 4)), 'b': jnp.zeros(4)}}
  state = {'d': _unit(14, (5,))}
  g = jax.grad(lambda p: spectral.estimate([spec], p, state)[0]['d'])(params)
  assert float(jnp.abs(g['d']['w']).max()) > 0.0
  np.testing.assert_array_equal(np.asarray(g['d']['b']), 0.0)


# ----------------------------------------------------------------------------
# Persistence.
# ----------------------------------------------------------------------------


def test_zero_iterations_returns_v_unchanged():
  spec = LayerSpec('d', 'dense', (5,))
  w = _rand(15, (5, 4))
  v = _unit(16, spec.input_shape)
  np.testing.assert_array_equal(np.asarray(spectral.power_iteration(spec, w, v, 0)), np.asarray(v))


def test_repeated_single_steps_equal_multi_step():
  spec = LayerSpec('c', 'conv', (6, 6, 2), padding='SAME')
  w = _rand(17, (3, 3, 2, 3))
  v = _unit(18, spec.input_shape)
  v1 = v
  for _ in range(5):
    v1 = spectral.power_iteration(spec, w, v1, 1)
  v5 = spectral.power_iteration(spec, w, v, 5)
  np.testing.assert_allclose(np.asarray(v1), np.asarray(v5), atol=1e-5)


@pytest.mark.parametrize(
  'spec,w_shape',
  [
    pytest.param(LayerSpec('d', 'dense', (20,)), (20, 10), id='dense'),
    pytest.param(LayerSpec('c', 'conv', (8, 8, 2)), (3, 3, 2, 4), id='conv'),
  ],
)
def test_persistent_state_converges_monotonically(spec, w_shape):
  w = _rand(19, w_shape)
  params = {spec.name: {'w': w}, 'other': {'w': jnp.ones((3, 3))}}
  exact = _np_top_sigma(_np_conv_matrix(spec, np.asarray(w)) if spec.kind == 'conv' else np.asarray(w))
  step = jax.jit(lambda p, s: spectral.estimate([spec], p, s, 1))
  state = spectral.init_state(jax.random.PRNGKey(20), [spec])
  history = []
  for _ in range(300):
    sigmas, state = step(params, state)
    assert set(state) == {spec.name}
    assert state[spec.name].shape == spec.input_shape
    assert state[spec.name].dtype == jnp.float32
    np.testing.assert_allclose(float(jnp.linalg.norm(state[spec.name])), 1.0, rtol=1e-5)
    history.append(float(sigmas[spec.name]))
  history = np.asarray(history)
  assert np.all(np.diff(history) >= -1e-5 * exact)
  assert np.all(history <= exact * (1 + 1e-5))
  assert history[0] < history[-1]
  np.testing.assert_allclose(history[-1], exact, rtol=1e-3)
  # Reading σ from the state does not advance it.
  from_state = spectral.sigmas_from_state([spec], params, state)
  np.testing.assert_allclose(float(from_state[spec.name]), history[-1], rtol=1e-6)


def test_zero_weights_keep_unit_vector():
  spec = LayerSpec('d', 'dense', (4,))
  v = _unit(21, spec.input_shape)
  w = jnp.zeros((4, 3))
  v_new = spectral.power_iteration(spec, w, v, 3)
  np.testing.assert_allclose(np.asarray(v_new), np.asarray(v))
  assert float(spectral.sigma(spec, w, v_new)) == 0.0
  g = jax.grad(spectral.sigma, argnums=1)(spec, w, v_new)
  assert np.all(np.isfinite(np.asarray(g)))


def test_init_state_shapes_and_norms():
  specs = [LayerSpec('a', 'dense', (20,)), LayerSpec('b', 'conv', (8, 8, 2))]
  state = spectral.init_state(jax.random.PRNGKey(22), specs)
  assert set(state) == {'a', 'b'}
  for s in specs:
    assert state[s.name].shape == s.input_shape
    np.testing.assert_allclose(float(jnp.linalg.norm(state[s.name])), 1.0, rtol=1e-5)
  assert not np.allclose(np.asarray(state['a']), np.asarray(spectral.init_state(jax.random.PRNGKey(23), specs)['a']))


# ----------------------------------------------------------------------------
# rho.
# ----------------------------------------------------------------------------


def test_rho_is_product_of_exact_sigmas():
  specs = [
    LayerSpec('c', 'conv', (6, 6, 2)),
    LayerSpec('d1', 'dense', (10,)),
    LayerSpec('d2', 'dense', (8,)),
  ]
  params = {
    'c': {'w': _rand(24, (3, 3, 2, 3)), 'b': jnp.zeros(3)},
    'd1': {'w': _rand(25, (10, 8))},
    'd2': {'w': _rand(26, (8, 2))},
  }
  exact = {
    'c': _np_top_sigma(_np_conv_matrix(specs[0], np.asarray(params['c']['w']))),
    'd1': _np_top_sigma(np.asarray(params['d1']['w'])),
    'd2': _np_top_sigma(np.asarray(params['d2']['w'])),
  }
  state = {s.name: _unit(40 + i, s.input_shape) for i, s in enumerate(specs)}
  sigmas, _ = jax.jit(lambda p, s: spectral.estimate(specs, p, s, 500))(params, state)
  for names in [('d1',), ('c', 'd2'), ('c', 'd1', 'd2')]:
    np.testing.assert_allclose(float(spectral.rho(sigmas, names)), np.prod([exact[n] for n in names]), rtol=2e-3)
  assert float(spectral.rho(sigmas, [])) == 1.0
  assert float(spectral.rho({}, ())) == 1.0


# ----------------------------------------------------------------------------
# rho_estimator on a plain haiku model.
# ----------------------------------------------------------------------------


def test_rho_estimator_on_haiku_mlp():
  def forward(x):
    return hk.nets.MLP([8, 8, 3])(x)

  net = hk.without_apply_rng(hk.transform(forward))
  params = net.init(jax.random.PRNGKey(26), jnp.zeros((1, 8)))
  names = sorted(params)
  assert len(names) == 3
  in_sizes = {n: params[n]['w'].shape[0] for n in names}
  specs = [LayerSpec(n, 'dense', (in_sizes[n],)) for n in names]
  selected = names[:2]
  est = spectral.rho_estimator(specs, selected, jax.random.PRNGKey(27))
  state = est.init(params)
  assert set(state) == set(selected)
  update = jax.jit(est.update)
  for _ in range(200):
    r, state = update(params, state)
  expected = np.prod([_np_top_sigma(np.asarray(params[n]['w'])) for n in selected])
  np.testing.assert_allclose(float(r), expected, rtol=1e-3)
  # ρ is a constant to autodiff.
  g = jax.jit(jax.grad(lambda p: est.update(p, state)[0]))(params)
  for leaf in jax.tree_util.tree_leaves(g):
    np.testing.assert_array_equal(np.asarray(leaf), 0.0)
  empty = spectral.rho_estimator(specs, [], jax.random.PRNGKey(0))
  r_empty, s_empty = empty.update(params, empty.init(params))
  assert float(r_empty) == 1.0 and s_empty == {}


# ----------------------------------------------------------------------------
# rho_estimator on flax.linen parameters (`kernel`, HWIO conv kernels).
# ----------------------------------------------------------------------------


def _flax_and_haiku_nets():
  """The same network in flax.linen and haiku: conv 5 3x3 VALID, conv 4 3x3 stride 2 SAME, dense 3 (nested in flax),
  on 6x6x2 inputs; the haiku parameters are the flax ones under haiku's names and `w` / `b`."""
  nn = pytest.importorskip('flax.linen')

  class Head(nn.Module):
    @nn.compact
    def __call__(self, x):
      return nn.Dense(3)(x)

  class FlaxNet(nn.Module):
    @nn.compact
    def __call__(self, x):
      x = nn.relu(nn.Conv(5, (3, 3), padding='VALID')(x))
      x = nn.relu(nn.Conv(4, (3, 3), strides=2, padding='SAME')(x))
      return Head()(x.reshape(x.shape[0], -1))

  def forward(x):
    x = jax.nn.relu(hk.Conv2D(5, 3, padding='VALID', name='c0')(x))
    x = jax.nn.relu(hk.Conv2D(4, 3, stride=2, padding='SAME', name='c1')(x))
    return hk.Linear(3, name='d')(hk.Flatten()(x))

  x = _rand(40, (2, 6, 6, 2))
  # The tree flax's `init` makes (its structure and shapes, from `eval_shape`: an eager init is slow on a CPU), filled
  # with Gaussian weights and nonzero biases.
  shapes = jax.eval_shape(FlaxNet().init, jax.random.PRNGKey(41), x)
  leaves, treedef = jax.tree.flatten(shapes)
  variables = jax.tree.unflatten(
    treedef, [_rand(50 + i, leaf.shape) * (0.3 if len(leaf.shape) > 1 else 0.1) for i, leaf in enumerate(leaves)]
  )
  flax_params = variables['params']
  assert set(variables) == {'params'} and set(flax_params) == {'Conv_0', 'Conv_1', 'Head_0'}
  haiku_net = hk.without_apply_rng(hk.transform(forward))
  layers = {'c0': flax_params['Conv_0'], 'c1': flax_params['Conv_1'], 'd': flax_params['Head_0']['Dense_0']}
  haiku_params = {name: {'w': p['kernel'], 'b': p['bias']} for name, p in layers.items()}
  jax.tree.map(
    lambda a, b: np.testing.assert_equal(a.shape, b.shape),
    haiku_params,
    jax.eval_shape(haiku_net.init, jax.random.PRNGKey(0), x),
  )
  # The same weights give the same function: flax's kernels are haiku's layouts, HWIO and (in, out).
  np.testing.assert_allclose(FlaxNet().apply(variables, x), haiku_net.apply(haiku_params, x), rtol=1e-5, atol=1e-6)
  flax_specs = [
    LayerSpec('Conv_0', 'conv', (6, 6, 2)),
    LayerSpec('Conv_1', 'conv', (4, 4, 5), 2, 'SAME'),
    LayerSpec('Head_0/Dense_0', 'dense', (16,)),
  ]
  haiku_specs = [
    LayerSpec(name, s.kind, s.input_shape, s.stride, s.padding) for name, s in zip(('c0', 'c1', 'd'), flax_specs)
  ]
  return variables, flax_specs, haiku_params, haiku_specs


def test_rho_estimator_on_flax_dense_and_conv_matches_svd_and_haiku():
  variables, flax_specs, haiku_params, haiku_specs = _flax_and_haiku_nets()
  flax_params = variables['params']
  dense_kernel = np.asarray(flax_params['Head_0']['Dense_0']['kernel'])
  conv_kernel = flax_params['Conv_1']['kernel']
  # The conv operator read from the flax kernel is flax's convolution without its bias.
  x = _rand(42, (4, 4, 5))
  np.testing.assert_allclose(
    spectral.apply_operator(flax_specs[1], conv_kernel, x),
    _np_conv_batch(np.asarray(x)[None], np.asarray(conv_kernel), 2, 'SAME')[0],
    rtol=1e-4,
    atol=1e-5,
  )
  for selected in ([2], [1, 2], [0, 1, 2]):
    flax_names = [flax_specs[i].name for i in selected]
    haiku_names = [haiku_specs[i].name for i in selected]
    # 300 power-iteration steps in one update.
    flax_est = spectral.rho_estimator(flax_specs, flax_names, jax.random.PRNGKey(43), 300)
    haiku_est = spectral.rho_estimator(haiku_specs, haiku_names, jax.random.PRNGKey(43), 300)
    results = []
    for est, params in ((flax_est, flax_params), (flax_est, variables), (haiku_est, haiku_params)):
      r, state = est.update(params, est.init(params))
      results.append((float(r), [np.asarray(v) for v in state.values()]))
    exact = {
      2: _np_top_sigma(dense_kernel),
      1: _np_top_sigma(_np_conv_matrix(flax_specs[1], np.asarray(conv_kernel))),
      0: _np_top_sigma(_np_conv_matrix(flax_specs[0], np.asarray(flax_params['Conv_0']['kernel']))),
    }
    np.testing.assert_allclose(results[0][0], np.prod([exact[i] for i in selected]), rtol=1e-3)
    for other in results[1:]:  # flax's whole variables, and haiku's parameters of the same weights: the same rho
      np.testing.assert_allclose(other[0], results[0][0], rtol=1e-6)
      for a, b in zip(other[1], results[0][1]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  # The dense layer alone is the top singular value of its kernel.
  est = spectral.rho_estimator(flax_specs, ['Head_0/Dense_0'], jax.random.PRNGKey(44), 300)
  r, _ = jax.jit(est.update)(flax_params, est.init(flax_params))
  np.testing.assert_allclose(float(r), np.linalg.svd(dense_kernel, compute_uv=False)[0], rtol=1e-4)


def test_weight_lookup_names_what_it_found():
  spec = LayerSpec('d', 'dense', (4,))
  v = {'d': _unit(0, (4,))}
  with pytest.raises(KeyError, match='no weight "w" \\(haiku\\) or "kernel" \\(flax\\)'):
    spectral.estimate([spec], {'d': {'bias': jnp.ones(3)}}, v)
  with pytest.raises(KeyError, match='both "w" and "kernel"'):
    spectral.estimate([spec], {'d': {'w': jnp.ones((4, 3)), 'kernel': jnp.ones((4, 3))}}, v)
  with pytest.raises(KeyError, match="'Outer_0/d' not found in params"):
    spectral.estimate(
      [LayerSpec('Outer_0/d', 'dense', (4,))], {'Outer_0': {'e': {'kernel': jnp.ones((4, 3))}}}, {'Outer_0/d': v['d']}
    )


# ----------------------------------------------------------------------------
# Errors.
# ----------------------------------------------------------------------------


def test_errors():
  dense = LayerSpec('d', 'dense', (4,))
  conv = LayerSpec('c', 'conv', (6, 6, 2))
  params = {'d': {'w': jnp.ones((4, 3))}, 'c': {'w': jnp.ones((3, 3, 2, 2))}}
  state = {'d': _unit(0, (4,)), 'c': _unit(1, (6, 6, 2))}

  with pytest.raises(KeyError, match="'missing' not found in params"):
    spectral.estimate([LayerSpec('missing', 'dense', (4,))], params, {'missing': jnp.ones(4) / 2.0})
  with pytest.raises(KeyError, match='missing vectors'):
    spectral.estimate([dense, conv], params, {'d': state['d']})
  with pytest.raises(KeyError, match='unexpected vectors'):
    spectral.estimate([dense], params, state)
  with pytest.raises(ValueError, match='rank 2'):
    spectral.sigma(dense, jnp.ones((3, 3, 4, 3)), state['d'])
  with pytest.raises(ValueError, match='rank 4'):
    spectral.power_iteration(conv, jnp.ones((4, 3)), state['c'])
  with pytest.raises(ValueError, match='input channels'):
    spectral.apply_operator(conv, jnp.ones((3, 3, 5, 2)), state['c'])
  with pytest.raises(ValueError, match='does not take inputs'):
    spectral.apply_operator(dense, jnp.ones((5, 3)), state['d'])
  with pytest.raises(ValueError, match='expected input_shape'):
    spectral.sigma(dense, params['d']['w'], jnp.ones(5))
  with pytest.raises(ValueError, match='num_iterations must be >= 0'):
    spectral.power_iteration(dense, params['d']['w'], state['d'], -1)
  with pytest.raises(ValueError, match='num_iterations must be >= 0'):
    spectral.estimate([dense], params, {'d': state['d']}, -2)
  with pytest.raises(TypeError, match='num_iterations'):
    spectral.power_iteration(dense, params['d']['w'], state['d'], 1.5)
  with pytest.raises(ValueError, match='num_iterations must be >= 1'):
    spectral.rho_estimator([dense], ['d'], jax.random.PRNGKey(0), 0)
  with pytest.raises(ValueError, match='not in specs'):
    spectral.rho_estimator([dense], ['x'], jax.random.PRNGKey(0))
  with pytest.raises(KeyError, match='No σ for layers'):
    spectral.rho({'d': jnp.ones(())}, ['d', 'x'])
  with pytest.raises(ValueError, match='kind must be'):
    spectral.init_state(jax.random.PRNGKey(0), [LayerSpec('z', 'linear', (3,))])
  with pytest.raises(ValueError, match='Duplicate layer names'):
    spectral.init_state(jax.random.PRNGKey(0), [dense, dense])
  with pytest.raises(ValueError, match='padding'):
    spectral.apply_operator(LayerSpec('c', 'conv', (6, 6, 2), padding='FULL'), params['c']['w'], state['c'])
  with pytest.raises(ValueError, match='larger than the input'):
    spectral.output_shape(LayerSpec('c', 'conv', (2, 2, 2)), params['c']['w'])
