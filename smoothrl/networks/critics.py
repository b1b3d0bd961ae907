"""Critic networks whose layers are addressed by negative index from the output.

The MinAtar critic (thesis Table E.3, widths and depth as in Table E.6): `conv_layers` 3x3 stride-1 convolutions
of `conv_channels` channels, a dense hidden layer of `hidden` units, and the output layer, ReLU after every hidden
layer. Layer -1 is the output layer ('out'), -2 the hidden dense layer ('hidden'), -3 the last convolution, ...
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Literal

import haiku as hk
import jax
import jax.numpy as jnp

from smoothrl.networks.layers import LayerSpec


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
  """The MinAtar critic: conv layers, then a hidden dense layer and the output layer.

  Defaults are thesis Table E.3 (two 3x3 stride-1 convolutions of 16 channels, 128 hidden units); Table E.6 varies
  `conv_layers`, `conv_channels` and `hidden`. `conv_channels`, `kernel_size` and `stride` take one value for every
  convolution or one per convolution (the Atari critic of Table E.5, `ATARI_NETWORK`). `padding` is 'VALID' as in
  the MinAtar reference network (a 10x10 input becomes 8x8 after one convolution). `conv_impl` picks how
  convolutions are computed, with the same parameters and outputs: 'patches' (a matmul over shifted slices, fast in
  compiled loops on a CPU) or 'xla' (XLA's convolution); see `Conv2D`.

  `obs_scale` multiplies the observations as the critic's first operation; the thesis is silent on it. MinAtar's
  observations are already 0/1 (1.0, the default); the thesis' reference code (snrl's `AtariNet`) and Dopamine divide
  Atari's uint8 frames by 255, and `ATARI_NETWORK` does the same with 1/255. The smoothness measure differentiates
  with respect to the observation as the environment gives it, so it includes this factor.
  """

  conv_layers: int = 2
  conv_channels: int | tuple[int, ...] = 16
  kernel_size: int | tuple[int, ...] = 3
  stride: int | tuple[int, ...] = 1
  padding: Literal['VALID', 'SAME'] = 'VALID'
  hidden: int = 128
  conv_impl: Literal['patches', 'xla'] = 'patches'
  obs_scale: float = 1.0

  def per_layer(self, field: str) -> tuple[int, ...]:
    """`conv_channels`, `kernel_size` or `stride` of every convolution (one value may serve them all)."""
    value = getattr(self, field)
    values = tuple(value) if isinstance(value, (tuple, list)) else (value,) * self.conv_layers
    if len(values) != self.conv_layers:
      raise ValueError(f'network.{field} has {len(values)} values for {self.conv_layers} convolutions')
    return values


# Thesis Table E.5 (Hessel et al.): the Atari critic, with 84x84x4 uint8 inputs scaled to [0, 1] as the reference
# code (snrl) and Dopamine scale them.
ATARI_NETWORK = NetworkConfig(
  conv_layers=3, conv_channels=(32, 64, 64), kernel_size=(8, 4, 3), stride=(4, 2, 1), hidden=512, obs_scale=1 / 255
)


def layer_names(config: NetworkConfig) -> tuple[str, ...]:
  """The critic's linear layers from input to output, as haiku module names."""
  return tuple(f'conv_{i}' for i in range(config.conv_layers)) + ('hidden', 'out')


def resolve_layers(config: NetworkConfig, indices: Sequence[int]) -> tuple[str, ...]:
  """Maps negative layer indices (-1 = output layer) to layer names, refusing invalid selections."""
  names = layer_names(config)
  depth = len(names)
  listing = ', '.join(f'{i - depth} = {name}' for i, name in enumerate(names))
  problems = []
  if not indices:
    problems.append('no layers selected')
  for index in indices:
    if isinstance(index, bool) or not isinstance(index, int):
      problems.append(f'layer index {index!r} is not an integer')
    elif index == 0 or not -depth <= index <= -1:
      problems.append(f'layer index {index} is out of range (use -1 ... {-depth})')
  duplicates = sorted({i for i in indices if list(indices).count(i) > 1})
  if duplicates:
    problems.append(f'duplicate layer indices {duplicates}')
  if problems:
    raise ValueError(
      f'invalid layer selection {list(indices)}: {"; ".join(problems)}. '
      f'The critic has {depth} layers, indexed from the output: {listing}'
    )
  return tuple(names[i] for i in sorted(indices))


def _truncated_normal(fan_in: int) -> hk.initializers.Initializer:
  """hk.Linear's and hk.Conv2D's default weight initialiser."""
  return hk.initializers.TruncatedNormal(1.0 / fan_in**0.5)


def _scale_and_bias(y: jax.Array, b: jax.Array, scale: jax.Array | None) -> jax.Array:
  """y / scale + b: a layer's linear part divided by `scale`, as if its weights were (None: no division)."""
  return (y if scale is None else y / scale) + b


class Linear(hk.Module):
  """x @ w + b with hk.Linear's parameters and initialiser.

  `scale` divides the output before the bias is added, which equals dividing `w` by it: SN's W / max(σ/K, 1)
  (thesis Section 7.3) costs one division of the layer's output instead of one of its weights.
  """

  def __init__(self, size: int, name: str | None = None):
    super().__init__(name=name)
    self.size = size

  def __call__(self, x: jax.Array, scale: jax.Array | None = None) -> jax.Array:
    w = hk.get_parameter('w', (x.shape[-1], self.size), x.dtype, init=_truncated_normal(x.shape[-1]))
    b = hk.get_parameter('b', (self.size,), x.dtype, init=jnp.zeros)
    return _scale_and_bias(x @ w, b, scale)


class Conv2D(hk.Module):
  """A 2-D convolution of NHWC inputs with hk.Conv2D's parameters (`w` HWIO, `b`), initialiser and outputs.

  `impl` 'patches' computes it as one matmul over the kernel's input patches (`_patches`): XLA:CPU runs a
  convolution's weight gradient much slower inside `lax.scan` than in a standalone call, and a matmul does not have
  that cost. 'xla' uses `jax.lax.conv_general_dilated`. `scale` divides the output before the bias, as in `Linear`.
  """

  def __init__(
    self,
    channels: int,
    kernel_size: int,
    stride: int = 1,
    padding: str = 'VALID',
    impl: Literal['patches', 'xla'] = 'patches',
    name: str | None = None,
  ):
    super().__init__(name=name)
    self.channels, self.kernel_size, self.stride, self.padding, self.impl = channels, kernel_size, stride, padding, impl

  def __call__(self, x: jax.Array, scale: jax.Array | None = None) -> jax.Array:
    k, s = self.kernel_size, self.stride
    fan_in = k * k * x.shape[-1]
    w = hk.get_parameter('w', (k, k, x.shape[-1], self.channels), x.dtype, init=_truncated_normal(fan_in))
    b = hk.get_parameter('b', (self.channels,), x.dtype, init=jnp.zeros)
    if self.impl == 'xla':
      y = jax.lax.conv_general_dilated(x, w, (s, s), self.padding, dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
      return _scale_and_bias(y, b, scale)
    if self.padding == 'SAME':
      pads = []
      for size in x.shape[1:3]:
        out = -(-size // s)
        total = max((out - 1) * s + k - size, 0)
        pads.append((total // 2, total - total // 2))
      x = jnp.pad(x, ((0, 0), *pads, (0, 0)))
    return _scale_and_bias(_patches(x, k, s) @ w.reshape(fan_in, self.channels), b, scale)


def _patches(x: jax.Array, k: int, s: int) -> jax.Array:
  """The k x k patches of NHWC `x` at stride `s` (no padding), features in (row, column, channel) order."""
  h, wd = (x.shape[1] - k) // s + 1, (x.shape[2] - k) // s + 1
  return jnp.concatenate(
    [x[:, i : i + s * (h - 1) + 1 : s, j : j + s * (wd - 1) + 1 : s, :] for i in range(k) for j in range(k)], axis=-1
  )


def make_critic(config: NetworkConfig, num_actions: int, batch_norm: bool = False) -> hk.TransformedWithState:
  """Builds the critic: `apply(params, state, None, obs, is_training, scales=None) -> (q_values, state)`.

  `obs` is a batch of (H, W, C) images (or of flat vectors when `conv_layers == 0`), multiplied by
  `config.obs_scale` before the first layer. `scales` maps layer names to divisors of their weights
  (`spectral_norm.scales`), applied to the layers' outputs before their biases; layers it does not name are left as
  they are. With `batch_norm`, a batch normalisation follows the ReLU of every hidden
  layer (the thesis' baseline, Appendix E.1.2); its statistics are haiku state.
  """

  def forward(obs: jax.Array, is_training: bool, scales: Mapping[str, jax.Array] | None = None) -> jax.Array:
    scale = lambda name: None if scales is None else scales.get(name)
    x = obs.astype(jnp.float32)
    if config.obs_scale != 1.0:
      x = x * config.obs_scale
    per_layer = zip(*(config.per_layer(f) for f in ('conv_channels', 'kernel_size', 'stride')))
    for i, (c, k, s) in enumerate(per_layer):
      name = f'conv_{i}'
      x = jax.nn.relu(Conv2D(c, k, s, config.padding, config.conv_impl, name=name)(x, scale(name)))
      if batch_norm:
        x = hk.BatchNorm(True, True, 0.99, name=f'bn_{name}')(x, is_training)
    x = hk.Flatten()(x)
    x = jax.nn.relu(Linear(config.hidden, name='hidden')(x, scale('hidden')))
    if batch_norm:
      x = hk.BatchNorm(True, True, 0.99, name='bn_hidden')(x, is_training)
    return Linear(num_actions, name='out')(x, scale('out'))

  return hk.transform_with_state(forward)


def layer_specs(config: NetworkConfig, obs_shape: Sequence[int]) -> tuple[LayerSpec, ...]:
  """Each linear layer as an operator at its real input shape, from input to output."""
  obs_shape = tuple(obs_shape)
  if config.conv_layers and len(obs_shape) != 3:
    raise ValueError(f'a critic with convolutions needs (H, W, C) observations, got shape {obs_shape}')
  specs = []
  shape = obs_shape
  per_layer = zip(*(config.per_layer(f) for f in ('conv_channels', 'kernel_size', 'stride')))
  for i, (channels, kernel, stride) in enumerate(per_layer):
    specs.append(LayerSpec(f'conv_{i}', 'conv', shape, stride, config.padding))
    h, w, _ = shape
    if config.padding == 'VALID':
      h, w = (h - kernel) // stride + 1, (w - kernel) // stride + 1
    else:
      h, w = -(-h // stride), -(-w // stride)
    if h < 1 or w < 1:
      raise ValueError(
        f'{config.conv_layers} {config.padding} convolutions (kernels {config.kernel_size}, strides '
        f'{config.stride}) leave no spatial extent on a {obs_shape[0]}x{obs_shape[1]} input'
      )
    shape = (h, w, channels)
  flat = 1
  for dim in shape:
    flat *= dim
  specs.append(LayerSpec('hidden', 'dense', (flat,)))
  specs.append(LayerSpec('out', 'dense', (config.hidden,)))
  return tuple(specs)
