"""The vector fields of the flows (Eqs 3.2–3.4, 3.9, 3.11, Figure 3.17) against closed forms and dense references."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from jax.flatten_util import ravel_pytree

from smoothrl.flows import coefficients as co
from smoothrl.flows import fields, holomorphic


@pytest.fixture(autouse=True, scope='module')
def _x64():
  with jax.enable_x64(True):
    yield


# A quadratic ½θᵀAθ + bᵀθ over a two-leaf pytree (D = 6); h = 0.5 puts hλ in every regime of Section 3.3.1:
# unstable (> 2), complex stable (1, 2), real stable (0, 1) and negative curvature.
H = 0.5
LAMBDAS = np.array([5.0, 3.0, 1.5, 0.8, 0.2, -0.5])


@pytest.fixture(scope='module')
def quadratic():
  rng = np.random.default_rng(0)
  q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
  a = q @ np.diag(LAMBDAS) @ q.T
  b = rng.normal(size=6)
  loss = lambda p: 0.5 * _flat(p) @ jnp.asarray(a) @ _flat(p) + jnp.asarray(b) @ _flat(p)
  params = {'u': jnp.asarray(rng.normal(size=(2, 2))), 'v': jnp.asarray(rng.normal(size=2))}
  return loss, params, a, b


def _flat(tree):
  return jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(tree)])


def _flip(z):
  """Figure 3.17's coefficients by position: +1 on u_0, −1 on every other direction."""
  return jnp.where(jnp.arange(z.size) == 0, 1.0, -1.0)


def _pf_branch(z):
  return co.alpha_pf(z + 0j)


@pytest.fixture(scope='module')
def quadratic_fields(quadratic):
  """Every field of the quadratic at params, for a learning rate h given at call time (one compiled program)."""
  loss, params, _, _ = quadratic

  @jax.jit
  def evaluate(p, h):
    lanczos = {'method': 'lanczos', 'krylov_depth': 6}
    made = {name: fields.make(name, loss, h) for name in fields.FLOWS}
    made |= {
      'pf lanczos': fields.principal(loss, h, **lanczos),
      'spectral pf': fields.spectral(loss, h, _pf_branch),
      'spectral pf real z': fields.spectral(loss, h, co.alpha_pf),
      'flip': fields.spectral(loss, h, _flip),
      'flip lanczos': fields.spectral(loss, h, _flip, **lanczos),
      'flip topk': fields.spectral_topk(loss, h, jnp.ones_like, k=1, krylov_depth=6),
      # The top two pairs from a random start (key), not from g.
      'pf topk on pf': fields.spectral_topk(
        loss, h, _pf_branch, k=2, base='pf', krylov_depth=6, base_depth=6, key=jax.random.PRNGKey(3)
      ),
    }
    return {name: field(p) for name, field in made.items()}

  return evaluate(params, H), evaluate


# Table 3.1 in numpy, at complex z: log of 1 − z < 0 (+0i) is the branch log(z − 1) + iπ of Section 3.3.
ALPHAS = {
  'ngf': lambda z: -np.ones_like(z),
  'igr': lambda z: -(1 + z / 2),
  'third': lambda z: -(1 + z / 2 + z**2 / 3),
  'pf': lambda z: np.log(1 - z) / z,
}


def _eigh_field(a, g, alpha, h=H):
  """Σ α(hλ_i)(gᵀu_i)u_i from numpy's eigh."""
  values, vectors = np.linalg.eigh(a)
  return vectors @ (alpha(h * values + 0j) * (vectors.T @ g))


def test_each_field_on_a_quadratic_is_its_table_3_1_coefficient_in_the_eigenbasis(quadratic, quadratic_fields):
  _, params, a, b = quadratic
  out, _ = quadratic_fields
  g = a @ np.asarray(_flat(params)) + b
  alphas = {
    'ngf': ALPHAS['ngf'],
    'igr': ALPHAS['igr'],
    'third': ALPHAS['third'],  # T[g, g] = 0 on a quadratic
    'pf': ALPHAS['pf'],
    'pf lanczos': ALPHAS['pf'],  # depth D: exact
    'pf+third': ALPHAS['pf'],
  }
  for name, alpha in alphas.items():
    assert jax.tree.structure(out[name]) == jax.tree.structure(params), name
    np.testing.assert_allclose(_flat(out[name]), _eigh_field(a, g, alpha), rtol=1e-10, atol=1e-10, err_msg=name)


def test_pf_on_a_quadratic_is_the_matrix_logarithm_of_gd(quadratic, quadratic_fields):
  """φ(hA)g = (1/h) log(I − hA)(θ − θ*): the PF's velocity that lands on the GD iterates (erratum 1)."""
  _, params, a, b = quadratic
  out, _ = quadratic_fields
  theta = np.asarray(_flat(params))
  expected = scipy.linalg.logm(np.eye(6) - H * a) @ (theta + np.linalg.solve(a, b)) / H
  assert np.max(np.abs(np.imag(expected))) > 0.1  # hλ_0 > 1: the PF is complex
  for name in ('pf', 'pf lanczos'):
    assert out[name]['u'].dtype == jnp.complex128
    np.testing.assert_allclose(_flat(out[name]), expected, rtol=1e-9, atol=1e-9, err_msg=name)


def test_pf_is_real_valued_below_one_over_h_and_keeps_the_parameter_precision(quadratic, quadratic_fields):
  loss, params, _, _ = quadratic
  out = quadratic_fields[1](params, float(0.9 / LAMBDAS[0]))  # every hλ < 1
  for name in ('pf', 'pf lanczos'):
    assert float(jnp.max(jnp.abs(jnp.imag(_flat(out[name]))))) == 0.0, name
  single = jax.tree.map(lambda x: x.astype(jnp.float32), params)
  loss32 = lambda p: loss(jax.tree.map(lambda x: x.astype(jnp.float64), p)).astype(jnp.float32)
  dtypes = jax.eval_shape(lambda p: (fields.principal(loss32, H)(p), fields.igr(loss32, H)(p)), single)
  assert dtypes[0]['u'].dtype == jnp.complex64 and dtypes[1]['u'].dtype == jnp.float32


def test_figure_3_17_flow_flips_the_top_direction_only(quadratic, quadratic_fields):
  """θ̇ = (gᵀu_0)u_0 − Σ_{i≥1}(gᵀu_i)u_i = −g + 2(gᵀu_0)u_0, dense, by Lanczos, and by the top-k override."""
  _, params, a, b = quadratic
  out, _ = quadratic_fields
  g = a @ np.asarray(_flat(params)) + b
  u0 = np.linalg.eigh(a)[1][:, -1]
  expected = -g + 2 * (g @ u0) * u0
  assert out['flip']['u'].dtype == jnp.float64
  for name in ('flip', 'flip lanczos', 'flip topk'):
    np.testing.assert_allclose(_flat(out[name]), expected, rtol=1e-10, atol=1e-10, err_msg=name)


def test_spectral_with_the_pf_coefficient_is_the_principal_flow_and_topk_overrides_compose(quadratic_fields):
  out, _ = quadratic_fields
  pf = _flat(out['pf'])
  np.testing.assert_allclose(_flat(out['spectral pf']), pf, atol=1e-12)
  # Real z: α_PF is NaN beyond z = 1 (the coefficients' convention), so the real spectral field is NaN there.
  assert np.all(np.isnan(_flat(out['spectral pf real z'])))
  # The PF's own coefficients on the top two directions over a PF base: the PF.
  np.testing.assert_allclose(_flat(out['pf topk on pf']), pf, atol=1e-10)


def test_lanczos_is_exact_when_the_krylov_space_of_g_closes_early_and_zero_at_a_critical_point():
  """g in a 2-dimensional invariant subspace: the Krylov space closes after two steps and the dropped steps add
  nothing; g = 0 gives θ̇ = 0, not NaN (both under vmap)."""
  a = jnp.diag(jnp.array([4.0, 3.0, 1.0, 0.5, 0.1]))
  theta = jnp.array([1.0, 0.0, 0.0, 2.0, 0.0])
  expected = scipy.linalg.logm(np.eye(5) - H * np.asarray(a)) @ np.asarray(theta) / H
  field = fields.principal(lambda p: 0.5 * p @ a @ p, H, method='lanczos', krylov_depth=5)
  out = jax.jit(jax.vmap(field))(jnp.stack([theta, jnp.zeros_like(theta)]))
  np.testing.assert_allclose(out[0], expected, atol=1e-12)
  np.testing.assert_array_equal(out[1], 0)


def test_arnoldi_pf_on_a_complex_symmetric_quadratic_is_exact_at_full_depth_and_when_the_space_closes():
  """E = ½θᵀAθ with A complex symmetric (Aᵀ = A ≠ Aᴴ; a dense 4 × 4 block and a diagonal 2 × 2 one), holomorphic:
  φ(hA)Aθ = (1/h) log(I − hA)θ (scipy's logm), at a generic θ (Arnoldi to depth D), at θ on the diagonal block
  (the Krylov space closes after two steps and the dropped steps add nothing) and at θ = 0."""
  rng = np.random.default_rng(1)
  m = rng.normal(size=(4, 4)) + 1j * rng.normal(size=(4, 4))
  a = np.zeros((6, 6), complex)
  a[:4, :4] = 0.5 * (m + m.T)
  a[4, 4], a[5, 5] = 2.5 + 0.5j, 0.7 - 0.2j
  h = float(1.5 / np.max(np.linalg.eigvals(a).real))
  thetas = np.stack([rng.normal(size=6) + 1j * rng.normal(size=6), [0, 0, 0, 0, 1, 2j], np.zeros(6)])
  field = fields.principal(lambda p: 0.5 * p @ jnp.asarray(a) @ p, h, method='lanczos', krylov_depth=6)
  out = jax.jit(jax.vmap(field))(jnp.asarray(thetas))
  log = scipy.linalg.logm(np.eye(6) - h * a) / h
  for i in range(2):
    np.testing.assert_allclose(out[i], log @ thetas[i], rtol=1e-9, atol=1e-10)
  np.testing.assert_array_equal(out[2], 0)


# A tanh MLP 2 → 5 → 1 on 6 points, squared error: non-quadratic and holomorphic (D = 21).
def _mlp_loss(p, x, y):
  hidden = jnp.tanh(x @ p['w1'] + p['b1'])
  return 0.5 * jnp.mean((hidden @ p['w2'] + p['b2'] - y) ** 2)


def _complex_point(params, scale=0.3, seed=5):
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
  return jax.tree.unflatten(tree, [x + 1j * scale * jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)])


@jax.jit
def _mlp_fields(p, x, y, h):
  """The fields of the MLP at p (at real p also the PF by Lanczos of moderate depth), and g and H of the flattened
  loss by jax.grad and jax.hessian for reference."""
  flat, unravel = ravel_pytree(p)
  holo = jnp.iscomplexobj(flat)
  f = lambda v: _mlp_loss(unravel(v), x, y)
  made = {'pf': fields.principal(_mlp_loss, h)}
  if holo:
    made |= {'ngf': fields.ngf(_mlp_loss, h), 'igr': fields.igr(_mlp_loss, h)}
  else:
    made['pf lanczos 12'] = fields.principal(_mlp_loss, h, method='lanczos', krylov_depth=12)
  out = {name: _flat(field(p, x, y)) for name, field in made.items()}
  if holo:
    out['spectrum'] = fields.dense_spectrum(_mlp_loss, p, x, y)
  out['g'] = jax.grad(f, holomorphic=holo)(flat)
  out['hessian'] = jax.hessian(f, holomorphic=holo)(flat)
  return out


@pytest.fixture(scope='module')
def mlp():
  """A tanh MLP 2 → 5 → 1 on 6 points (D = 21) with h such that hλ_0 = 1.5; its fields at real θ and at a complex
  θ nearby."""
  k = jax.random.split(jax.random.PRNGKey(0), 4)
  params = {
    'w1': jax.random.normal(k[0], (2, 5)),
    'b1': 0.1 * jax.random.normal(k[1], (5,)),
    'w2': jax.random.normal(k[2], (5,)),
    'b2': jnp.zeros(()),
  }
  x = jax.random.normal(k[3], (6, 2))
  y = jnp.sin(3 * x[:, 0])
  h = 1.5 / float(np.linalg.eigvalsh(_mlp_fields(params, x, y, 1.0)['hessian'])[-1])
  z = _complex_point(params)
  return params, x, y, h, _mlp_fields(params, x, y, h), _mlp_fields(z, x, y, h)


def test_lanczos_pf_matches_the_dense_pf_on_a_tanh_mlp_beyond_one_over_h(mlp):
  *_, real, _ = mlp
  dense = real['pf']
  assert float(jnp.max(jnp.abs(jnp.imag(dense)))) > 1e-3
  # Depth 12 of D = 21 (depth D is exact: the quadratics above).
  assert float(jnp.linalg.norm(real['pf lanczos 12'] - dense) / jnp.linalg.norm(dense)) < 1e-2


SMALL_H = 0.3


def _small_loss(p):
  return jnp.sum(jnp.exp(0.3 * p)) + p[0] * p[1] * p[2] + jnp.sin(p[3] * p[0]) + 0.5 * p @ p


@pytest.fixture(scope='module')
def small():
  """A non-quadratic 4-parameter loss: g, H and the third-derivative tensor by jax.grad, jax.hessian and
  jax.jacfwd(jax.hessian), its third-order fields and its dense spectrum (one compiled program)."""

  @jax.jit
  def evaluate(theta):
    loss, h = _small_loss, SMALL_H
    references = jax.grad(loss)(theta), jax.hessian(loss)(theta), jax.jacfwd(jax.hessian(loss))(theta)
    made = {'third': fields.third_order(loss, h), 'pf+third': fields.principal_third(loss, h)}
    return references, {name: field(theta) for name, field in made.items()}, fields.dense_spectrum(loss, theta)

  return evaluate(jnp.array([0.3, -0.7, 0.5, 1.1]))


def test_third_order_terms_against_the_dense_third_derivative_tensor(small):
  """Eq 3.4 and Eq 3.11 with T[g, g]_k = Σ_ij g_i T_ikj g_j."""
  (g, hess, t3), out, _ = small
  h = SMALL_H
  tgg = jnp.einsum('ikj,i,j->k', t3, g, g)
  expected = -g - (h / 2) * hess @ g - h**2 * (hess @ hess @ g / 3 + tgg / 12)
  np.testing.assert_allclose(out['third'], expected, rtol=1e-12)
  pf = _eigh_field(np.asarray(hess), np.asarray(g), ALPHAS['pf'], h)
  np.testing.assert_allclose(out['pf+third'], pf - (h**2) / 12 * tgg, rtol=1e-10, atol=1e-12)


def test_complex_symmetric_pf_at_complex_theta_is_phi_of_hh_times_g(mlp):
  """At complex θ, H is complex symmetric (Hᵀ = H ≠ Hᴴ); φ(hH)g = (hH)⁻¹ log(I − hH) g by scipy's logm."""
  *_, h, _, out = mlp
  hess, g = np.asarray(out['hessian']), np.asarray(out['g'])
  assert np.allclose(hess, hess.T) and not np.allclose(hess, hess.conj().T, atol=1e-3)
  expected = np.linalg.solve(h * hess, scipy.linalg.logm(np.eye(21) - h * hess) @ g)
  np.testing.assert_allclose(out['pf'], expected, rtol=1e-8, atol=1e-10)
  # A Hermitian eigensolver on the same matrix answers something else: the reason for the general one.
  values, vectors = np.linalg.eigh(hess)
  hermitian = vectors @ (ALPHAS['pf'](h * values + 0j) * (vectors.conj().T @ g))
  assert np.linalg.norm(hermitian - expected) > 0.1 * np.linalg.norm(expected)


def test_hvp_fields_at_complex_theta_use_holomorphic_derivatives(mlp):
  *_, h, _, out = mlp
  g, hess = out['g'], out['hessian']
  np.testing.assert_allclose(out['ngf'], -g, rtol=1e-12)
  np.testing.assert_allclose(out['igr'], -g - (h / 2) * hess @ g, rtol=1e-10)


def test_dense_spectrum_is_bilinear_orthonormal_at_complex_theta_and_signed_by_g(small, mlp):
  (g, hess, _), _, spectrum = small
  u, lam = np.asarray(spectrum.vectors), np.asarray(spectrum.values)
  np.testing.assert_allclose(u.T @ u, np.eye(4), atol=1e-12)
  np.testing.assert_allclose(u @ np.diag(lam) @ u.T, hess, atol=1e-12)
  np.testing.assert_allclose(spectrum.projections, g @ u, atol=1e-12)
  assert np.all(np.diff(lam) <= 0) and np.all(spectrum.projections >= 0)
  *_, out = mlp
  spectrum = out['spectrum']
  u, lam = np.asarray(spectrum.vectors), np.asarray(spectrum.values)
  np.testing.assert_allclose(u.T @ u, np.eye(21), atol=1e-8)
  np.testing.assert_allclose(u @ np.diag(lam) @ u.T, out['hessian'], atol=1e-8)
  np.testing.assert_allclose(spectrum.projections, out['g'] @ u, atol=1e-10)
  assert np.all(np.diff(lam.real) <= 0) and np.all(np.real(spectrum.projections) >= 0)


def test_bad_inputs_are_refused_with_the_input_named(quadratic):
  """Refused when the field is built, or when it is traced (jax.eval_shape: no computation)."""
  loss, params, _, _ = quadratic
  trace = lambda field, p=params: jax.eval_shape(field, p)
  with pytest.raises(ValueError, match='unknown flow'):
    fields.make('gd', loss, H)
  with pytest.raises(ValueError, match='h \\(the learning rate\\)'):
    fields.igr(loss, -0.1)
  with pytest.raises(ValueError, match='method must be one of'):
    fields.principal(loss, H, method='arnoldi')
  with pytest.raises(ValueError, match='krylov_depth must be at most D = 6'):
    trace(fields.principal(loss, H, method='lanczos', krylov_depth=7))
  with pytest.raises(ValueError, match='one coefficient per eigenvalue'):
    trace(fields.spectral(loss, H, lambda z: z[:1]))
  with pytest.raises(ValueError, match='mixes real and complex'):
    trace(fields.ngf(loss, H), {'u': params['u'], 'v': params['v'] + 0j})
  with pytest.raises(holomorphic.NotHolomorphicError, match='real value'):
    trace(fields.igr(lambda p: jnp.sum(jnp.abs(_flat(p)) ** 2), H), holomorphic.complexify(params))
  with pytest.raises(ValueError, match='real parameters'):
    trace(fields.spectral_topk(loss, H, jnp.ones_like), holomorphic.complexify(params))
  with pytest.raises(ValueError, match='base must be one of'):
    fields.spectral_topk(loss, H, jnp.ones_like, base='third')
