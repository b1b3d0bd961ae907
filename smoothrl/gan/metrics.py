"""Sample-quality measures without downloads: FID and KID proxies, and mode coverage for mixtures of Gaussians.

FID proxy: the Fréchet distance between Gaussians fitted to features of data and of samples (Heusel et al.),

  d² = ‖μ_r − μ_g‖² + Tr(Σ_r + Σ_g − 2 (Σ_r Σ_g)^{1/2}),

with Tr((Σ_r Σ_g)^{1/2}) = Σ_i √λ_i(Σ_r^{1/2} Σ_g Σ_r^{1/2}) (similar matrices; both PSD, so by `eigh`).

KID proxy: the unbiased MMD² (Bińkowski et al.) with the cubic polynomial kernel k(x, y) = (xᵀy/d + 1)³,

  MMD²_u = 1/(m(m−1)) Σ_{i≠j} k(x_i, x_j) + 1/(n(n−1)) Σ_{i≠j} k(y_i, y_j) − 2/(mn) Σ_{i,j} k(x_i, y_j),

averaged over random subsets (mean and standard deviation reported).

The features are those of `smoothrl.gan.classifier` (a classifier trained on the data set itself), so the numbers are
*proxies*; pass an Inception network's pool features as `features` for the published scores. Each result states
its sample counts and which features it used.

Mode coverage (2-D mixtures; the rule of the unrolled-GAN / VEEGAN / PacGAN evaluations): each sample is assigned
to its nearest mode and is *high-quality* when it lies within `num_std` = 3 standard deviations (Euclidean) of it;
a mode is *covered* when at least `min_count` high-quality samples are assigned to it, by default 20% of the
number a perfect generator would put there, ⌈0.2·N/K⌉ (PacGAN's 20 of 100 for 2,500 samples on 25 modes).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from smoothrl.gan.mixtures import Mixture

FeatureFn = Callable[[np.ndarray], Any]


class FidResult(NamedTuple):
  """A Fréchet distance between feature Gaussians, with what it was computed from."""

  value: float
  num_real: int
  num_fake: int
  feature_dim: int
  features: str

  def __str__(self) -> str:
    return f'fid_proxy {self.value:.4g} ({self.num_fake} samples vs {self.num_real} real, {self.features})'


class KidResult(NamedTuple):
  """Unbiased MMD² (cubic kernel) averaged over subsets: mean and standard deviation over the subsets."""

  value: float
  std: float
  num_real: int
  num_fake: int
  num_subsets: int
  subset_size: int
  feature_dim: int
  features: str

  def __str__(self) -> str:
    return (
      f'kid_proxy {self.value:.4g} ± {self.std:.2g} ({self.num_subsets} subsets of {self.subset_size}; '
      f'{self.num_fake} samples vs {self.num_real} real, {self.features})'
    )


class ModeCoverage(NamedTuple):
  """Mode coverage of samples from a mixture (module docstring's rule)."""

  modes_covered: int
  num_modes: int
  high_quality_fraction: float
  counts: np.ndarray  # high-quality samples per mode, (K,)
  num_samples: int
  min_count: int
  num_std: float


def _matrix(name: str, x: Any) -> np.ndarray:
  x = np.asarray(x, np.float64)
  if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 1:
    raise ValueError(f'{name} must be a (N, d) feature matrix with N >= 2, got shape {x.shape}')
  if not np.all(np.isfinite(x)):
    raise ValueError(f'{name} has non-finite entries')
  return x


def _features(name: str, x: Any, features: FeatureFn | None) -> np.ndarray:
  if features is not None:
    x = np.asarray(features(np.asarray(x)))
  return _matrix(name, x)


def gaussian_fit(features: Any) -> tuple[np.ndarray, np.ndarray]:
  """(μ, Σ) of the rows of `features` (N, d): the mean and the unbiased covariance (N − 1)."""
  x = _matrix('features', features)
  return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
  values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
  return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mu1: Any, cov1: Any, mu2: Any, cov2: Any) -> float:
  """d² = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^{1/2}) between N(μ₁, Σ₁) and N(μ₂, Σ₂) (float64, via `eigh`)."""
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
  d = mu1.shape[0]
  if mu1.shape != (d,) or mu2.shape != (d,) or cov1.shape != (d, d) or cov2.shape != (d, d):
    raise ValueError(
      f'means (d,) and covariances (d, d) needed, got {mu1.shape}, {cov1.shape}, {mu2.shape}, {cov2.shape}'
    )
  root = _psd_sqrt(cov1)
  middle = root @ cov2 @ root
  trace_sqrt = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)))
  return float(np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2.0 * trace_sqrt)


def fid_proxy(real: Any, fake: Any, features: FeatureFn | None = None, features_name: str = '') -> FidResult:
  """The Fréchet distance between Gaussians fitted to the features of `real` and `fake`.

  Args:
    real, fake: data and samples; already features (N, d) when `features` is None.
    features: maps a batch of inputs to (N, d) features: `functools.partial(classifier.features, c)` for the proxy,
      an Inception network's pool features for the published FID.
    features_name: how the result names the features (default: 'given features' or the function's name).
  """
  fr, ff = _features('real features', real, features), _features('fake features', fake, features)
  if fr.shape[1] != ff.shape[1]:
    raise ValueError(f'real and fake features differ in size: {fr.shape[1]} and {ff.shape[1]}')
  value = frechet_distance(*gaussian_fit(fr), *gaussian_fit(ff))
  return FidResult(value, fr.shape[0], ff.shape[0], fr.shape[1], features_name or _feature_name(features))


def _feature_name(features: FeatureFn | None) -> str:
  if features is None:
    return 'given features'
  inner = getattr(features, 'args', ())
  if inner and hasattr(inner[0], 'name'):  # functools.partial(classifier.features, classifier)
    return str(inner[0].name)
  return getattr(features, '__name__', repr(features))


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """k(x, y) = (xᵀy/d + 1)³ between the rows of x (m, d) and y (n, d)."""
  return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: Any, y: Any, kernel: Callable[[np.ndarray, np.ndarray], np.ndarray] = polynomial_kernel) -> float:
  """The unbiased MMD² between the rows of x (m, d) and y (n, d) (module docstring)."""
  x, y = _matrix('x', x), _matrix('y', y)
  m, n = x.shape[0], y.shape[0]
  kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
  within_x = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
  within_y = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
  return float(within_x + within_y - 2.0 * kxy.mean())


def kid_proxy(
  real: Any,
  fake: Any,
  features: FeatureFn | None = None,
  num_subsets: int = 10,
  subset_size: int = 1000,
  seed: int = 0,
  features_name: str = '',
) -> KidResult:
  """Unbiased MMD² with the cubic kernel on `num_subsets` random subsets of min(`subset_size`, N_real, N_fake)
  rows of each (drawn without replacement within a subset); `features` as in `fid_proxy`."""
  if isinstance(num_subsets, bool) or not isinstance(num_subsets, int) or num_subsets < 1:
    raise ValueError(f'num_subsets must be an int >= 1, got {num_subsets!r}')
  if isinstance(subset_size, bool) or not isinstance(subset_size, int) or subset_size < 2:
    raise ValueError(f'subset_size must be an int >= 2, got {subset_size!r}')
  fr, ff = _features('real features', real, features), _features('fake features', fake, features)
  if fr.shape[1] != ff.shape[1]:
    raise ValueError(f'real and fake features differ in size: {fr.shape[1]} and {ff.shape[1]}')
  size = min(subset_size, fr.shape[0], ff.shape[0])
  rng = np.random.default_rng(seed)
  values = [
    mmd2_unbiased(fr[rng.choice(fr.shape[0], size, replace=False)], ff[rng.choice(ff.shape[0], size, replace=False)])
    for _ in range(num_subsets)
  ]
  return KidResult(
    value=float(np.mean(values)),
    std=float(np.std(values)),
    num_real=fr.shape[0],
    num_fake=ff.shape[0],
    num_subsets=num_subsets,
    subset_size=size,
    feature_dim=fr.shape[1],
    features=features_name or _feature_name(features),
  )


def mode_coverage(samples: Any, mixture: Mixture, num_std: float = 3.0, min_count: int | None = None) -> ModeCoverage:
  """Modes covered and the high-quality fraction of `samples` (N, D) of `mixture` (module docstring's rule)."""
  x = np.asarray(samples, np.float64)
  if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] != mixture.means.shape[1]:
    raise ValueError(f'samples must be (N, {mixture.means.shape[1]}) with N >= 1, got shape {x.shape}')
  if not num_std > 0:
    raise ValueError(f'num_std must be > 0, got {num_std!r}')
  n, k = x.shape[0], mixture.num_modes
  if min_count is None:
    min_count = max(1, math.ceil(0.2 * n / k))
  elif isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
    raise ValueError(f'min_count must be an int >= 1, got {min_count!r}')
  distances = np.linalg.norm(x[:, None, :] - np.asarray(mixture.means, np.float64)[None], axis=-1)
  nearest = np.argmin(distances, axis=1)
  good = distances[np.arange(n), nearest] <= num_std * mixture.std
  counts = np.bincount(nearest[good], minlength=k)
  return ModeCoverage(
    modes_covered=int(np.sum(counts >= min_count)),
    num_modes=k,
    high_quality_fraction=float(np.mean(good)),
    counts=counts,
    num_samples=n,
    min_count=int(min_count),
    num_std=float(num_std),
  )
