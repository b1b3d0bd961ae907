"""Supervised data sets as numpy arrays, split and normalised the same way for every seed-fixed run.

Every set is local: scikit-learn's bundled tables and generators, or IDX files already on disk (MNIST from a
directory the config names; Fashion-MNIST from a directory or from the Debian package `dataset-fashion-mnist`).
Nothing is downloaded.

| name | x (one example) | y | source, split, normalisation |
|---|---|---|---|
| 'iris' | (4,) | 3 classes | scikit-learn; stratified split; standardised |
| 'digits' | (8, 8, 1) | 10 classes | scikit-learn's 8x8 digits (pixels 0..16); stratified split; scaled to [0, 1] |
| 'breast_cancer' | (30,) | 2 classes | scikit-learn (UCI, thesis Figure A.7); stratified split; standardised |
| 'wine' | (13,) | 3 classes | scikit-learn; stratified split; standardised |
| 'two_moons' | (2,) | 2 classes | `sklearn.datasets.make_moons(num_points, noise)`; stratified split; as generated |
| 'regression1d' | (1,) | (1,) float | x ~ U[-1, 1], y = sin(5x) - sin(10x) + noise * N(0, 1); random split; raw |
| 'mnist' | (28, 28, 1) | 10 classes | IDX files in `path`; the official 60000/10000 split; scaled to [0, 1] |
| 'fashion_mnist' | (28, 28, 1) | 10 classes | IDX files in `path` or the Debian package's; official split; [0, 1] |

The function of 'regression1d' is the thesis' one-dimensional regression target (Figure 6.1, Appendix D).

'Standardised': each feature minus its mean and over its standard deviation, both taken over the returned training
examples only (a constant feature is divided by 1). `DataConfig.normalise=False` keeps the raw values.
"""

from __future__ import annotations

import dataclasses
import difflib
import gzip
import math
import os
import pathlib
import zlib
from typing import NamedTuple

import numpy as np

NAMES: tuple[str, ...] = (
  'iris',
  'digits',
  'breast_cancer',
  'wine',
  'two_moons',
  'regression1d',
  'mnist',
  'fashion_mnist',
)
TABULAR = ('iris', 'breast_cancer', 'wine')
GENERATED = ('two_moons', 'regression1d')
IDX_SETS = ('mnist', 'fashion_mnist')

# Where the Debian package `dataset-fashion-mnist` puts its files, and the line that installs it.
FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist'
FASHION_MNIST_APT = 'apt-get update && apt-get install -y dataset-fashion-mnist'

# The four files of an MNIST-layout directory, each plain or gzipped (name + '.gz').
IDX_FILES: dict[str, str] = {
  'train_images': 'train-images-idx3-ubyte',
  'train_labels': 'train-labels-idx1-ubyte',
  'test_images': 't10k-images-idx3-ubyte',
  'test_labels': 't10k-labels-idx1-ubyte',
}


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Which data set, and how it is split.

  Attributes:
    name: one of `NAMES`.
    test_fraction: the share of the examples held out for testing (sets without an official split).
    num_train: 0 keeps the whole training split; n > 0 keeps n training examples drawn with the seed (stratified
      by class where every class can be represented in both the kept and the dropped part), e.g. 10 points for
      thesis Figure 8.3.
    num_points: the number of examples generated for 'two_moons' and 'regression1d' (before the split).
    noise: the noise of 'two_moons' (`make_moons`' noise) and of 'regression1d' (the standard deviation on y).
    path: a directory of IDX files in MNIST's layout (`IDX_FILES`), for 'mnist' and 'fashion_mnist'.
    normalise: apply the normalisation of the module's table; False keeps the raw values (as float32).
    split_seed: the seed of `load` when it is given none: runs that differ only in their own seed share the split.
  """

  name: str = 'digits'
  test_fraction: float = 0.25
  num_train: int = 0
  num_points: int = 200
  noise: float = 0.1
  path: str = ''
  normalise: bool = True
  split_seed: int = 0


class Dataset(NamedTuple):
  """A split data set (numpy arrays).

  Attributes:
    x_train, x_test: float32, (N, H, W, 1) for images and (N, D) for tables and generated sets.
    y_train, y_test: int32 class labels of shape (N,) for classification; float32 targets (N, 1) for regression.
    num_outputs: the number of classes, or 1 for regression.
    task: 'classification' or 'regression'.
    name: the data set's name.
  """

  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  num_outputs: int
  task: str
  name: str


def _is_int(value: object) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_real(value: object) -> bool:
  return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def validate(config: DataConfig) -> list[str]:
  """The problems of `config`, each a sentence naming the field (empty when it can be loaded)."""
  problems = []
  if not isinstance(config.name, str) or config.name not in NAMES:
    close = difflib.get_close_matches(str(config.name), NAMES, n=1)
    hint = f'did you mean {close[0]!r}? ' if close else ''
    problems.append(f'data.name {config.name!r} is not a data set; {hint}valid: {", ".join(NAMES)}')
  if not _is_real(config.test_fraction) or not 0.0 < config.test_fraction < 1.0:
    problems.append(f'data.test_fraction must be a number strictly between 0 and 1, got {config.test_fraction!r}')
  if not _is_int(config.num_train) or config.num_train < 0:
    problems.append(f'data.num_train must be an int >= 0 (0: the whole training split), got {config.num_train!r}')
  if not _is_int(config.num_points) or config.num_points < 2:
    problems.append(f'data.num_points must be an int >= 2, got {config.num_points!r}')
  if not _is_real(config.noise) or not math.isfinite(config.noise) or config.noise < 0:
    problems.append(f'data.noise must be a finite number >= 0, got {config.noise!r}')
  if not isinstance(config.path, str):
    problems.append(f'data.path must be a string (a directory of IDX files), got {config.path!r}')
  elif config.name == 'mnist' and not config.path:
    problems.append(f'data.path must name a directory of the MNIST IDX files ({", ".join(IDX_FILES.values())})')
  if not isinstance(config.normalise, (bool, np.bool_)):
    problems.append(f'data.normalise must be a bool, got {config.normalise!r}')
  if not _is_int(config.split_seed) or config.split_seed < 0:
    problems.append(f'data.split_seed must be an int >= 0, got {config.split_seed!r}')
  return problems


# ----------------------------------------------------------------------------
# IDX files.
# ----------------------------------------------------------------------------

# IDX type codes (the third byte of the magic number) and their big-endian element types.
_IDX_DTYPES: dict[int, np.dtype] = {
  0x08: np.dtype('>u1'),
  0x09: np.dtype('>i1'),
  0x0B: np.dtype('>i2'),
  0x0C: np.dtype('>i4'),
  0x0D: np.dtype('>f4'),
  0x0E: np.dtype('>f8'),
}
_IDX_CODES: dict[np.dtype, int] = {d.newbyteorder('='): code for code, d in _IDX_DTYPES.items()}
_GZIP_MAGIC = b'\x1f\x8b'


def read_idx(path: str | os.PathLike) -> np.ndarray:
  """Reads an IDX file, plain or gzipped (recognised by its content, whatever the name).

  The format: a magic number of four bytes (0, 0, a type code, the number of dimensions d), d big-endian uint32
  sizes, then the elements in row-major order, big-endian. Returns the array in native byte order.

  Raises:
    FileNotFoundError: no such file.
    ValueError: a corrupt gzip stream, a bad magic number, an unknown type code, or a file shorter or longer than its
      header says.
  """
  path = pathlib.Path(path)
  raw = path.read_bytes()
  if raw[:2] == _GZIP_MAGIC:
    try:
      raw = gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as e:
      raise ValueError(f'{path}: truncated or corrupt gzip stream ({e})') from e
  if len(raw) < 4:
    raise ValueError(f'{path}: truncated IDX file: {len(raw)} bytes, shorter than the 4-byte magic number')
  if raw[0] != 0 or raw[1] != 0:
    raise ValueError(f'{path}: not an IDX file: bad magic number {raw[:4].hex()} (an IDX file starts with 00 00)')
  code, ndim = raw[2], raw[3]
  if code not in _IDX_DTYPES:
    known = ', '.join(f'0x{c:02x}' for c in _IDX_DTYPES)
    raise ValueError(f'{path}: bad magic number {raw[:4].hex()}: unknown IDX type code 0x{code:02x} (known: {known})')
  if ndim < 1:
    raise ValueError(f'{path}: bad magic number {raw[:4].hex()}: an IDX array needs at least one dimension')
  header = 4 + 4 * ndim
  if len(raw) < header:
    raise ValueError(f'{path}: truncated IDX file: {len(raw)} bytes, shorter than its {header}-byte header')
  dims = tuple(int(d) for d in np.frombuffer(raw, '>u4', ndim, offset=4))
  dtype = _IDX_DTYPES[code]
  expected = math.prod(dims) * dtype.itemsize
  body = len(raw) - header
  if body < expected:
    raise ValueError(f'{path}: truncated IDX file: the header says {dims} ({expected} bytes of data), found {body}')
  if body > expected:
    raise ValueError(f'{path}: {body - expected} bytes after the {dims} array its header describes')
  data = np.frombuffer(raw, dtype, math.prod(dims), offset=header)
  return data.astype(dtype.newbyteorder('=')).reshape(dims)


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
  """Writes `array` as an IDX file; gzipped when `path` ends in '.gz' (read back by `read_idx`).

  Raises:
    ValueError: a dtype IDX has no code for (it has uint8, int8, int16, int32, float32, float64), no dimensions, more
      than 255, or a dimension of 2**32 or more.
  """
  array = np.asarray(array)
  dtype = array.dtype.newbyteorder('=')
  if dtype not in _IDX_CODES:
    raise ValueError(f'IDX has no type code for dtype {array.dtype}; use uint8, int8, int16, int32, float32 or float64')
  if not 1 <= array.ndim <= 255:
    raise ValueError(f'an IDX array needs 1 to 255 dimensions, got shape {array.shape}')
  if any(d >= 2**32 for d in array.shape):
    raise ValueError(f'an IDX dimension must be below 2**32, got shape {array.shape}')
  code = _IDX_CODES[dtype]
  header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, '>u4').tobytes()
  data = header + np.ascontiguousarray(array, _IDX_DTYPES[code]).tobytes()
  path = pathlib.Path(path)
  if path.suffix == '.gz':
    data = gzip.compress(data, mtime=0)
  path.write_bytes(data)


def _idx_file(directory: pathlib.Path, base: str) -> pathlib.Path | None:
  for candidate in (directory / base, directory / f'{base}.gz'):
    if candidate.is_file():
      return candidate
  return None


def _read_idx_directory(name: str, directory: str) -> dict[str, np.ndarray]:
  """The four arrays of an MNIST-layout directory, checked for shapes and labels."""
  from_package = not directory
  where = pathlib.Path(FASHION_MNIST_DIR if from_package else directory)
  found = {key: _idx_file(where, base) for key, base in IDX_FILES.items()}
  missing = [IDX_FILES[key] for key, file in found.items() if file is None]
  if missing:
    if from_package:
      fix = f'install them with `{FASHION_MNIST_APT}`, or set data.path to a directory that holds them'
    else:
      fix = 'set data.path to a directory that holds them'
    raise ValueError(f'{name}: no IDX file {", ".join(missing)} (or .gz) in {where}; {fix}')
  arrays = {key: read_idx(file) for key, file in found.items()}
  for split in ('train', 'test'):
    images, labels = arrays[f'{split}_images'], arrays[f'{split}_labels']
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
      raise ValueError(
        f'{name}: {split} images of shape {images.shape} and labels of shape {labels.shape} in {where} are not '
        '(N, H, W) images with N labels'
      )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
      raise ValueError(f'{name}: {split} labels in {where} must be digits 0..9, found {labels.min()}..{labels.max()}')
  return arrays


# ----------------------------------------------------------------------------
# Loading.
# ----------------------------------------------------------------------------


def _sklearn_table(name: str) -> tuple[np.ndarray, np.ndarray]:
  from sklearn import datasets

  loader = {
    'iris': datasets.load_iris,
    'digits': datasets.load_digits,
    'breast_cancer': datasets.load_breast_cancer,
    'wine': datasets.load_wine,
  }[name]
  x, y = loader(return_X_y=True)
  if name == 'digits':
    x = x.reshape(-1, 8, 8, 1)
  return x, y


def regression_function(x: np.ndarray) -> np.ndarray:
  """The noiseless target of 'regression1d': sin(5x) - sin(10x) (thesis Figure 6.1, Appendix D)."""
  return np.sin(5 * x) - np.sin(10 * x)


def _split(name: str, x, y, test_fraction: float, seed: int, stratify: bool):
  from sklearn.model_selection import train_test_split

  try:
    return train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y if stratify else None)
  except ValueError as e:
    raise ValueError(f'{name}: cannot split {len(x)} examples with test_fraction {test_fraction}: {e}') from e


def _subset(x: np.ndarray, y: np.ndarray, num_train: int, seed: int, classification: bool):
  """`num_train` examples of (x, y), stratified by class where every class fits on both sides."""
  from sklearn.model_selection import train_test_split

  if num_train == len(x):
    return x, y
  classes = len(np.unique(y)) if classification else 0
  if classification and classes <= num_train <= len(x) - classes:
    x, _, y, _ = train_test_split(x, y, train_size=num_train, random_state=seed, stratify=y)
    return x, y
  keep = np.sort(np.random.default_rng(seed).permutation(len(x))[:num_train])
  return x[keep], y[keep]


def load(config: DataConfig, seed: int | None = None) -> Dataset:
  """Loads, splits and normalises the data set of `config` (see the module docstring for each set).

  The split (train/test, stratified by class for classification) and the `num_train` subset are fixed by `seed`
  (`config.split_seed` when None); the generated sets are also drawn with it. MNIST and Fashion-MNIST keep their
  official split (`test_fraction` does not apply). Normalisation: tables are standardised with the mean and standard
  deviation of the returned training examples; images are scaled to [0, 1] (digits / 16, MNIST and Fashion-MNIST /
  255); the generated sets are as generated.

  Raises:
    ValueError: a bad config (every problem of `validate`), a bad seed, missing or malformed IDX files (naming the
      directory, `data.path` and for Fashion-MNIST the apt-get line), or `num_train` larger than the training split.
  """
  problems = validate(config)
  if seed is None:
    seed = config.split_seed
  elif not _is_int(seed) or seed < 0:
    problems.append(f'seed must be an int >= 0, got {seed!r}')
  if problems:
    raise ValueError('invalid data config: ' + '; '.join(problems))
  seed = int(seed)
  name = config.name
  task = 'regression' if name == 'regression1d' else 'classification'

  if name in IDX_SETS:
    arrays = _read_idx_directory(name, config.path)
    x_train, y_train = arrays['train_images'][..., None], arrays['train_labels']
    x_test, y_test = arrays['test_images'][..., None], arrays['test_labels']
    num_outputs = 10
  else:
    if name in GENERATED:
      if name == 'two_moons':
        from sklearn.datasets import make_moons

        x, y = make_moons(n_samples=config.num_points, noise=config.noise, random_state=seed)
      else:
        rng = np.random.default_rng(seed)
        x = rng.uniform(-1.0, 1.0, (config.num_points, 1))
        y = regression_function(x) + config.noise * rng.standard_normal(x.shape)
    else:
      x, y = _sklearn_table(name)
    num_outputs = 1 if task == 'regression' else int(np.max(y)) + 1
    x_train, x_test, y_train, y_test = _split(name, x, y, config.test_fraction, seed, task == 'classification')

  if config.num_train:
    if config.num_train > len(x_train):
      raise ValueError(f'{name}: data.num_train {config.num_train} exceeds the {len(x_train)} training examples')
    x_train, y_train = _subset(x_train, y_train, config.num_train, seed, task == 'classification')

  x_train, x_test = x_train.astype(np.float32), x_test.astype(np.float32)
  if config.normalise:
    if name in TABULAR:
      mean = x_train.mean(axis=0)
      std = x_train.std(axis=0)
      std = np.where(std > 0, std, 1.0).astype(np.float32)
      x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    elif name == 'digits':
      x_train, x_test = x_train / 16.0, x_test / 16.0
    elif name in IDX_SETS:
      x_train, x_test = x_train / 255.0, x_test / 255.0
  if task == 'regression':
    y_train, y_test = y_train.astype(np.float32).reshape(-1, 1), y_test.astype(np.float32).reshape(-1, 1)
  else:
    y_train, y_test = y_train.astype(np.int32), y_test.astype(np.int32)
  return Dataset(
    x_train=np.ascontiguousarray(x_train, np.float32),
    y_train=y_train,
    x_test=np.ascontiguousarray(x_test, np.float32),
    y_test=y_test,
    num_outputs=num_outputs,
    task=task,
    name=name,
  )
