"""Supervised models in haiku: MLPs, a small VGG-style CNN and ResNet-18, with SN on any chosen layers.

Spectral Normalisation (thesis Section 6.3, Eq 6.3; Miyato et al.) divides a layer's weights by max(σ/K, 1) (or by
σ/K with `sn_always`), with σ the spectral norm of the layer's bias-free linear operator at its real input shape
(for a convolution the operator norm, not that of the reshaped kernel) from `smoothrl.networks.spectral`, the one
source of σ. Each normalised layer keeps its power-iteration vector as haiku state (`state[name]['v']`, of the
layer's input shape); a forward pass with `is_training` first advances it by `power_iterations` steps on the
current weights, then uses σ = ‖A v‖. σ carries no gradient unless `sn_grad_through_sigma`. As in the critics
(`networks.critics.Linear`), the division is applied to the layer's output before its bias, which equals dividing
the weights.

Layers are haiku modules at the top level, so `params[name]['w']` (and `['b']`) is a layer's weight (dense
(in, out), conv HWIO) and `Model.specs` describes each one as a `LayerSpec`:

  mlp:      hidden_0, ..., hidden_{n-1}, out                     (image inputs are flattened)
  cnn:      conv_0, ..., conv_{m-1}, hidden_0, ..., out          (3x3 SAME convolutions, each followed by the
                                                                  activation and a 2x2 stride-2 max pool)
  resnet18: stem, stage{s}_block{b}_conv1, stage{s}_block{b}_conv2, [stage{s}_block1_shortcut], ..., out

`sn_layers` selects layers as `resolve_layers` reads them: negative indices count from the output (-1 the output
layer, -2 the one before it, as the RL critics index them), non-negative ones from the input (0 the first layer).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

from smoothrl.networks import spectral, spectral_norm
from smoothrl.networks.layers import LayerSpec

KINDS: tuple[str, ...] = ('mlp', 'cnn', 'resnet18')
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
  'relu': jax.nn.relu,
  'elu': jax.nn.elu,
  'tanh': jnp.tanh,
  'linear': lambda x: x,
}
INITIALISERS: tuple[str, ...] = ('standard', 'glorot')

# ResNet-18 (He et al., CIFAR-style): four stages of two basic blocks; stage s has width k * 2**(s-1) and stride 2
# from the second stage on.
_RESNET_STAGES = 4
_RESNET_BLOCKS = 2
_BN_DECAY = 0.9
_BN_EPS = 1e-5


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """A supervised model.

  Attributes:
    kind: 'mlp', 'cnn' or 'resnet18'.
    widths: the hidden widths of the MLP, or of the CNN's dense head; any number, none included.
    activation: 'relu', 'elu', 'tanh' or 'linear' (the identity: a deep linear network, thesis Eq 8.5).
    channels: the CNN's convolution widths, one 3x3 convolution and 2x2 max pool per entry.
    sn_layers: the layers SN normalises (see `resolve_layers`); () for none.
    lipschitz: K; a normalised layer's weights are divided by max(σ/K, 1).
    power_iterations: power-iteration steps per training forward pass on each normalised layer.
    init_scale: multiplies every initial weight (thesis Figure 8.2 varies depth at initialisation).
    initialiser: 'standard' (a normal truncated at two standard deviations, standard deviation 1/sqrt(fan_in):
      haiku's default, the thesis' 'standard initialisation') or 'glorot' (uniform, variance 2/(fan_in + fan_out)).
    resnet_width: ResNet-18's base width k: the stem and the four stages have k, k, 2k, 4k, 8k channels (64 is the
      standard network; Nakkiran et al.'s width parameter for double descent, thesis Figure 8.8).
    sn_always: divide by σ/K even when σ < K (Miyato et al.), not only when σ > K.
    sn_grad_through_sigma: backpropagate through σ (off: σ is a constant in the gradient).
  """

  kind: str = 'mlp'
  widths: tuple[int, ...] = (100, 100)
  activation: str = 'relu'
  channels: tuple[int, ...] = (32, 64)
  sn_layers: tuple[int, ...] = ()
  lipschitz: float = 1.0
  power_iterations: int = 1
  init_scale: float = 1.0
  initialiser: str = 'standard'
  resnet_width: int = 64
  sn_always: bool = False
  sn_grad_through_sigma: bool = False


class Model(NamedTuple):
  """A model's pure functions and its layers.

  Attributes:
    init: `(key, x) -> (params, state)`; `x` is a batch of inputs (or one input of the model's input shape).
    apply: `(params, state, x, is_training) -> (outputs, new_state)`; `x` a batch, `is_training` a static bool:
      batch statistics and an advance of the SN vectors when true, the running averages and the vectors as they
      are when false. `state` holds the SN vectors (`state[name]['v']`) and ResNet batch-norm statistics, and is
      `{}` without either.
    specs: every dense and conv layer from input to output, at its real input shape (σ of any layer:
      `networks.spectral`).
    sn_names: the layers SN normalises, from input to output.
    normalise: `(params, state) -> params` with each normalised layer's `w` divided by max(σ/K, 1) for σ from the
      state's vectors: the weights the forward pass that returned `state` used (the other layers untouched).
  """

  init: Callable[[jax.Array, jax.Array], tuple[hk.Params, hk.State]]
  apply: Callable[[hk.Params, hk.State, jax.Array, bool], tuple[jax.Array, hk.State]]
  specs: tuple[LayerSpec, ...]
  sn_names: tuple[str, ...]
  normalise: Callable[[hk.Params, hk.State], hk.Params]


# ----------------------------------------------------------------------------
# Specs, layer names and the SN selection.
# ----------------------------------------------------------------------------


def _resnet_blocks(width: int) -> list[tuple[str, int, int]]:
  """(prefix, channels, stride) of each basic block, from input to output."""
  blocks = []
  for s in range(1, _RESNET_STAGES + 1):
    for b in range(1, _RESNET_BLOCKS + 1):
      stride = 2 if s > 1 and b == 1 else 1
      blocks.append((f'stage{s}_block{b}', width * 2 ** (s - 1), stride))
  return blocks


def _same(size: int, stride: int) -> int:
  return -(-size // stride)


class _LayerPlan(NamedTuple):
  """One layer: its spec, its output width (units or channels), its kernel size (conv) and whether it has a bias."""

  spec: LayerSpec
  size: int
  kernel: int = 1
  bias: bool = True

  @property
  def weight_shape(self) -> tuple[int, ...]:
    if self.spec.kind == 'dense':
      return (self.spec.input_shape[0], self.size)
    return (self.kernel, self.kernel, self.spec.input_shape[-1], self.size)


def _plan(config: ModelConfig, input_shape: tuple[int, ...], num_outputs: int) -> tuple[_LayerPlan, ...]:
  """Every dense and conv layer from input to output, the one description the forward pass follows."""
  plan = []
  if config.kind == 'mlp':
    size = math.prod(input_shape)
  elif config.kind == 'cnn':
    h, w, c = input_shape
    for i, channels in enumerate(config.channels):
      plan.append(_LayerPlan(LayerSpec(f'conv_{i}', 'conv', (h, w, c), 1, 'SAME'), channels, 3))
      h, w, c = _same(h, 2), _same(w, 2), channels
    size = h * w * c
  elif config.kind == 'resnet18':
    h, w, c = input_shape
    k = config.resnet_width
    plan.append(_LayerPlan(LayerSpec('stem', 'conv', (h, w, c), 1, 'SAME'), k, 3, False))
    c = k
    for prefix, channels, stride in _resnet_blocks(k):
      h2, w2 = _same(h, stride), _same(w, stride)
      plan.append(_LayerPlan(LayerSpec(f'{prefix}_conv1', 'conv', (h, w, c), stride, 'SAME'), channels, 3, False))
      plan.append(_LayerPlan(LayerSpec(f'{prefix}_conv2', 'conv', (h2, w2, channels), 1, 'SAME'), channels, 3, False))
      if stride != 1 or c != channels:
        plan.append(_LayerPlan(LayerSpec(f'{prefix}_shortcut', 'conv', (h, w, c), stride, 'SAME'), channels, 1, False))
      h, w, c = h2, w2, channels
    return tuple(plan) + (_LayerPlan(LayerSpec('out', 'dense', (c,)), num_outputs),)
  else:
    raise ValueError(f'unknown model kind {config.kind!r}; valid: {", ".join(KINDS)}')
  for i, width in enumerate(config.widths):
    plan.append(_LayerPlan(LayerSpec(f'hidden_{i}', 'dense', (size,)), width))
    size = width
  plan.append(_LayerPlan(LayerSpec('out', 'dense', (size,)), num_outputs))
  return tuple(plan)


def layer_specs(config: ModelConfig, input_shape: Sequence[int]) -> tuple[LayerSpec, ...]:
  """Every dense and conv layer of the model for inputs of `input_shape` (one example), from input to output."""
  return tuple(p.spec for p in _plan(config, tuple(int(d) for d in input_shape), 1))


def layer_names(config: ModelConfig) -> tuple[str, ...]:
  """The model's dense and conv layers from input to output (they do not depend on the input shape)."""
  shape = (32, 32, 1) if config.kind in ('cnn', 'resnet18') else (1,)
  return tuple(s.name for s in layer_specs(config, shape))


def _selection_problems(names: Sequence[str], indices: Sequence[int]) -> list[str]:
  depth = len(names)
  problems = []
  resolved = []
  for index in indices:
    if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
      problems.append(f'layer index {index!r} is not an integer')
    elif not -depth <= index < depth:
      problems.append(f'layer index {index} is out of range (use -1 ... {-depth} from the output, 0 ... {depth - 1})')
    else:
      resolved.append(int(index) % depth)
  repeated = sorted({names[i] for i in resolved if resolved.count(i) > 1})
  if repeated:
    problems.append(f'layers selected more than once: {", ".join(repeated)}')
  return problems


def resolve_layers(config: ModelConfig, indices: Sequence[int] | None = None) -> tuple[str, ...]:
  """The names of the layers `indices` (default `config.sn_layers`) select, from input to output.

  -1 is the output layer, -2 the layer before it, ...; 0 is the first layer, 1 the second, ... . Raises a
  ValueError listing the layers for an index out of range, a non-integer or a layer selected twice.
  """
  indices = tuple(config.sn_layers if indices is None else indices)
  names = layer_names(config)
  problems = _selection_problems(names, indices)
  if problems:
    depth = len(names)
    listing = ', '.join(f'{i - depth} = {name}' for i, name in enumerate(names))
    raise ValueError(
      f'invalid layer selection {list(indices)}: {"; ".join(problems)}. The model has {depth} layers, indexed from '
      f'the output: {listing}'
    )
  return tuple(names[i] for i in sorted({int(i) % len(names) for i in indices}))


# ----------------------------------------------------------------------------
# Validation and spec strings.
# ----------------------------------------------------------------------------


def _positive_ints(value: object) -> bool:
  return isinstance(value, tuple) and all(
    isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) and v >= 1 for v in value
  )


def _suggest(value: object, valid: Sequence[str]) -> str:
  close = difflib.get_close_matches(str(value), valid, n=1)
  return (f'did you mean {close[0]!r}? ' if close else '') + f'valid: {", ".join(valid)}'


def validate(config: ModelConfig, input_shape: Sequence[int] | None = None) -> list[str]:
  """The problems of `config` (for inputs of `input_shape` when given), each a sentence naming the field."""
  problems = []
  if config.kind not in KINDS:
    problems.append(f'model.kind {config.kind!r} is not a model; {_suggest(config.kind, KINDS)}')
  if not _positive_ints(config.widths):
    problems.append(f'model.widths must be a tuple of positive ints (possibly empty), got {config.widths!r}')
  if config.activation not in ACTIVATIONS:
    problems.append(f'model.activation {config.activation!r} is unknown; {_suggest(config.activation, ACTIVATIONS)}')
  if not _positive_ints(config.channels) or (config.kind == 'cnn' and not config.channels):
    problems.append(f'model.channels must be a non-empty tuple of positive ints, got {config.channels!r}')
  if config.initialiser not in INITIALISERS:
    problems.append(
      f'model.initialiser {config.initialiser!r} is unknown; {_suggest(config.initialiser, INITIALISERS)}'
    )
  if not _positive_ints((config.resnet_width,)):
    problems.append(f'model.resnet_width must be a positive int, got {config.resnet_width!r}')
  for field in ('lipschitz', 'init_scale'):
    value = getattr(config, field)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
      problems.append(f'model.{field} must be a finite number > 0, got {value!r}')
  if not _positive_ints((config.power_iterations,)):
    problems.append(f'model.power_iterations must be an int >= 1, got {config.power_iterations!r}')
  for field in ('sn_always', 'sn_grad_through_sigma'):
    if not isinstance(getattr(config, field), bool):
      problems.append(f'model.{field} must be a bool, got {getattr(config, field)!r}')
  if not isinstance(config.sn_layers, tuple):
    problems.append(f'model.sn_layers must be a tuple of layer indices, got {config.sn_layers!r}')
  elif not problems:
    names = layer_names(config)
    found = _selection_problems(names, config.sn_layers)
    if found:
      problems.append(f'model.sn_layers {list(config.sn_layers)}: {"; ".join(found)} ({len(names)} layers)')
  if input_shape is not None:
    shape = tuple(input_shape)
    if not shape or not _positive_ints(shape):
      problems.append(f'the input shape must be a non-empty tuple of positive ints, got {shape!r}')
    elif config.kind in ('cnn', 'resnet18') and len(shape) != 3:
      problems.append(f'a {config.kind} takes (H, W, C) images; the data has input shape {shape}')
  return problems


def parse_model(spec: str) -> dict[str, object]:
  """Parses a model spec string into `ModelConfig` fields.

  'mlp' -> {'kind': 'mlp'}; 'mlp:100,100' -> {'kind': 'mlp', 'widths': (100, 100)}; 'mlp:' -> an MLP with no hidden
  layer (`widths` ()); 'cnn' and 'cnn:32,64' (`channels`); 'resnet18' and 'resnet18:16' (`resnet_width`).
  """
  forms = "'mlp', 'mlp:100,100', 'mlp:', 'cnn', 'cnn:32,64', 'resnet18', 'resnet18:16'"
  if not isinstance(spec, str):
    raise ValueError(f'a model spec must be a string such as {forms}, got {spec!r}')
  kind, colon, rest = spec.strip().partition(':')
  kind = kind.strip()
  if kind not in KINDS:
    raise ValueError(f'model spec {spec!r}: unknown kind {kind!r}; {_suggest(kind, KINDS)} (forms: {forms})')
  if not colon:
    return {'kind': kind}
  parts = [p.strip() for p in rest.split(',')] if rest.strip() else []
  if not all(p.isdigit() and int(p) > 0 for p in parts):
    raise ValueError(f'model spec {spec!r}: {rest!r} is not a comma-separated list of positive ints (forms: {forms})')
  values = tuple(int(p) for p in parts)
  if kind == 'mlp':
    return {'kind': kind, 'widths': values}
  if kind == 'cnn':
    if not values:
      raise ValueError(f'model spec {spec!r}: a cnn needs at least one convolution width, as in cnn:32,64')
    return {'kind': kind, 'channels': values}
  if len(values) != 1:
    raise ValueError(f'model spec {spec!r}: resnet18 takes one base width, as in resnet18:16')
  return {'kind': kind, 'resnet_width': values[0]}


# ----------------------------------------------------------------------------
# Layers.
# ----------------------------------------------------------------------------


class _Noise(NamedTuple):
  """The random numbers of `Model.init`, drawn in one call for every weight and SN vector (one call rather than
  one per layer keeps the compiled init small): standard normals truncated to [-2, 2] ('standard') or U[-1, 1]
  ('glorot'). An SN vector is its slice normalised to unit length: a random start for power iteration."""

  weights: jax.Array
  vectors: jax.Array


def _weight_init(config: ModelConfig, shape: tuple[int, ...], noise: jax.Array) -> hk.initializers.Initializer:
  """`init_scale` times haiku's default weights ('standard': a normal truncated to two standard deviations of
  standard deviation 1/sqrt(fan_in)), or Glorot's uniform weights of variance 2/(fan_in + fan_out)."""
  fan_in = math.prod(shape[:-1])
  fan_out = math.prod(shape[:-2]) * shape[-1]
  if config.initialiser == 'glorot':
    scale = (6.0 / (fan_in + fan_out)) ** 0.5
  else:
    scale = 1.0 / fan_in**0.5
  return lambda s, d: (config.init_scale * scale * noise.reshape(s)).astype(d)


def _unit_init(noise: jax.Array) -> hk.initializers.Initializer:
  return lambda s, d: (noise / jnp.maximum(jnp.linalg.norm(noise), 1e-12)).reshape(s).astype(d)


class _Layer(hk.Module):
  """A dense or conv layer of `plan`, optionally spectrally normalised (see the module docstring).

  At initialisation its weights come from `noise` (`_Noise.weights[offset:offset + size]`), and its SN vector from
  `vector_noise`; neither is used afterwards.
  """

  def __init__(self, plan: _LayerPlan, config: ModelConfig, sn: bool, noise: jax.Array | None, vector_noise):
    super().__init__(name=plan.spec.name)
    self.plan, self.config, self.sn, self.noise, self.vector_noise = plan, config, sn, noise, vector_noise

  def __call__(self, x: jax.Array, is_training: bool) -> jax.Array:
    spec, config = self.plan.spec, self.config
    if tuple(x.shape[1:]) != spec.input_shape:
      raise ValueError(f'layer {spec.name!r} expects inputs of shape {spec.input_shape}, got {tuple(x.shape[1:])}')
    shape = self.plan.weight_shape
    w = hk.get_parameter('w', shape, x.dtype, init=_weight_init(config, shape, self.noise))
    if hk.running_init():
      # Initial parameters and state depend on shapes only: the init skips the layer's arithmetic.
      out = jax.eval_shape(functools.partial(_linear, spec), x, w)
      y = jnp.zeros(out.shape, out.dtype)
      if self.sn:
        hk.get_state('v', spec.input_shape, w.dtype, init=_unit_init(self.vector_noise))
    else:
      y = _linear(spec, x, w)
    if self.sn and not hk.running_init():
      v = hk.get_state('v')
      if is_training:
        v = spectral.power_iteration(spec, w, v, config.power_iterations)
        hk.set_state('v', v)
      sigma = spectral.sigma(spec, w, v)
      if not config.sn_grad_through_sigma:
        sigma = jax.lax.stop_gradient(sigma)
      y = y / spectral_norm.scale(sigma, config.lipschitz, config.sn_always)
    if self.plan.bias:
      y = y + hk.get_parameter('b', (self.plan.size,), x.dtype, init=jnp.zeros)
    return y


def _linear(spec: LayerSpec, x: jax.Array, w: jax.Array) -> jax.Array:
  """A batch through the layer's bias-free linear map (the operator `networks.spectral` takes the norm of)."""
  if spec.kind == 'dense':
    return x @ w
  return jax.lax.conv_general_dilated(
    x, w, (spec.stride, spec.stride), spec.padding, dimension_numbers=('NHWC', 'HWIO', 'NHWC')
  )


def _batch_norm(name: str, x: jax.Array, is_training: bool) -> jax.Array:
  return hk.BatchNorm(True, True, _BN_DECAY, _BN_EPS, name=name)(x, is_training)


def _offsets(sizes: Sequence[tuple[str, int]]) -> tuple[dict[str, int], int]:
  offsets, total = {}, 0
  for name, size in sizes:
    offsets[name] = total
    total += size
  return offsets, total


def _forward(config: ModelConfig, plan: tuple[_LayerPlan, ...], sn_names: tuple[str, ...]):
  by_name = {p.spec.name: p for p in plan}
  w_offsets, _ = _offsets([(p.spec.name, math.prod(p.weight_shape)) for p in plan])
  v_offsets, _ = _offsets([(p.spec.name, math.prod(p.spec.input_shape)) for p in plan if p.spec.name in sn_names])
  act = ACTIVATIONS[config.activation]

  def forward(x: jax.Array, is_training: bool, noise: _Noise | None = None) -> jax.Array:
    def layer(name: str) -> _Layer:
      p = by_name[name]
      w_noise = v_noise = None
      if noise is not None:
        start = w_offsets[name]
        w_noise = noise.weights[start : start + math.prod(p.weight_shape)]
        if name in sn_names:
          start = v_offsets[name]
          v_noise = noise.vectors[start : start + math.prod(p.spec.input_shape)]
      return _Layer(p, config, name in sn_names, w_noise, v_noise)

    x = jnp.asarray(x, jnp.float32)
    if config.kind == 'resnet18':
      x = act(_batch_norm('stem_bn', layer('stem')(x, is_training), is_training))
      for prefix, _, _ in _resnet_blocks(config.resnet_width):
        y = act(_batch_norm(f'{prefix}_bn1', layer(f'{prefix}_conv1')(x, is_training), is_training))
        y = _batch_norm(f'{prefix}_bn2', layer(f'{prefix}_conv2')(y, is_training), is_training)
        if f'{prefix}_shortcut' in by_name:
          x = _batch_norm(f'{prefix}_shortcut_bn', layer(f'{prefix}_shortcut')(x, is_training), is_training)
        x = act(x + y)
      return layer('out')(jnp.mean(x, axis=(1, 2)), is_training)
    if config.kind == 'cnn':
      for i in range(len(config.channels)):
        x = act(layer(f'conv_{i}')(x, is_training))
        x = hk.max_pool(x, window_shape=(1, 2, 2, 1), strides=(1, 2, 2, 1), padding='SAME')
    x = x.reshape(x.shape[0], -1)
    for i in range(len(config.widths)):
      x = act(layer(f'hidden_{i}')(x, is_training))
    return layer('out')(x, is_training)

  return forward


def make_model(config: ModelConfig, input_shape: tuple[int, ...], num_outputs: int) -> Model:
  """Builds the model of `config` for inputs of `input_shape` (one example) and `num_outputs` outputs.

  MLPs flatten image inputs. The CNN: per entry of `channels` a 3x3 SAME convolution, the activation and a 2x2
  stride-2 max pool; then the dense head of `widths` and the output layer. ResNet-18 (CIFAR-style, as for 28x28x1
  inputs): a 3x3 stride-1 stem without max pool, four stages of two basic blocks (3x3 convolutions with batch norm,
  a 1x1 convolution with batch norm on the shortcut where the shape changes), global average pooling and a dense
  output layer; convolutions have no bias; batch norm (decay 0.9, eps 1e-5) uses batch statistics when
  `is_training`. Biases start at zero; SN vectors are random unit vectors.

  Raises:
    ValueError: every problem of `validate(config, input_shape)`, or a bad `num_outputs`.
  """
  input_shape = tuple(input_shape)
  problems = validate(config, input_shape)
  if isinstance(num_outputs, bool) or not isinstance(num_outputs, (int, np.integer)) or num_outputs < 1:
    problems.append(f'num_outputs must be a positive int, got {num_outputs!r}')
  if problems:
    raise ValueError('invalid model config: ' + '; '.join(problems))
  input_shape = tuple(int(d) for d in input_shape)
  plan = _plan(config, input_shape, int(num_outputs))
  specs = tuple(p.spec for p in plan)
  sn_names = resolve_layers(config) if config.sn_layers else ()
  sn_specs = tuple(s for s in specs if s.name in sn_names)
  num_weights = sum(math.prod(p.weight_shape) for p in plan)
  num_vector_entries = sum(math.prod(s.input_shape) for s in sn_specs)
  net = hk.transform_with_state(_forward(config, plan, sn_names))

  @jax.jit
  def init_batch(key: jax.Array, x: jax.Array) -> tuple[hk.Params, hk.State]:
    shape = (num_weights + num_vector_entries,)
    if config.initialiser == 'glorot':
      noise = jax.random.uniform(key, shape, jnp.float32, -1.0, 1.0)
    else:
      noise = jax.random.truncated_normal(key, -2.0, 2.0, shape, jnp.float32)
    weights, vectors = noise[:num_weights], noise[num_weights:]
    return net.init(None, x, True, _Noise(weights, vectors))

  def init(key: jax.Array, x: jax.Array) -> tuple[hk.Params, hk.State]:
    x = jnp.asarray(x)
    return init_batch(key, x[None] if x.shape == input_shape else x)

  def apply(params: hk.Params, state: hk.State, x: jax.Array, is_training: bool = False):
    return net.apply(params, state, None, x, is_training)

  def normalise(params: hk.Params, state: hk.State) -> hk.Params:
    sigmas = {s.name: spectral.sigma(s, params[s.name]['w'], state[s.name]['v']) for s in sn_specs}
    if not config.sn_grad_through_sigma:
      sigmas = jax.lax.stop_gradient(sigmas)
    return spectral_norm.normalise(params, sigmas, sn_names, config.lipschitz, config.sn_always)

  return Model(init=init, apply=apply, specs=specs, sn_names=sn_names, normalise=normalise)
