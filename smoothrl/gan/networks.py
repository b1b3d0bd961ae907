"""Generator and discriminator networks in haiku: a DCGAN-like pair for images and an MLP pair for 2-D data.

'dcgan' (in the spirit of the SN-GAN 'standard CNN' of Miyato et al., sized for small images): the generator maps
z ~ N(0, I) through a dense layer to an (H/4, W/4, c₀) map, ReLU, a 4x4 stride-2 transposed convolution to
(H/2, W/2, c₁), ReLU, and a 4x4 stride-2 transposed convolution to (H, W, C) with tanh, so samples lie in [−1, 1]
(28x28x1 by default; any H, W divisible by 4, e.g. the 8x8 digits). The discriminator has SAME convolutions that
alternate 3x3 stride 1 (even index) and 4x4 stride 2 (odd index), leaky ReLU after each, then a dense output logit.

'mlp': generator z → dense layers (ReLU) → a linear output in R^D; discriminator x → dense layers (leaky ReLU) → a
logit. Used for the 2-D mixtures of Gaussians (`smoothrl.gan.mixtures`).

The discriminator's layers are top-level haiku modules (`params[name]['w']`), described as `LayerSpec`s at their
real input shapes, so σ of each one (the convolution *operator* norm for a convolution) comes from
`smoothrl.networks.spectral`, the one source of σ. Its `apply` takes `scales`: a divisor per layer name applied to
the layer's output before its bias (`networks.critics.Linear`), which equals dividing its weights: SN's W / σ.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any, Literal, NamedTuple

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

from smoothrl.networks.critics import Conv2D, Linear
from smoothrl.networks.layers import LayerSpec

KINDS: tuple[str, ...] = ('dcgan', 'mlp')


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
  """A generator and discriminator pair.

  Attributes:
    kind: 'dcgan' (images) or 'mlp' (vectors).
    data_shape: one example: (H, W, C) with H and W divisible by 4 for 'dcgan', (D,) for 'mlp'.
    latent_dim: the size of z ~ N(0, I).
    generator_channels: 'dcgan': (c₀, c₁), the channels of the reshaped dense output and of the first transposed
      convolution.
    discriminator_channels: 'dcgan': one entry per convolution (3x3 stride 1 at even index, 4x4 stride 2 at odd).
    generator_widths: 'mlp': the generator's hidden widths.
    discriminator_widths: 'mlp': the discriminator's hidden widths.
    leaky_slope: the negative slope of the discriminator's leaky ReLU (0.1 in SN-GAN).
    conv_impl: how the discriminator's convolutions are computed, same parameters and outputs
      (`networks.critics.Conv2D`): 'patches' (a matmul over the kernel's patches; in a `lax.scan` on a CPU a DIGITS_NETWORK
      step took 0.09 s against 1.1 s with 'xla', whose weight gradient is slow there) or 'xla' (XLA's convolution:
      the choice on an accelerator, and about 3x quicker to compile).
  """

  kind: Literal['dcgan', 'mlp'] = 'dcgan'
  data_shape: tuple[int, ...] = (28, 28, 1)
  latent_dim: int = 64
  generator_channels: tuple[int, int] = (128, 64)
  discriminator_channels: tuple[int, ...] = (64, 64, 128, 128)
  generator_widths: tuple[int, ...] = (128, 128)
  discriminator_widths: tuple[int, ...] = (128, 128)
  leaky_slope: float = 0.1
  conv_impl: Literal['patches', 'xla'] = 'patches'


# The 8x8 digits at a small width, and the 2-D mixtures of Gaussians (Metz et al.'s unrolled-GAN networks are MLPs
# of this kind).
DIGITS_NETWORK = NetworkConfig(
  data_shape=(8, 8, 1), latent_dim=32, generator_channels=(64, 32), discriminator_channels=(32, 32, 64, 64)
)
MIXTURE_NETWORK = NetworkConfig(
  kind='mlp',
  data_shape=(2,),
  latent_dim=16,
  generator_widths=(128, 128),
  discriminator_widths=(128, 128),
  leaky_slope=0.2,
)


class Generator(NamedTuple):
  """init(key) -> params; apply(params, z) -> samples (N, *data_shape); latent(key, n) -> z (n, latent_dim)."""

  init: Callable[[jax.Array], hk.Params]
  apply: Callable[[hk.Params, jax.Array], jax.Array]
  latent: Callable[[jax.Array, int], jax.Array]
  latent_dim: int

  def sample(self, params: hk.Params, key: jax.Array, n: int) -> jax.Array:
    """n samples G(z; θ), z ~ N(0, I)."""
    return self.apply(params, self.latent(key, n))


class Discriminator(NamedTuple):
  """init(key) -> params; apply(params, x, scales=None) -> logits D_L(x) of shape (N,).

  `specs` are its layers from input to output (every one is normalised under SN); `names` their names.
  """

  init: Callable[[jax.Array], hk.Params]
  apply: Callable[..., jax.Array]
  specs: tuple[LayerSpec, ...]

  @property
  def names(self) -> tuple[str, ...]:
    return tuple(s.name for s in self.specs)


class Networks(NamedTuple):
  generator: Generator
  discriminator: Discriminator
  config: NetworkConfig


def _positive_ints(value: object, length: int | None = None) -> bool:
  return (
    isinstance(value, tuple)
    and (length is None or len(value) == length)
    and all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) and v >= 1 for v in value)
  )


def validate(config: NetworkConfig) -> list[str]:
  """The problems of `config`, each a sentence naming the field."""
  problems = []
  if config.kind not in KINDS:
    return [f'networks.kind {config.kind!r} is unknown; valid: {", ".join(KINDS)}']
  if config.kind == 'dcgan':
    if not _positive_ints(config.data_shape, 3) or config.data_shape[0] % 4 or config.data_shape[1] % 4:
      problems.append(
        f'networks.data_shape must be (H, W, C) with H and W divisible by 4 for a dcgan, got {config.data_shape!r}'
      )
    if not _positive_ints(config.generator_channels, 2):
      problems.append(f'networks.generator_channels must be two positive ints, got {config.generator_channels!r}')
    if not _positive_ints(config.discriminator_channels) or not config.discriminator_channels:
      problems.append(
        f'networks.discriminator_channels must be a non-empty tuple of positive ints, got '
        f'{config.discriminator_channels!r}'
      )
  else:
    if not _positive_ints(config.data_shape, 1):
      problems.append(f'networks.data_shape must be (D,) for an mlp, got {config.data_shape!r}')
    for field in ('generator_widths', 'discriminator_widths'):
      if not _positive_ints(getattr(config, field)):
        problems.append(f'networks.{field} must be a tuple of positive ints, got {getattr(config, field)!r}')
  if not _positive_ints((config.latent_dim,)):
    problems.append(f'networks.latent_dim must be a positive int, got {config.latent_dim!r}')
  slope = config.leaky_slope
  if isinstance(slope, bool) or not isinstance(slope, (int, float)) or not 0 <= slope < 1:
    problems.append(f'networks.leaky_slope must be a number in [0, 1), got {slope!r}')
  if config.conv_impl not in ('patches', 'xla'):
    problems.append(f"networks.conv_impl must be 'patches' or 'xla', got {config.conv_impl!r}")
  return problems


def _conv_geometry(index: int) -> tuple[int, int]:
  """(kernel, stride) of discriminator convolution `index`: 3x3 stride 1 at even index, 4x4 stride 2 at odd."""
  return (3, 1) if index % 2 == 0 else (4, 2)


def discriminator_specs(config: NetworkConfig) -> tuple[LayerSpec, ...]:
  """Every discriminator layer as a linear operator on one example, from input to output."""
  specs = []
  if config.kind == 'dcgan':
    h, w, c = config.data_shape
    for i, channels in enumerate(config.discriminator_channels):
      _, stride = _conv_geometry(i)
      specs.append(LayerSpec(f'conv_{i}', 'conv', (h, w, c), stride, 'SAME'))
      h, w, c = -(-h // stride), -(-w // stride), channels
    size = h * w * c
  else:
    size = config.data_shape[0]
    for i, width in enumerate(config.discriminator_widths):
      specs.append(LayerSpec(f'hidden_{i}', 'dense', (size,)))
      size = width
  specs.append(LayerSpec('out', 'dense', (size,)))
  return tuple(specs)


def _generator_forward(config: NetworkConfig) -> Callable[[jax.Array], jax.Array]:
  def forward(z: jax.Array) -> jax.Array:
    z = jnp.asarray(z, jnp.float32)
    if config.kind == 'mlp':
      x = z
      for i, width in enumerate(config.generator_widths):
        x = jax.nn.relu(hk.Linear(width, name=f'hidden_{i}')(x))
      return hk.Linear(config.data_shape[0], name='out')(x)
    h, w, c = config.data_shape
    c0, c1 = config.generator_channels
    x = jax.nn.relu(hk.Linear(h // 4 * (w // 4) * c0, name='dense')(z))
    x = x.reshape(x.shape[0], h // 4, w // 4, c0)
    x = jax.nn.relu(hk.Conv2DTranspose(c1, 4, stride=2, padding='SAME', name='deconv_0')(x))
    return jnp.tanh(hk.Conv2DTranspose(c, 4, stride=2, padding='SAME', name='deconv_1')(x))

  return forward


def _discriminator_forward(config: NetworkConfig, specs: tuple[LayerSpec, ...]):
  slope = float(config.leaky_slope)

  def forward(x: jax.Array, scales: Mapping[str, jax.Array] | None = None) -> jax.Array:
    scale = lambda name: None if scales is None else scales.get(name)
    x = jnp.asarray(x, jnp.float32)
    if config.kind == 'dcgan':
      for i, channels in enumerate(config.discriminator_channels):
        kernel, stride = _conv_geometry(i)
        conv = Conv2D(channels, kernel, stride, 'SAME', config.conv_impl, name=f'conv_{i}')
        x = jax.nn.leaky_relu(conv(x, scale(f'conv_{i}')), slope)
    for i, width in enumerate(config.discriminator_widths if config.kind == 'mlp' else ()):
      x = jax.nn.leaky_relu(Linear(width, name=f'hidden_{i}')(x, scale(f'hidden_{i}')), slope)
    x = x.reshape(x.shape[0], -1)
    if x.shape[1] != specs[-1].input_shape[0]:
      raise ValueError(f'the discriminator expects inputs of shape {config.data_shape}, got {tuple(x.shape[1:])}')
    return Linear(1, name='out')(x, scale('out'))[:, 0]

  return forward


def pooled_init(forward: Callable[..., Any], *example: Any) -> Callable[[jax.Array], hk.Params]:
  """`key -> params` of the haiku function `forward` at inputs like `example`, with one random draw for all weights.

  Every parameter whose initialiser is haiku's `TruncatedNormal` on [−2, 2] (the default of `hk.Linear`, the
  convolutions and `networks.critics`' layers) gets `mean + stddev · t` with t its slice of one flat draw of
  standard normals truncated to [−2, 2]: the same distribution as haiku's, in one compiled random call instead of
  one per parameter (and never of a multi-dimensional shape, whose random bits XLA:CPU compiles slowly). Other
  initialisers run as they are, from `key`.
  """
  plain = hk.transform(forward)
  shapes = jax.eval_shape(lambda k: plain.init(k, *example), jax.random.PRNGKey(0))
  total = sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(shapes))

  def pooled_forward(pool: jax.Array, *args: Any) -> Any:
    offset = [0]

    def creator(next_creator, shape, dtype, init, context):
      del context
      if isinstance(init, hk.initializers.TruncatedNormal) and (init.lower, init.upper) == (-2.0, 2.0):
        size = math.prod(shape)
        values = pool[offset[0] : offset[0] + size]
        offset[0] += size
        mean, stddev = init.mean, init.stddev
        init = lambda s, d: (stddev * values.reshape(s) + mean).astype(d)
      return next_creator(shape, dtype, init)

    with hk.custom_creator(creator):
      return forward(*args)

  net = hk.transform(pooled_forward)

  def init(key: jax.Array) -> hk.Params:
    pool_key, rest_key = jax.random.split(key)
    pool = jax.random.truncated_normal(pool_key, -2.0, 2.0, (max(total, 1),), jnp.float32)
    return net.init(rest_key, pool, *example)

  return init


def initial_vectors(key: jax.Array, specs: tuple[LayerSpec, ...]) -> dict[str, jax.Array]:
  """Random unit power-iteration vectors, one per layer of `specs` (`networks.spectral`'s `SpectralState`).

  Drawn as one flat standard normal, cut per layer, reshaped to the layer's input shape and normalised: one random
  call whatever the number of layers.
  """
  sizes = [math.prod(s.input_shape) for s in specs]
  noise = jax.random.normal(key, (max(sum(sizes), 1),), jnp.float32)
  vectors, offset = {}, 0
  for spec, size in zip(specs, sizes):
    v = noise[offset : offset + size]
    offset += size
    vectors[spec.name] = (v / jnp.maximum(jnp.linalg.norm(v), 1e-12)).reshape(spec.input_shape)
  return vectors


def _check_batch(name: str, x: jax.Array, shape: tuple[int, ...]) -> None:
  if tuple(x.shape[1:]) != tuple(shape) or x.ndim != len(shape) + 1:
    raise ValueError(f'{name} takes a batch of shape (N, {", ".join(map(str, shape))}), got {tuple(x.shape)}')


def make_networks(config: NetworkConfig = NetworkConfig()) -> Networks:
  """Builds the generator and discriminator of `config` (see the module docstring).

  Raises:
    ValueError: every problem of `validate(config)`.
  """
  problems = validate(config)
  if problems:
    raise ValueError('invalid networks config: ' + '; '.join(problems))
  data_shape = tuple(int(d) for d in config.data_shape)
  latent_dim = int(config.latent_dim)
  specs = discriminator_specs(config)
  g_net = hk.without_apply_rng(hk.transform(_generator_forward(config)))
  d_net = hk.without_apply_rng(hk.transform(_discriminator_forward(config, specs)))

  g_init = jax.jit(pooled_init(_generator_forward(config), jnp.zeros((1, latent_dim), jnp.float32)))

  def g_apply(params: hk.Params, z: jax.Array) -> jax.Array:
    _check_batch('the generator', z, (latent_dim,))
    return g_net.apply(params, z)

  def latent(key: jax.Array, n: int) -> jax.Array:
    return jax.random.normal(key, (n, latent_dim), jnp.float32)

  d_init = jax.jit(pooled_init(_discriminator_forward(config, specs), jnp.zeros((1, *data_shape), jnp.float32)))

  def d_apply(params: hk.Params, x: jax.Array, scales: Mapping[str, jax.Array] | None = None) -> jax.Array:
    _check_batch('the discriminator', x, data_shape)
    return d_net.apply(params, x, scales)

  return Networks(
    generator=Generator(g_init, jax.jit(g_apply), latent, latent_dim),
    discriminator=Discriminator(d_init, jax.jit(d_apply), specs),
    config=config,
  )


def num_parameters(params: hk.Params) -> int:
  """The number of scalars in a parameter tree."""
  return int(sum(math.prod(jnp.shape(p)) for p in jax.tree.leaves(params)))
