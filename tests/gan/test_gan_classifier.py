"""Tests for smoothrl.gan.data and smoothrl.gan.classifier: images in [-1, 1], samplers, and the proxy classifier
trained, cached as .npz (no pickle) and read back."""

from __future__ import annotations

import dataclasses
import functools
import os

import jax
import numpy as np
import pytest

from smoothrl.gan import classifier, data, metrics
from smoothrl.supervised import data as supervised_data


@pytest.fixture(scope='module')
def digits():
  return data.load_images('digits')


def test_digits_in_the_generators_range_and_the_array_sampler(digits):
  assert digits.train.shape == (1347, 8, 8, 1) and digits.test.shape == (450, 8, 8, 1)
  assert float(digits.train.min()) == -1.0 and float(digits.train.max()) == 1.0
  assert digits.num_classes == 10 and digits.image_shape == (8, 8, 1) and digits.train_labels.dtype == np.int32
  raw = supervised_data.load(supervised_data.DataConfig('digits'))
  np.testing.assert_allclose(digits.train, 2 * raw.x_train - 1)
  sample = data.array_sampler(digits.train[:5])
  batch = np.asarray(jax.jit(lambda k: sample(k, 64))(jax.random.PRNGKey(0)))
  assert batch.shape == (64, 8, 8, 1)
  assert all(any(np.array_equal(b, x) for x in digits.train[:5]) for b in batch)
  with pytest.raises(ValueError, match='unknown image set'):
    data.load_images('cifar10')
  if not os.path.isdir(supervised_data.FASHION_MNIST_DIR):
    with pytest.raises(ValueError, match='apt-get install -y dataset-fashion-mnist'):
      data.load_images('fashion_mnist')


def test_the_proxy_classifier_is_trained_cached_and_read_back(digits, tmp_path, monkeypatch):
  config = classifier.ClassifierConfig(
    channels=(8, 8), feature_dim=16, steps=150, batch_size=64, learning_rate=5e-3, conv_impl='xla'
  )
  trained = classifier.cached_classifier(digits, config, tmp_path)
  assert trained.test_accuracy > 0.5 and trained.num_test == 450  # chance is 0.1
  assert trained.name == f'digits-classifier (test accuracy {trained.test_accuracy:.3f})'
  path = classifier.cache_path(digits, config, tmp_path)
  assert path.is_file() and path.name.startswith('digits-classifier-') and path.suffix == '.npz'
  with np.load(path, allow_pickle=False) as f:  # plain arrays and a JSON string: no pickle needed
    assert 'metadata' in f.files and 'params/features/w' in f.files
  # The second call reads the file instead of training.
  monkeypatch.setattr(classifier, 'train_classifier', lambda *a, **k: pytest.fail('trained again'))
  loaded = classifier.cached_classifier(digits, config, tmp_path)
  assert loaded._replace(params=None) == trained._replace(params=None)
  jax.tree.map(np.testing.assert_array_equal, loaded.params, trained.params)
  feats = classifier.features(loaded, digits.test[:10])
  assert feats.shape == (10, 16) and np.all(feats >= 0)
  predictions = np.argmax(classifier.logits(loaded, digits.test), axis=1)
  assert np.mean(predictions == digits.test_labels) == pytest.approx(trained.test_accuracy)
  # Another configuration is another file.
  assert classifier.cache_path(digits, dataclasses.replace(config, steps=151), tmp_path) != path
  # The proxies name these features and state their sample counts.
  fid = metrics.fid_proxy(digits.train[:300], digits.test[:200], functools.partial(classifier.features, loaded))
  assert (fid.num_real, fid.num_fake, fid.feature_dim, fid.features) == (300, 200, 16, loaded.name)
  with pytest.raises(ValueError, match='takes images'):
    classifier.features(loaded, np.zeros((2, 28, 28, 1), np.float32))
  bad = tmp_path / 'bad.npz'
  np.savez(bad, x=np.zeros(2))
  with pytest.raises(ValueError, match='not a saved classifier'):
    classifier.load_classifier(bad)
