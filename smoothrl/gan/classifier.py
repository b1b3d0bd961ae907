"""A small CNN classifier trained on the real data set, whose penultimate features define the FID and KID proxies.

Inception networks are not available without downloads, so sample quality is measured with features of a
classifier trained on the GAN's own data set (in the generator's range [−1, 1]): two 3x3 SAME convolutions with
ReLU, each followed by 2x2 average pooling, a dense feature layer of `feature_dim` units with ReLU (the features),
and a dense output layer of logits. It is trained once with Adam on the training split, its test accuracy is
recorded, and it is cached as a `.npz` file (arrays and a JSON metadata string; read without pickle) whose name
carries a digest of the configuration and the data.

Scores computed with these features are proxies, not the published FID and KID: `metrics.fid_proxy` and
`metrics.kid_proxy` say which features they used.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import pathlib
import tempfile
from typing import Any, NamedTuple

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import optax

from smoothrl.gan.data import ImageData
from smoothrl.gan.networks import pooled_init
from smoothrl.networks.critics import Conv2D, Linear

FORMAT_VERSION = 1
CACHE_ENV = 'SMOOTHRL_CACHE'


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
  """The proxy classifier and its training.

  Attributes:
    channels: the two convolutions' widths.
    feature_dim: the width of the feature (penultimate) layer.
    steps: Adam steps on minibatches of the training split.
    batch_size: examples per step.
    learning_rate: Adam's learning rate.
    seed: the initialisation and minibatch seed.
    conv_impl: 'patches' or 'xla', as in `networks.NetworkConfig` (the same parameters and outputs).
  """

  channels: tuple[int, int] = (16, 32)
  feature_dim: int = 64
  steps: int = 600
  batch_size: int = 128
  learning_rate: float = 1e-3
  seed: int = 0
  conv_impl: str = 'patches'


class Classifier(NamedTuple):
  """A trained proxy classifier: its parameters, configuration, and what it was trained and tested on."""

  params: hk.Params
  config: ClassifierConfig
  image_shape: tuple[int, ...]
  num_classes: int
  dataset: str
  test_accuracy: float
  num_test: int

  @property
  def name(self) -> str:
    """The features' name in metric results, e.g. 'digits-classifier (test accuracy 0.965)'."""
    return f'{self.dataset}-classifier (test accuracy {self.test_accuracy:.3f})'


def _forward(config: ClassifierConfig, num_classes: int):
  def forward(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    x = jnp.asarray(x, jnp.float32)
    for i, channels in enumerate(config.channels):
      x = jax.nn.relu(Conv2D(channels, 3, 1, 'SAME', config.conv_impl, name=f'conv_{i}')(x))
      x = hk.avg_pool(x, window_shape=(1, 2, 2, 1), strides=(1, 2, 2, 1), padding='SAME')
    x = x.reshape(x.shape[0], -1)
    features = jax.nn.relu(Linear(config.feature_dim, name='features')(x))
    return features, Linear(num_classes, name='out')(features)

  return forward


def _network(config: ClassifierConfig, num_classes: int) -> hk.Transformed:
  return hk.without_apply_rng(hk.transform(_forward(config, num_classes)))


def validate(config: ClassifierConfig) -> list[str]:
  """The problems of `config`, each a sentence naming the field."""
  problems = []
  ints = {'feature_dim': config.feature_dim, 'steps': config.steps, 'batch_size': config.batch_size}
  for field, value in ints.items():
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      problems.append(f'classifier.{field} must be an int >= 1, got {value!r}')
  if not (isinstance(config.channels, tuple) and len(config.channels) == 2 and all(c >= 1 for c in config.channels)):
    problems.append(f'classifier.channels must be two positive ints, got {config.channels!r}')
  if not config.learning_rate > 0:
    problems.append(f'classifier.learning_rate must be > 0, got {config.learning_rate!r}')
  if config.conv_impl not in ('patches', 'xla'):
    problems.append(f"classifier.conv_impl must be 'patches' or 'xla', got {config.conv_impl!r}")
  return problems


def train_classifier(data: ImageData, config: ClassifierConfig = ClassifierConfig()) -> Classifier:
  """Trains the proxy classifier on `data.train` and records its accuracy on `data.test`."""
  problems = validate(config)
  if problems:
    raise ValueError('invalid classifier config: ' + '; '.join(problems))
  if data.train.ndim != 4:
    raise ValueError(f'the classifier takes images (N, H, W, C), got training data of shape {data.train.shape}')
  net = _network(config, data.num_classes)
  x_train, y_train = jnp.asarray(data.train), jnp.asarray(data.train_labels)
  tx = optax.adam(config.learning_rate)
  init_key, data_key = jax.random.split(jax.random.PRNGKey(config.seed))

  init = pooled_init(_forward(config, data.num_classes), x_train[:1])

  @jax.jit
  def fit(init_key: jax.Array, data_key: jax.Array) -> hk.Params:
    params = init(init_key)
    # Every minibatch's rows in one flat draw (one random call, not one per step).
    rows = jax.random.randint(data_key, (config.steps * config.batch_size,), 0, x_train.shape[0])

    def step(carry, batch_rows):
      params, opt_state = carry

      def loss(p):
        logits = net.apply(p, x_train[batch_rows])[1]
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y_train[batch_rows]))

      updates, opt_state = tx.update(jax.grad(loss)(params), opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), None

    return jax.lax.scan(step, (params, tx.init(params)), rows.reshape(config.steps, config.batch_size))[0][0]

  params = jax.device_get(fit(init_key, data_key))
  classifier = Classifier(
    params=params,
    config=config,
    image_shape=tuple(int(d) for d in data.train.shape[1:]),
    num_classes=int(data.num_classes),
    dataset=data.name,
    test_accuracy=0.0,
    num_test=int(data.test.shape[0]),
  )
  predictions = np.argmax(logits(classifier, data.test), axis=1)
  return classifier._replace(test_accuracy=float(np.mean(predictions == data.test_labels)))


@functools.lru_cache(maxsize=16)
def _jitted_apply(config: ClassifierConfig, num_classes: int):
  return jax.jit(_network(config, num_classes).apply)


def _apply(classifier: Classifier, x: Any, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
  x = np.asarray(x, np.float32)
  if tuple(x.shape[1:]) != classifier.image_shape or x.ndim != len(classifier.image_shape) + 1:
    raise ValueError(f'the {classifier.dataset} classifier takes images (N, {classifier.image_shape}), got {x.shape}')
  apply = _jitted_apply(classifier.config, classifier.num_classes)
  size = min(batch_size, x.shape[0])
  outs = []
  for start in range(0, x.shape[0], size):
    chunk = x[start : start + size]
    padded = np.concatenate([chunk, np.zeros((size - len(chunk), *chunk.shape[1:]), np.float32)])  # one shape
    outs.append([np.asarray(o)[: len(chunk)] for o in apply(classifier.params, padded)])
  return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])


def features(classifier: Classifier, x: Any, batch_size: int = 1000) -> np.ndarray:
  """The penultimate features (N, feature_dim) of images `x` in [−1, 1]."""
  return _apply(classifier, x, batch_size)[0]


def logits(classifier: Classifier, x: Any, batch_size: int = 1000) -> np.ndarray:
  """The class logits (N, num_classes) of images `x` in [−1, 1]."""
  return _apply(classifier, x, batch_size)[1]


def _metadata(classifier: Classifier) -> dict[str, Any]:
  return {
    'format_version': FORMAT_VERSION,
    'config': dataclasses.asdict(classifier.config),
    'image_shape': list(classifier.image_shape),
    'num_classes': classifier.num_classes,
    'dataset': classifier.dataset,
    'test_accuracy': classifier.test_accuracy,
    'num_test': classifier.num_test,
  }


def save_classifier(path: str | os.PathLike, classifier: Classifier) -> None:
  """Writes `classifier` to `path` (.npz: one array per parameter and the metadata as JSON), atomically."""
  path = pathlib.Path(path)
  arrays = {
    f'params/{module}/{name}': np.asarray(value)
    for module, leaves in classifier.params.items()
    for name, value in leaves.items()
  }
  arrays['metadata'] = np.asarray(json.dumps(_metadata(classifier), sort_keys=True))
  path.parent.mkdir(parents=True, exist_ok=True)
  with tempfile.NamedTemporaryFile(dir=path.parent, suffix='.npz', delete=False) as f:
    np.savez(f, **arrays)
  os.replace(f.name, path)


def load_classifier(path: str | os.PathLike) -> Classifier:
  """Reads a classifier written by `save_classifier` (no pickle).

  Raises:
    ValueError: a file that is not such a classifier, or of another format version.
  """
  with np.load(pathlib.Path(path), allow_pickle=False) as f:
    if 'metadata' not in f.files:
      raise ValueError(f'{path}: not a saved classifier (no metadata)')
    meta = json.loads(str(f['metadata']))
    params: dict[str, dict[str, jax.Array]] = {}
    for key in f.files:
      if key.startswith('params/'):
        _, module, name = key.split('/', 2)
        params.setdefault(module, {})[name] = jnp.asarray(f[key])
  if meta.get('format_version') != FORMAT_VERSION:
    raise ValueError(f'{path}: classifier format {meta.get("format_version")!r}, expected {FORMAT_VERSION}')
  config = meta['config']
  return Classifier(
    params=params,
    config=ClassifierConfig(**{**config, 'channels': tuple(config['channels'])}),
    image_shape=tuple(meta['image_shape']),
    num_classes=int(meta['num_classes']),
    dataset=str(meta['dataset']),
    test_accuracy=float(meta['test_accuracy']),
    num_test=int(meta['num_test']),
  )


def default_cache_dir() -> pathlib.Path:
  """$SMOOTHRL_CACHE/gan, else $XDG_CACHE_HOME/smoothrl/gan, else ~/.cache/smoothrl/gan."""
  if os.environ.get(CACHE_ENV):
    return pathlib.Path(os.environ[CACHE_ENV]) / 'gan'
  base = os.environ.get('XDG_CACHE_HOME') or pathlib.Path.home() / '.cache'
  return pathlib.Path(base) / 'smoothrl' / 'gan'


def cache_path(data: ImageData, config: ClassifierConfig, cache_dir: str | os.PathLike | None = None) -> pathlib.Path:
  """Where the classifier of `data` and `config` is cached: '<dataset>-classifier-<digest>.npz', the digest of
  the configuration and of the training and test data."""
  digest = hashlib.sha256(json.dumps(dataclasses.asdict(config), sort_keys=True).encode())
  for array in (data.train, data.train_labels, data.test, data.test_labels):
    digest.update(np.ascontiguousarray(array).tobytes())
  directory = pathlib.Path(cache_dir) if cache_dir is not None else default_cache_dir()
  return directory / f'{data.name}-classifier-{digest.hexdigest()[:16]}.npz'


def cached_classifier(
  data: ImageData, config: ClassifierConfig = ClassifierConfig(), cache_dir: str | os.PathLike | None = None
) -> Classifier:
  """The classifier of `data` and `config`: read from the cache, or trained once and written there."""
  path = cache_path(data, config, cache_dir)
  if path.is_file():
    return load_classifier(path)
  classifier = train_classifier(data, config)
  save_classifier(path, classifier)
  return classifier
