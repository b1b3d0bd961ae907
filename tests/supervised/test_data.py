"""Tests for smoothrl.supervised.data: shapes, dtypes, normalisation and splits of every set; IDX files."""

from __future__ import annotations

import dataclasses
import gzip
import pathlib

import numpy as np
import pytest
from sklearn import datasets

from smoothrl.supervised import data

# (name, example shape, classes or None for regression, number of examples before the split)
BUNDLED = [
  ('iris', (4,), 3, 150),
  ('digits', (8, 8, 1), 10, 1797),
  ('breast_cancer', (30,), 2, 569),
  ('wine', (13,), 3, 178),
  ('two_moons', (2,), 2, 200),
  ('regression1d', (1,), None, 200),
]


@pytest.mark.parametrize('name, shape, classes, total', BUNDLED)
def test_each_set_loads_with_the_documented_shapes_and_dtypes(name, shape, classes, total):
  d = data.load(data.DataConfig(name=name), seed=0)
  n_test = int(np.ceil(0.25 * total))
  assert d.x_train.shape == (total - n_test, *shape) and d.x_test.shape == (n_test, *shape)
  assert d.x_train.dtype == np.float32 and d.x_test.dtype == np.float32
  assert d.name == name
  if classes is None:
    assert d.task == 'regression' and d.num_outputs == 1
    assert d.y_train.shape == (total - n_test, 1) and d.y_train.dtype == np.float32
  else:
    assert d.task == 'classification' and d.num_outputs == classes
    assert d.y_train.shape == (total - n_test,) and d.y_train.dtype == np.int32
    assert set(np.unique(d.y_train)) == set(range(classes))


@pytest.mark.parametrize('name', ['iris', 'breast_cancer', 'wine'])
def test_tables_are_standardised_by_the_training_split(name):
  d = data.load(data.DataConfig(name=name), seed=3)
  np.testing.assert_allclose(d.x_train.mean(axis=0), 0.0, atol=1e-5)
  np.testing.assert_allclose(d.x_train.std(axis=0), 1.0, atol=1e-4)
  # The test split went through the same affine map, with the training split's statistics.
  raw = data.load(data.DataConfig(name=name, normalise=False), seed=3)
  mean, std = raw.x_train.mean(axis=0), raw.x_train.std(axis=0)
  np.testing.assert_allclose(d.x_test, (raw.x_test - mean) / std, rtol=1e-4, atol=1e-4)
  # The raw values are scikit-learn's.
  x, _ = getattr(datasets, f'load_{name}')(return_X_y=True)
  assert np.isin(raw.x_train[:, 0], x[:, 0].astype(np.float32)).all()


def test_digits_are_8x8_images_scaled_to_the_unit_interval():
  d = data.load(data.DataConfig(name='digits'), seed=0)
  raw = data.load(data.DataConfig(name='digits', normalise=False), seed=0)
  assert raw.x_train.max() == 16.0 and raw.x_train.min() == 0.0
  np.testing.assert_array_equal(d.x_train, raw.x_train / 16.0)
  # The images are the scikit-learn images, row by row.
  images = datasets.load_digits().images
  assert any(np.array_equal(raw.x_train[0, :, :, 0], image) for image in images)


def test_generated_sets_are_as_generated():
  d = data.load(data.DataConfig(name='regression1d', num_points=50, noise=0.0), seed=1)
  x = np.concatenate([d.x_train, d.x_test])
  assert np.all(np.abs(x) <= 1.0)
  np.testing.assert_allclose(d.y_train, np.sin(5 * d.x_train) - np.sin(10 * d.x_train), atol=1e-6)
  noisy = data.load(data.DataConfig(name='regression1d', num_points=2000, noise=0.3), seed=1)
  residual = noisy.y_train - data.regression_function(noisy.x_train)
  assert 0.27 < residual.std() < 0.33
  moons = data.load(data.DataConfig(name='two_moons', num_points=40, noise=0.0), seed=0)
  x, y = datasets.make_moons(n_samples=40, noise=0.0, random_state=0)
  # Every training point is one of make_moons' points, with its label.
  for xi, yi in zip(moons.x_train, moons.y_train):
    j = np.argmin(np.abs(x - xi).sum(axis=1))
    np.testing.assert_allclose(x[j], xi, atol=1e-6)
    assert y[j] == yi


def test_the_split_is_fixed_by_the_seed_and_differs_across_seeds():
  config = data.DataConfig(name='wine', normalise=False)
  a, b, c = data.load(config, 5), data.load(config, 5), data.load(config, 6)
  for left, right in zip(a[:4], b[:4]):
    np.testing.assert_array_equal(left, right)
  assert not np.array_equal(a.x_train, c.x_train)
  # Without a seed, the config's split_seed fixes the split.
  np.testing.assert_array_equal(data.load(dataclasses.replace(config, split_seed=6)).x_train, c.x_train)
  assert 'split_seed' in data.validate(dataclasses.replace(config, split_seed=-1))[0]
  # A split, not a resampling: train and test together are the data set, each example once.
  x, _ = datasets.load_wine(return_X_y=True)
  together = np.concatenate([c.x_train, c.x_test])
  assert sorted(map(tuple, together)) == sorted(map(tuple, x.astype(np.float32)))


def test_the_split_is_stratified():
  d = data.load(data.DataConfig(name='breast_cancer', test_fraction=0.3), seed=2)
  _, y = datasets.load_breast_cancer(return_X_y=True)
  share = np.bincount(y) / len(y)
  np.testing.assert_allclose(np.bincount(d.y_train) / len(d.y_train), share, atol=0.01)
  np.testing.assert_allclose(np.bincount(d.y_test) / len(d.y_test), share, atol=0.01)


def test_num_train_keeps_a_seeded_subset_of_the_training_split():
  full = data.load(data.DataConfig(name='digits'), seed=4)
  small = data.load(data.DataConfig(name='digits', num_train=30), seed=4)
  assert small.x_train.shape == (30, 8, 8, 1)
  np.testing.assert_array_equal(small.x_test, full.x_test)  # the test split is unchanged
  flat = {tuple(row.ravel()) for row in full.x_train}
  assert all(tuple(row.ravel()) in flat for row in small.x_train)
  assert np.bincount(small.y_train, minlength=10).min() >= 2  # stratified: 30 examples, 3 per class
  ten = data.load(data.DataConfig(name='regression1d', num_train=10), seed=4)
  assert ten.x_train.shape == (10, 1) and ten.y_train.shape == (10, 1)
  again = data.load(data.DataConfig(name='regression1d', num_train=10), seed=4)
  np.testing.assert_array_equal(ten.x_train, again.x_train)
  with pytest.raises(ValueError, match='num_train 5000 exceeds'):
    data.load(data.DataConfig(name='iris', num_train=5000), seed=0)


def test_validate_names_every_problem_and_suggests_names():
  problems = data.validate(data.DataConfig(name='mnits', test_fraction=0.0, num_train=-1, noise=-1.0))
  assert len(problems) == 4
  assert "did you mean 'mnist'" in problems[0] and 'fashion_mnist' in problems[0]
  assert data.validate(data.DataConfig()) == []
  assert any('data.path' in p for p in data.validate(data.DataConfig(name='mnist')))
  with pytest.raises(ValueError, match='test_fraction.*num_points'):
    data.load(data.DataConfig(test_fraction=1.5, num_points=1), seed=0)
  with pytest.raises(ValueError, match='seed'):
    data.load(data.DataConfig(), seed=-1)


# ----------------------------------------------------------------------------
# IDX files.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize('dtype', ['uint8', 'int8', 'int16', 'int32', 'float32', 'float64'])
@pytest.mark.parametrize('suffix', ['', '.gz'])
def test_idx_round_trip(tmp_path, dtype, suffix):
  rng = np.random.default_rng(0)
  array = (rng.standard_normal((3, 4, 5)) * 50).astype(dtype)
  path = tmp_path / f'a.idx{suffix}'
  data.write_idx(path, array)
  back = data.read_idx(path)
  assert back.dtype == np.dtype(dtype) and back.shape == (3, 4, 5)
  np.testing.assert_array_equal(back, array)


def test_idx_layout_is_the_published_one(tmp_path):
  # Magic number 00 00 08 02, dims big-endian, then the bytes: a hand-written 2x3 uint8 file.
  raw = bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6])
  (tmp_path / 'm').write_bytes(raw)
  np.testing.assert_array_equal(data.read_idx(tmp_path / 'm'), [[1, 2, 3], [4, 5, 6]])
  # Big-endian int32: 0x00000102 = 258; gzip is recognised whatever the name.
  (tmp_path / 'n').write_bytes(gzip.compress(bytes([0, 0, 0x0C, 1, 0, 0, 0, 1, 0, 0, 1, 2])))
  assert data.read_idx(tmp_path / 'n').tolist() == [258]
  data.write_idx(tmp_path / 'w', np.array([[1, 2, 3], [4, 5, 6]], np.uint8))
  assert (tmp_path / 'w').read_bytes() == raw


def test_idx_errors(tmp_path):
  good = tmp_path / 'good'
  data.write_idx(good, np.arange(12, dtype=np.int32).reshape(3, 4))
  raw = good.read_bytes()
  cases = {
    'bad magic number': b'\x01\x00' + raw[2:],
    'unknown IDX type code': raw[:2] + b'\x07' + raw[3:],
    'shorter than its 12-byte header': raw[:10],
    'truncated IDX file: the header says': raw[:-1],
    'bytes after': raw + b'\x00',
    'truncated or corrupt gzip': gzip.compress(raw)[:-6],
  }
  for message, content in cases.items():
    path = tmp_path / 'bad'
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
      data.read_idx(path)
  with pytest.raises(ValueError, match='type code for dtype'):
    data.write_idx(tmp_path / 'x', np.zeros(3, np.int64))


def _fake_mnist(directory: pathlib.Path, n_train: int, n_test: int, gz: bool) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(7)
  arrays = {
    'train_images': rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
    'train_labels': np.arange(n_train, dtype=np.uint8) % 10,
    'test_images': rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
    'test_labels': (np.arange(n_test, dtype=np.uint8) * 3) % 10,
  }
  for key, array in arrays.items():
    data.write_idx(directory / (data.IDX_FILES[key] + ('.gz' if gz else '')), array)
  return arrays


@pytest.mark.parametrize('gz', [False, True])
def test_an_idx_directory_in_mnist_layout_loads_through_load(tmp_path, gz):
  arrays = _fake_mnist(tmp_path, 40, 20, gz)
  d = data.load(data.DataConfig(name='mnist', path=str(tmp_path)), seed=0)
  assert d.x_train.shape == (40, 28, 28, 1) and d.x_test.shape == (20, 28, 28, 1)
  assert d.num_outputs == 10 and d.task == 'classification'
  np.testing.assert_allclose(d.x_train[..., 0], arrays['train_images'] / 255.0, rtol=1e-6)
  np.testing.assert_array_equal(d.y_test, arrays['test_labels'])
  assert d.y_train.dtype == np.int32 and d.x_train.dtype == np.float32
  subset = data.load(data.DataConfig(name='mnist', path=str(tmp_path), num_train=20), seed=1)
  assert subset.x_train.shape == (20, 28, 28, 1) and np.bincount(subset.y_train).tolist() == [2] * 10


def test_a_missing_idx_directory_names_the_path_and_the_apt_line(tmp_path):
  _fake_mnist(tmp_path, 10, 10, gz=False)
  (tmp_path / data.IDX_FILES['test_labels']).unlink()
  with pytest.raises(ValueError, match='t10k-labels-idx1-ubyte.*data.path'):
    data.load(data.DataConfig(name='fashion_mnist', path=str(tmp_path)), seed=0)
  empty = tmp_path / 'empty'
  empty.mkdir()
  with pytest.raises(ValueError, match='set data.path') as info:
    data.load(data.DataConfig(name='mnist', path=str(empty)), seed=0)
  assert 'apt-get' not in str(info.value)


def test_missing_debian_fashion_mnist_gives_the_apt_line(monkeypatch, tmp_path):
  monkeypatch.setattr(data, 'FASHION_MNIST_DIR', str(tmp_path / 'not-installed'))
  with pytest.raises(ValueError, match='apt-get update && apt-get install -y dataset-fashion-mnist'):
    data.load(data.DataConfig(name='fashion_mnist'), seed=0)


_DEBIAN = pathlib.Path(data.FASHION_MNIST_DIR)
_HAVE_DEBIAN = all((_DEBIAN / f'{base}.gz').is_file() or (_DEBIAN / base).is_file() for base in data.IDX_FILES.values())


@pytest.mark.skipif(not _HAVE_DEBIAN, reason=f'the Debian package is not installed: {data.FASHION_MNIST_APT}')
def test_fashion_mnist_from_the_debian_package():
  d = data.load(data.DataConfig(name='fashion_mnist', num_train=1000), seed=0)
  assert d.x_train.shape == (1000, 28, 28, 1) and d.x_test.shape == (10000, 28, 28, 1)
  assert d.x_test.min() == 0.0 and d.x_test.max() == 1.0
  assert np.bincount(d.y_test).tolist() == [1000] * 10  # the official test split is balanced
