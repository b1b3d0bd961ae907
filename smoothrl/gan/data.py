"""Image data for GANs from `smoothrl.supervised.data` (no downloads), in the generator's range [−1, 1].

'digits' (scikit-learn's 8x8 digits, always present), 'fashion_mnist' (28x28, the Debian package
`dataset-fashion-mnist` or a directory of IDX files) and 'mnist' (a directory of IDX files). Pixels are mapped from
[0, 1] to [−1, 1] by x ↦ 2x − 1, the range of the generator's tanh. `array_sampler` turns an array of examples into
the `data(key, n)` sampler the trainer takes.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from smoothrl.supervised import data as supervised_data

IMAGE_SETS: tuple[str, ...] = ('digits', 'fashion_mnist', 'mnist')


class ImageData(NamedTuple):
  """Images (N, H, W, C) in [−1, 1] with their int32 class labels, split as `smoothrl.supervised.data` splits them."""

  train: np.ndarray
  train_labels: np.ndarray
  test: np.ndarray
  test_labels: np.ndarray
  num_classes: int
  name: str

  @property
  def image_shape(self) -> tuple[int, ...]:
    return tuple(self.train.shape[1:])


def to_gan_range(images: np.ndarray) -> np.ndarray:
  """[0, 1] → [−1, 1]: 2x − 1."""
  return (2.0 * np.asarray(images, np.float32) - 1.0).astype(np.float32)


def load_images(name: str = 'digits', path: str = '', split_seed: int = 0) -> ImageData:
  """Loads an image set of `IMAGE_SETS` in [−1, 1].

  Args:
    name: 'digits', 'fashion_mnist' or 'mnist'.
    path: a directory of IDX files ('mnist' needs one; 'fashion_mnist' falls back to the Debian package's).
    split_seed: the train/test split of 'digits' (the IDX sets keep their official split).

  Raises:
    ValueError: an unknown name, or missing files (naming the directory and how to install Fashion-MNIST).
  """
  if name not in IMAGE_SETS:
    raise ValueError(f'unknown image set {name!r}; valid: {", ".join(IMAGE_SETS)}')
  dataset = supervised_data.load(supervised_data.DataConfig(name=name, path=path, split_seed=split_seed))
  return ImageData(
    train=to_gan_range(dataset.x_train),
    train_labels=dataset.y_train.astype(np.int32),
    test=to_gan_range(dataset.x_test),
    test_labels=dataset.y_test.astype(np.int32),
    num_classes=int(dataset.num_outputs),
    name=name,
  )


def array_sampler(examples: np.ndarray):
  """`data(key, n)`: n rows of `examples` drawn uniformly with replacement (the array is held on the device)."""
  x = jnp.asarray(examples, jnp.float32)
  if x.ndim < 2 or x.shape[0] == 0:
    raise ValueError(f'examples must be a non-empty batch (N, ...), got shape {x.shape}')

  def sample(key: jax.Array, n: int) -> jax.Array:
    return x[jax.random.randint(key, (n,), 0, x.shape[0])]

  return sample
