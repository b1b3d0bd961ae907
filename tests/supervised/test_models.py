"""Tests for smoothrl.supervised.models: shapes, layer specs, SN against SVDs, ResNet-18, vmap, spec strings."""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from smoothrl.supervised import models


def _x(shape, n=5, seed=0):
  return jnp.asarray(np.random.default_rng(seed).standard_normal((n, *shape)), jnp.float32)


def _conv_matrix(spec, w) -> np.ndarray:
  """The conv operator as a dense matrix, applied to the standard basis with XLA's convolution."""
  n = math.prod(spec.input_shape)
  basis = jnp.eye(n, dtype=jnp.float32).reshape((n, *spec.input_shape))
  out = jax.lax.conv_general_dilated(
    basis, w, (spec.stride, spec.stride), spec.padding, dimension_numbers=('NHWC', 'HWIO', 'NHWC')
  )
  return np.asarray(out.reshape(n, -1), np.float64)


def _top_sigma(spec, w) -> float:
  m = np.asarray(w, np.float64) if spec.kind == 'dense' else _conv_matrix(spec, w)
  return float(np.linalg.svd(m, compute_uv=False)[0])


def _jit(model):
  return jax.jit(model.apply, static_argnums=3)


def _weights(params) -> dict[str, tuple[int, ...]]:
  return {name: tuple(p['w'].shape) for name, p in params.items() if 'w' in p}


# ----------------------------------------------------------------------------
# Shapes and specs.
# ----------------------------------------------------------------------------


def test_mlp_shapes_flatten_images_and_allow_no_hidden_layer():
  for config, shape in [
    (models.ModelConfig(widths=(7, 5), activation='linear'), (4,)),
    (models.ModelConfig(widths=(6,)), (8, 8, 1)),
    (models.ModelConfig(widths=()), (3,)),
  ]:
    model = models.make_model(config, shape, 3)
    params, state = model.init(jax.random.PRNGKey(0), _x(shape))
    assert state == {}
    out, new_state = _jit(model)(params, state, _x(shape), True)
    assert out.shape == (5, 3) and new_state == {}
    sizes = [math.prod(shape), *config.widths]
    assert [s.input_shape for s in model.specs] == [(n,) for n in sizes]
    assert [s.name for s in model.specs] == [f'hidden_{i}' for i in range(len(config.widths))] + ['out']
    assert _weights(params) == {s.name: (s.input_shape[0], n) for s, n in zip(model.specs, [*config.widths, 3])}
    if config.activation == 'linear':
      # A deep linear network (thesis Eq 8.5) is affine: f(e_i) - f(0) is row i of W1 W2 W3.
      product = params['hidden_0']['w'] @ params['hidden_1']['w'] @ params['out']['w']
      out, _ = _jit(model)(params, state, jnp.concatenate([jnp.zeros((1, 4)), jnp.eye(4)]), False)
      np.testing.assert_allclose(out[1:] - out[:1], product, rtol=1e-5, atol=1e-6)


def test_cnn_shapes_and_specs_at_the_real_input_shapes():
  config = models.ModelConfig(kind='cnn', channels=(4, 6), widths=(9,))
  model = models.make_model(config, (8, 8, 1), 10)
  params, state = model.init(jax.random.PRNGKey(1), _x((8, 8, 1)))
  out, _ = _jit(model)(params, state, _x((8, 8, 1)), False)
  assert out.shape == (5, 10) and state == {}
  # 8x8 -> conv (SAME) -> pool -> 4x4 -> conv -> pool -> 2x2x6 = 24 features.
  expected = [('conv_0', (8, 8, 1)), ('conv_1', (4, 4, 4)), ('hidden_0', (24,)), ('out', (9,))]
  assert [(s.name, s.input_shape) for s in model.specs] == expected
  assert _weights(params) == {'conv_0': (3, 3, 1, 4), 'conv_1': (3, 3, 4, 6), 'hidden_0': (24, 9), 'out': (9, 10)}
  assert all(set(params[name]) == {'w', 'b'} for name in params)  # top-level haiku modules
  assert all(s.padding == 'SAME' and s.stride == 1 for s in model.specs[:2])
  # An odd size is pooled with SAME padding: 7 -> 4 -> 2 (each layer checks its input against its spec).
  odd = models.make_model(config, (7, 7, 2), 3)
  assert odd.specs[1].input_shape == (4, 4, 4) and odd.specs[2].input_shape == (2 * 2 * 6,)
  shapes, _ = jax.eval_shape(odd.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, 7, 7, 2), jnp.float32))
  assert shapes['hidden_0']['w'].shape == (24, 9)
  with pytest.raises(ValueError, match=r'expects inputs of shape \(8, 8, 1\)'):
    model.apply(params, state, _x((9, 9, 1)), False)


def _resnet_param_count(k: int, c_in: int, classes: int) -> int:
  """ResNet-18 counted by hand: conv weights (no bias), batch-norm scale and offset, the dense output layer."""
  count = 9 * c_in * k + 2 * k  # stem and its batch norm
  c = k
  for stage in range(4):
    width = k * 2**stage
    for _ in range(2):
      count += 9 * c * width + 2 * width + 9 * width * width + 2 * width
      if c != width:
        count += c * width + 2 * width  # 1x1 projection shortcut and its batch norm
      c = width
  return count + c * classes + classes


def test_resnet18_has_the_known_parameter_count():
  # CIFAR-style ResNet-18 on 3-channel inputs has 11,173,962 parameters; one input channel saves 2 * 9 * 64.
  assert _resnet_param_count(64, 3, 10) == 11_173_962
  model = models.make_model(models.ModelConfig(kind='resnet18'), (28, 28, 1), 10)
  params, state = jax.eval_shape(model.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((2, 28, 28, 1), jnp.float32))
  assert sum(math.prod(p.shape) for p in jax.tree.leaves(params)) == 11_173_962 - 2 * 9 * 64
  assert len(model.specs) == 1 + 16 + 3 + 1  # stem, 8 blocks of 2 convolutions, 3 projections, output
  weights = _weights(params)
  assert list(weights) and set(weights) == {s.name for s in model.specs}
  for spec in model.specs:
    w = weights[spec.name]
    assert (w[0] if spec.kind == 'dense' else w[2]) == spec.input_shape[-1]
  spatial = {s.name: s.input_shape[:2] for s in model.specs if s.kind == 'conv'}
  assert spatial['stem'] == (28, 28) and spatial['stage2_block1_conv1'] == (28, 28)
  assert spatial['stage2_block1_conv2'] == (14, 14) and spatial['stage4_block2_conv2'] == (4, 4)
  assert model.specs[-1].input_shape == (512,) and weights['out'] == (512, 10)


def _np_conv(x: np.ndarray, w: np.ndarray, stride: int) -> np.ndarray:
  """A SAME convolution in numpy (XLA's padding: the extra row and column go at the end)."""
  k = w.shape[0]
  pads = []
  for size in x.shape[1:3]:
    total = max((-(-size // stride) - 1) * stride + k - size, 0)
    pads.append((total // 2, total - total // 2))
  x = np.pad(x, ((0, 0), *pads, (0, 0)))
  windows = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))[:, ::stride, ::stride]
  return np.einsum('nhwcij,ijco->nhwo', windows, w)


def _np_resnet18(params, x: np.ndarray, k: int) -> np.ndarray:
  """ResNet-18 in training mode (batch statistics) from its parameters, in float64 numpy."""
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)

  def bn(name, y):
    mean, var = y.mean(axis=(0, 1, 2)), y.var(axis=(0, 1, 2))
    return (y - mean) / np.sqrt(var + 1e-5) * p[name]['scale'].ravel() + p[name]['offset'].ravel()

  relu = lambda y: np.maximum(y, 0.0)
  x = relu(bn('stem_bn', _np_conv(x, p['stem']['w'], 1)))
  for stage in range(1, 5):
    for block in (1, 2):
      name = f'stage{stage}_block{block}'
      stride = 2 if stage > 1 and block == 1 else 1
      y = relu(bn(f'{name}_bn1', _np_conv(x, p[f'{name}_conv1']['w'], stride)))
      y = bn(f'{name}_bn2', _np_conv(y, p[f'{name}_conv2']['w'], 1))
      if f'{name}_shortcut' in p:
        x = bn(f'{name}_shortcut_bn', _np_conv(x, p[f'{name}_shortcut']['w'], stride))
      x = relu(x + y)
  return x.mean(axis=(1, 2)) @ p['out']['w'] + p['out']['b']


def test_a_width_reduced_resnet_matches_a_numpy_reference():
  k = 2
  model = models.make_model(models.ModelConfig(kind='resnet18', resnet_width=k), (28, 28, 1), 10)
  x = _x((28, 28, 1), n=4)
  params, state = model.init(jax.random.PRNGKey(0), x)
  assert sum(math.prod(p.shape) for p in jax.tree.leaves(params)) == _resnet_param_count(k, 1, 10)
  # Random batch-norm scales and offsets and output bias, so that the comparison sees them.
  rng = np.random.default_rng(1)

  def perturbed(key, value):
    if key == 'w':
      return np.asarray(value)
    return rng.uniform(0.5, 1.5, value.shape) if key == 'scale' else rng.normal(0.0, 0.3, value.shape)

  params = {name: {key: perturbed(key, v) for key, v in layer.items()} for name, layer in params.items()}
  params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
  apply = jax.jit(model.apply, static_argnums=3)
  out, trained = apply(params, state, x, True)
  np.testing.assert_allclose(out, _np_resnet18(params, np.asarray(x, np.float64), k), rtol=2e-3, atol=2e-4)
  changed = [k for k in state if not jax.tree.all(jax.tree.map(np.array_equal, state[k], trained[k]))]
  assert changed and all('_bn' in k or k.startswith('stem_bn') for k in changed)
  out_eval, same = apply(params, trained, x, False)
  assert jax.tree.all(jax.tree.map(np.array_equal, same, trained))
  assert out_eval.shape == (4, 10) and not np.allclose(out_eval, out)  # running averages, not batch statistics


# ----------------------------------------------------------------------------
# Initialisation.
# ----------------------------------------------------------------------------


def test_initialisers_and_init_scale():
  # A standard normal truncated to [-2, 2] has standard deviation 0.87962566.
  fan_in, width = 400, 300
  for initialiser, scale in [('standard', 3.0), ('glorot', 0.5)]:
    config = models.ModelConfig(widths=(width,), initialiser=initialiser, init_scale=scale)
    model = models.make_model(config, (fan_in,), 2)
    params, _ = model.init(jax.random.PRNGKey(2), _x((fan_in,)))
    w = np.asarray(params['hidden_0']['w'])
    if initialiser == 'standard':
      bound, std = 2 * scale / fan_in**0.5, 0.87962566 * scale / fan_in**0.5
      out_bound = 2 * scale / width**0.5
    else:
      bound = scale * (6 / (fan_in + width)) ** 0.5
      std = bound / 3**0.5
      out_bound = scale * (6 / (width + 2)) ** 0.5
    assert np.abs(w).max() <= bound * (1 + 1e-6) and np.abs(w).max() > 0.98 * bound
    np.testing.assert_allclose(w.std(), std, rtol=0.02)
    assert np.abs(params['out']['w']).max() <= out_bound * (1 + 1e-6)
    assert np.all(params['hidden_0']['b'] == 0) and np.all(params['out']['b'] == 0)
    # Layers draw different numbers, and so do different keys.
    first = w.ravel()[: 2 * width] / bound
    assert not np.allclose(first, params['out']['w'].ravel() / out_bound, rtol=1e-3, atol=1e-4)
    other, _ = model.init(jax.random.PRNGKey(3), _x((fan_in,)))
    assert not np.allclose(other['hidden_0']['w'], w)


# ----------------------------------------------------------------------------
# Spectral Normalisation.
# ----------------------------------------------------------------------------


_SHAPE = (6, 6, 1)
_K = 0.5
# SN on the first and the output layer, with K below every layer's σ at initialisation.
_SN = {
  'mlp': models.ModelConfig(widths=(20, 10), sn_layers=(0, -1), lipschitz=_K, power_iterations=10),
  'cnn': models.ModelConfig(
    kind='cnn', channels=(3, 4), widths=(10,), sn_layers=(0, -1), lipschitz=_K, power_iterations=10
  ),
}
_PASSES = 10


@functools.cache
def _build(config: models.ModelConfig, shape: tuple[int, ...] = _SHAPE, outputs: int = 4):
  """A model and its jitted `apply`, shared by the tests that use the same config (one compilation)."""
  model = models.make_model(config, shape, outputs)
  return model, _jit(model)


@functools.cache
def _trained(kind: str):
  """Parameters, the initial SN state and the state after `_PASSES` training passes (100 power-iteration steps)."""
  model, apply = _build(_SN[kind])
  x = _x(_SHAPE)
  params, initial = model.init(jax.random.PRNGKey(4), x)
  state = initial
  for _ in range(_PASSES):
    _, state = apply(params, state, x, True)
  return params, initial, state, x


def _operator(spec, w) -> np.ndarray:
  """The layer's operator as an (outputs, inputs) matrix."""
  return (np.asarray(w, np.float64) if spec.kind == 'dense' else _conv_matrix(spec, w)).T


@pytest.mark.parametrize('kind', ['mlp', 'cnn'])
def test_sn_bounds_the_chosen_layers_by_k_and_leaves_the_others(kind):
  model, apply = _build(_SN[kind])
  plain, apply_plain = _build(dataclasses.replace(_SN[kind], sn_layers=()))
  params, initial, state, x = _trained(kind)
  names = [s.name for s in model.specs]
  assert model.sn_names == (names[0], 'out') and set(state) == set(model.sn_names)
  assert all(set(state[name]) == {'v'} for name in state)
  for spec in model.specs:
    if spec.name in model.sn_names:
      v0 = np.asarray(initial[spec.name]['v'], np.float64)
      assert v0.shape == spec.input_shape
      np.testing.assert_allclose(np.linalg.norm(v0), 1.0, rtol=1e-5)
      # The vector persists across passes: v <- AᵀAv / ‖AᵀAv‖, 10 steps a pass, from where the last pass stopped.
      a = _operator(spec, params[spec.name]['w'])
      u = v0.ravel()
      for _ in range(_PASSES * _SN[kind].power_iterations):
        u = a.T @ (a @ u)
        u /= np.linalg.norm(u)
      np.testing.assert_allclose(np.asarray(state[spec.name]['v']).ravel(), u, atol=2e-4)
  effective = model.normalise(params, state)
  for spec in model.specs:
    before, after = _top_sigma(spec, params[spec.name]['w']), _top_sigma(spec, effective[spec.name]['w'])
    if spec.name in model.sn_names:
      assert before > _K
      assert after <= _K + 1e-3 and abs(after - _K) < 1e-3
    else:
      np.testing.assert_array_equal(effective[spec.name]['w'], params[spec.name]['w'])
    np.testing.assert_array_equal(effective[spec.name]['b'], params[spec.name]['b'])
  # The forward pass is the plain network on the normalised weights; evaluation does not move the vectors.
  out, same = apply(params, state, x, False)
  assert jax.tree.all(jax.tree.map(np.array_equal, same, state))
  np.testing.assert_allclose(out, apply_plain(effective, {}, x, False)[0], rtol=1e-5, atol=1e-6)
  # A training pass first advances the vectors, then normalises with them.
  out_train, advanced = apply(params, initial, x, True)
  assert not np.allclose(advanced[names[0]]['v'], initial[names[0]]['v'])
  np.testing.assert_allclose(out_train, apply_plain(model.normalise(params, advanced), {}, x, False)[0], rtol=1e-5)


def test_sn_divides_only_above_k_unless_always():
  model, apply = _build(_SN['mlp'])
  params, _, state, x = _trained('mlp')
  # Scaling a layer does not move its singular vectors: scale both SN layers to σ = K / 10.
  small = dict(params)
  for spec in model.specs:
    if spec.name in model.sn_names:
      w = params[spec.name]['w']
      small[spec.name] = dict(params[spec.name], w=w * (0.1 * _K / _top_sigma(spec, w)))
  out, state = apply(small, state, x, True)
  effective = model.normalise(small, state)
  for name in model.sn_names:
    np.testing.assert_array_equal(effective[name]['w'], small[name]['w'])  # max(σ/K, 1) = 1
  _, apply_plain = _build(dataclasses.replace(_SN['mlp'], sn_layers=()))
  np.testing.assert_allclose(out, apply_plain(small, {}, x, False)[0], rtol=1e-6)
  always, apply_always = _build(dataclasses.replace(_SN['mlp'], sn_always=True))
  _, state = apply_always(small, state, x, True)
  effective = always.normalise(small, state)
  for spec in always.specs:
    if spec.name in always.sn_names:
      np.testing.assert_allclose(_top_sigma(spec, effective[spec.name]['w']), _K, rtol=1e-4)  # divided by σ/K < 1


def test_sn_gradient_treats_sigma_as_a_constant_unless_asked():
  model, _ = _build(_SN['mlp'])
  plain, _ = _build(dataclasses.replace(_SN['mlp'], sn_layers=()))
  through, _ = _build(dataclasses.replace(_SN['mlp'], sn_grad_through_sigma=True))
  params, _, state, x = _trained('mlp')

  def grad(m, p):
    return jax.jit(jax.grad(lambda q: jnp.sum(m.apply(q, state, x, False)[0] ** 2)))(p)

  g, g_plain, g_through = grad(model, params), grad(plain, model.normalise(params, state)), grad(through, params)
  for spec in model.specs:
    name = spec.name
    if name in model.sn_names:
      s = _top_sigma(spec, params[name]['w']) / _K
      assert s > 1
      # d f(w/s)/dw = f'(w/s)/s at a constant s.
      np.testing.assert_allclose(g[name]['w'], g_plain[name]['w'] / s, rtol=2e-3, atol=1e-6)
      assert not np.allclose(g_through[name]['w'], g[name]['w'], rtol=1e-2, atol=1e-4)
      # Through σ the layer computes K w / σ(w), unchanged when w is scaled: no gradient along w.
      g_w, w = np.asarray(g_through[name]['w'], np.float64), np.asarray(params[name]['w'], np.float64)
      assert abs(np.sum(g_w * w)) < 1e-4 * np.linalg.norm(g_w) * np.linalg.norm(w)
    else:
      np.testing.assert_allclose(g[name]['w'], g_plain[name]['w'], rtol=2e-3, atol=1e-6)
    np.testing.assert_allclose(g[name]['b'], g_plain[name]['b'], rtol=2e-3, atol=1e-6)


def test_vmap_over_two_parameter_sets():
  model, apply = _build(_SN['mlp'])
  x = _x(_SHAPE)
  keys = jnp.stack([jax.random.PRNGKey(8), jax.random.PRNGKey(9)])
  params, state = jax.vmap(model.init, in_axes=(0, None))(keys, x)
  batched = jax.jit(jax.vmap(functools.partial(model.apply, is_training=True), in_axes=(0, 0, None)))
  out, new_state = batched(params, state, x)
  assert out.shape == (2, 5, 4)
  for i in range(2):
    p_i, s_i = jax.tree.map(lambda a, i=i: np.asarray(a)[i], (params, state))
    p_ref, s_ref = model.init(keys[i], x)
    assert jax.tree.all(jax.tree.map(lambda a, b: np.allclose(a, b), (p_i, s_i), (p_ref, s_ref)))
    o_i, n_i = apply(p_i, s_i, x, True)
    np.testing.assert_allclose(out[i], o_i, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new_state['out']['v'][i], n_i['out']['v'], rtol=1e-5, atol=1e-6)
  assert not np.allclose(out[0], out[1])


# ----------------------------------------------------------------------------
# Validation and spec strings.
# ----------------------------------------------------------------------------


def test_layer_indexing_from_the_output_and_from_the_input():
  config = models.ModelConfig(widths=(4, 4, 4))
  assert models.layer_names(config) == ('hidden_0', 'hidden_1', 'hidden_2', 'out')
  assert models.resolve_layers(config, (-1, -2)) == ('hidden_2', 'out')
  assert models.resolve_layers(config, (0, -3)) == ('hidden_0', 'hidden_1')
  assert models.resolve_layers(config, (3,)) == ('out',)
  with pytest.raises(ValueError, match=r'out of range.*-1 = out'):
    models.resolve_layers(config, (-5,))
  with pytest.raises(ValueError, match='more than once: hidden_0'):
    models.resolve_layers(config, (0, -4))
  resnet = models.layer_names(models.ModelConfig(kind='resnet18'))
  assert resnet[0] == 'stem' and resnet[-1] == 'out' and resnet[-2] == 'stage4_block2_conv2'


def test_validate_and_make_model_name_the_problems():
  assert models.validate(models.ModelConfig()) == []
  problems = models.validate(models.ModelConfig(kind='mpl', activation='rellu', lipschitz=0.0))
  assert "did you mean 'mlp'" in problems[0] and "did you mean 'relu'" in problems[1] and 'lipschitz' in problems[2]
  assert 'out of range' in models.validate(models.ModelConfig(sn_layers=(3,)))[0]
  assert 'H, W, C' in models.validate(models.ModelConfig(kind='cnn'), (10,))[0]
  assert models.validate(models.ModelConfig(kind='cnn', channels=()))
  assert models.validate(models.ModelConfig(power_iterations=0))
  with pytest.raises(ValueError, match='num_outputs'):
    models.make_model(models.ModelConfig(), (3,), 0)
  with pytest.raises(ValueError, match='resnet18 takes'):
    models.make_model(models.ModelConfig(kind='resnet18'), (3,), 2)


def test_parse_model():
  assert models.parse_model('mlp:100,100') == {'kind': 'mlp', 'widths': (100, 100)}
  assert models.parse_model('mlp') == {'kind': 'mlp'}
  assert models.parse_model('mlp:') == {'kind': 'mlp', 'widths': ()}
  assert models.parse_model('cnn') == {'kind': 'cnn'}
  assert models.parse_model(' cnn: 32, 64 ') == {'kind': 'cnn', 'channels': (32, 64)}
  assert models.parse_model('resnet18') == {'kind': 'resnet18'}
  assert models.parse_model('resnet18:16') == {'kind': 'resnet18', 'resnet_width': 16}
  config = models.ModelConfig(**models.parse_model('mlp:7'))
  assert config.widths == (7,) and config.kind == 'mlp'
  for bad, message in [
    ('vgg', 'unknown kind'),
    ('mlp:10,x', 'positive ints'),
    ('mlp:0', 'positive ints'),
    ('cnn:', 'at least one'),
    ('resnet18:8,8', 'one base width'),
    ('mlps:4', "did you mean 'mlp'"),
  ]:
    with pytest.raises(ValueError, match=message):
      models.parse_model(bad)
