"""α(hλ) of Table 3.1 and the BEA coefficients of Eq A.83."""

import fractions

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from smoothrl.flows import coefficients as co


@pytest.fixture(autouse=True, scope='module')
def _x64():
  with jax.enable_x64(True):
    yield


def test_pf_coefficient_is_log_one_minus_z_over_z_below_one():
  z = np.array([-3.0, -0.5, 0.002, 0.3, 0.9, 0.999])
  np.testing.assert_allclose(co.alpha_pf(z), np.log1p(-z) / z, rtol=1e-14)


def test_pf_series_near_zero_is_continuous_and_exact_at_zero():
  assert float(co.alpha_pf(0.0)) == -1.0
  for z in (co.SERIES_RADIUS * 0.999, co.SERIES_RADIUS * 1.001, -co.SERIES_RADIUS * 0.999):
    np.testing.assert_allclose(co.alpha_pf(z), np.log1p(-z) / z, rtol=1e-15)
  # The derivative at 0 is the series' −1/2, under jax.grad too.
  np.testing.assert_allclose(jax.grad(co.alpha_pf)(0.0), -0.5)


def test_pf_coefficient_at_one_is_minus_infinity_and_nan_beyond_for_real_input():
  assert float(co.alpha_pf(1.0)) == -np.inf
  assert complex(co.alpha_pf(1.0 + 0j)) == complex(-np.inf, 0)
  assert np.isnan(float(co.alpha_pf(1.5)))


@pytest.mark.parametrize('z', [1.5, 2.0, 2.5, 7.0])
def test_pf_complex_branch_beyond_one(z):
  # (log(z − 1) + iπ)/z: the principal branch of Section 3.3, for either sign of a zero imaginary part.
  expected = (np.log(z - 1) + 1j * np.pi) / z
  np.testing.assert_allclose(co.alpha_pf(complex(z, 0.0)), expected, rtol=1e-14)
  np.testing.assert_allclose(co.alpha_pf(jax.lax.complex(z, -0.0)), expected, rtol=1e-14)
  # e^{α_PF(z) z} = 1 − z: the PF of a quadratic lands on every GD iterate (z > 2: |1 − z| > 1 diverges).
  np.testing.assert_allclose(np.exp(co.alpha_pf(complex(z, 0.0)) * z), co.gd_factor(z), atol=1e-13)


def test_pf_stability_regions():
  """Real-stable z < 1, complex-stable 1 < z < 2 (Re α_PF < 0), unstable z > 2 (Re α_PF > 0)."""
  re = lambda z: float(jnp.real(co.alpha_pf(complex(z, 0))))
  assert re(0.5) < 0 and re(1.5) < 0 and re(1.99) < 0
  assert re(2.01) > 0 and re(4.0) > 0
  assert abs(re(2.0)) < 1e-15


def test_truncations_of_the_pf_series_are_the_other_flows():
  """α_NGF, α_IGR, α_3 are the PF's series −Σ zⁿ/(n+1) to orders 0, 1 and 2 (Table 3.1)."""
  z = np.array([1e-3, 1e-2, 5e-2])
  for name, order in (('ngf', 1), ('igr', 2), ('third', 3)):
    gap = np.abs(co.COEFFICIENTS[name](z) - co.alpha_pf(z))
    slope = np.polyfit(np.log(z), np.log(gap), 1)[0]
    assert abs(slope - order) < 0.05, (name, slope)
  np.testing.assert_allclose(co.alpha_igr(0.4), -1.2)
  np.testing.assert_allclose(co.alpha_third(0.3), -(1 + 0.15 + 0.03))
  np.testing.assert_allclose(co.alpha_ngf(np.array([0.2, 3.0])), [-1.0, -1.0])


def test_bea_recurrence_solves_to_alternating_harmonic_terms():
  """Lemma A.1.5: the solution of Eq A.83 with c_0 = 1 is c_n = (−1)ⁿ/(n + 1)."""
  c = co.bea_coefficients(9)
  assert c == tuple(fractions.Fraction((-1) ** n, n + 1) for n in range(9))
  # Their generating function log(1 + x)/x is α_PF(−x).
  x = 0.1
  np.testing.assert_allclose(sum(float(cn) * x**n for n, cn in enumerate(c)), -co.alpha_pf(-x), rtol=1e-9)


def test_bea_rejects_bad_counts():
  with pytest.raises(ValueError, match='positive int'):
    co.bea_coefficients(0)
