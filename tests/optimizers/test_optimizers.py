"""Tests of smoothrl.optimizers: Adam's ε placement, DIVGRAD and MULEPS."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from smoothrl import optimizers as opt


def _params(seed: int = 0) -> dict[str, Any]:
  rng = np.random.default_rng(seed)
  return {
    'dense': {
      'w': jnp.asarray(rng.normal(size=(4, 3)), jnp.float32),
      'b': jnp.asarray(rng.normal(size=(3,)), jnp.float32),
    },
    'out': {'w': jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)},
  }


def _grads(params: Any, num_steps: int, scale: float = 1.0, seed: int = 1) -> list[Any]:
  rng = np.random.default_rng(seed)
  return [
    jax.tree.map(lambda p: jnp.asarray(scale * rng.normal(size=p.shape), p.dtype), params) for _ in range(num_steps)
  ]


def _run(
  tx: optax.GradientTransformation, params: Any, grads: Sequence[Any], rhos: Sequence[float] | None = None
) -> list[Any]:
  """Applies `tx` to successive gradients; returns each step's updates."""
  state = tx.init(params)
  out = []
  for t, g in enumerate(grads):
    kwargs = {} if rhos is None else {'rho': jnp.float32(rhos[t])}
    updates, state = tx.update(g, state, params, **kwargs)
    out.append(updates)
    params = optax.apply_updates(params, updates)
  return out


def _assert_trees_close(a: Any, b: Any, rtol: float = 1e-6, atol: float = 0.0) -> None:
  leaves_a, tree_a = jax.tree.flatten(a)
  leaves_b, tree_b = jax.tree.flatten(b)
  assert tree_a == tree_b
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def _max_rel_diff(a: Any, b: Any) -> float:
  diffs = jax.tree.map(
    lambda x, y: float(np.max(np.abs(np.asarray(x) - np.asarray(y)) / np.maximum(np.abs(np.asarray(y)), 1e-12))), a, b
  )
  return max(jax.tree.leaves(diffs))


# ----------------------------------------------------------------------------
# Adam with explicit ε placement.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize('eps', [1e-8, 1e-3, 0.3])
def test_adam_outside_equals_optax_adam(eps):
  params = _params()
  grads = _grads(params, 8, scale=0.05)
  ours = _run(opt.adam(1e-2, b1=0.8, b2=0.95, eps=eps), params, grads)
  ref = _run(optax.adam(1e-2, b1=0.8, b2=0.95, eps=eps), params, grads)
  for u, r in zip(ours, ref):
    _assert_trees_close(u, r, rtol=1e-6)


@pytest.mark.parametrize('eps', [1e-8, 1e-4, 0.3])
def test_adam_inside_equals_optax_adam_with_eps_root(eps):
  params = _params()
  grads = _grads(params, 8, scale=0.05)
  ours = _run(opt.adam(1e-2, b1=0.8, b2=0.95, eps=eps, eps_placement='inside'), params, grads)
  ref = _run(optax.adam(1e-2, b1=0.8, b2=0.95, eps=0.0, eps_root=eps), params, grads)
  for u, r in zip(ours, ref):
    _assert_trees_close(u, r, rtol=1e-6)


def test_adam_accepts_schedule_and_ignores_rho():
  params = _params()
  grads = _grads(params, 6)
  schedule = optax.linear_schedule(1e-2, 1e-3, transition_steps=5)
  ours = _run(opt.adam(schedule, eps=1e-3), params, grads, rhos=[2.0, 5.0, 0.5, 3.0, 1.0, 7.0])
  ref = _run(optax.adam(schedule, eps=1e-3), params, grads)
  for u, r in zip(ours, ref):
    _assert_trees_close(u, r, rtol=1e-6)


def test_adam_placements_differ():
  params = _params()
  grads = _grads(params, 3, scale=0.01)
  outside = _run(opt.adam(1.0, eps=1e-3), params, grads)
  inside = _run(opt.adam(1.0, eps=1e-3, eps_placement='inside'), params, grads)
  assert _max_rel_diff(outside[-1], inside[-1]) > 0.5


def test_bad_eps_placement():
  with pytest.raises(ValueError, match='eps_placement'):
    opt.scale_by_adam(eps_placement='under')
  with pytest.raises(ValueError, match='eps_placement'):
    opt.muleps(1e-3, eps_placement='root')


def test_scale_by_adam_state():
  params = _params()
  tx = opt.scale_by_adam()
  state = tx.init(params)
  assert isinstance(state, opt.AdamState)
  assert int(state.count) == 0
  _, state = tx.update(_grads(params, 1)[0], state, params)
  assert int(state.count) == 1


# ----------------------------------------------------------------------------
# DIVGRAD (Eq 7.28).
# ----------------------------------------------------------------------------


@pytest.mark.parametrize('power', [1.0, 2.0])
def test_scale_by_inverse_rho_divides_by_rho(power):
  params = _params()
  g = _grads(params, 1)[0]
  tx = opt.scale_by_inverse_rho(power)
  state = tx.init(params)
  assert state == optax.EmptyState()
  out, new_state = tx.update(g, state, params, rho=jnp.float32(3.7))
  assert new_state == state
  expected = jax.tree.map(lambda x: np.asarray(x) / 3.7**power, g)
  _assert_trees_close(out, expected, rtol=1e-6)


def test_scale_by_inverse_rho_requires_rho():
  params = _params()
  tx = opt.scale_by_inverse_rho()
  with pytest.raises(ValueError, match='rho'):
    tx.update(params, tx.init(params), params)
  tx = opt.divgrad(1e-3)
  with pytest.raises(ValueError, match='rho'):
    tx.update(params, tx.init(params), params)


@pytest.mark.parametrize('eps_placement', ['outside', 'inside'])
def test_divgrad_is_adam_on_gradient_over_rho(eps_placement):
  params = _params()
  grads = _grads(params, 6, scale=0.1)
  rhos = [1.5, 4.0, 0.7, 2.2, 9.0, 3.0]
  ours = _run(opt.divgrad(1e-2, eps=1e-3, eps_placement=eps_placement), params, grads, rhos)
  scaled = [jax.tree.map(lambda g, r=r: g / jnp.float32(r), g) for g, r in zip(grads, rhos)]
  ref = _run(opt.adam(1e-2, eps=1e-3, eps_placement=eps_placement), params, scaled)
  for u, r in zip(ours, ref):
    _assert_trees_close(u, r, rtol=1e-5)


# ----------------------------------------------------------------------------
# MULEPS (Eqs 7.29-7.31).
# ----------------------------------------------------------------------------


def _numpy_adam(
  grads: Sequence[Any], epsilons: Sequence[float], lr: float, b1: float, b2: float, inside: bool
) -> list[Any]:
  """Adam's updates in float64 with a per-step ε_t (Kingma & Ba, Eq 2.22)."""
  flat = [[np.asarray(x, np.float64) for x in jax.tree.leaves(g)] for g in grads]
  treedef = jax.tree.structure(grads[0])
  m = [np.zeros_like(x) for x in flat[0]]
  v = [np.zeros_like(x) for x in flat[0]]
  out = []
  for t, (g, eps_t) in enumerate(zip(flat, epsilons), start=1):
    step = []
    for i, gi in enumerate(g):
      m[i] = b1 * m[i] + (1 - b1) * gi
      v[i] = b2 * v[i] + (1 - b2) * gi**2
      m_hat = m[i] / (1 - b1**t)
      v_hat = v[i] / (1 - b2**t)
      denom = np.sqrt(v_hat + eps_t) if inside else np.sqrt(v_hat) + eps_t
      step.append(-lr * m_hat / denom)
    out.append(jax.tree.unflatten(treedef, step))
  return out


@pytest.mark.parametrize(
  'eps_placement, rho_power, expected_power, eps0',
  [
    ('outside', None, 1, 1e-3),
    ('inside', None, 2, 1e-5),
    ('inside', 1, 1, 1e-5),  # Eq 7.31 as printed.
    ('outside', 2, 2, 1e-3),
  ],
)
def test_muleps_eps_is_eps0_times_rho_each_step(eps_placement, rho_power, expected_power, eps0):
  params = _params()
  grads = _grads(params, 7, scale=0.01)
  rhos = [1.0, 3.0, 0.5, 6.0, 2.0, 2.5, 10.0]
  lr = 1e-2
  tx = opt.muleps(lr, b1=0.9, b2=0.99, eps=eps0, eps_placement=eps_placement, rho_power=rho_power)
  ours = _run(tx, params, grads, rhos)
  ref = _numpy_adam(
    grads, [eps0 * r**expected_power for r in rhos], lr, b1=0.9, b2=0.99, inside=eps_placement == 'inside'
  )
  for u, r in zip(ours, ref):
    _assert_trees_close(u, r, rtol=1e-5, atol=1e-9)
  # The ρ-scaling is visible: a plain-Adam reference with ε₀ differs.
  plain = _numpy_adam(grads, [eps0] * len(rhos), lr, b1=0.9, b2=0.99, inside=eps_placement == 'inside')
  assert _max_rel_diff(ours[-1], plain[-1]) > 0.1


def test_muleps_requires_rho():
  params = _params()
  tx = opt.muleps(1e-3)
  with pytest.raises(ValueError, match='rho'):
    tx.update(params, tx.init(params), params)


def test_default_rho_power():
  assert opt.default_rho_power('outside') == 1.0
  assert opt.default_rho_power('inside') == 2.0


@pytest.mark.parametrize('make', [opt.muleps, opt.rho_scaled_adam])
def test_a_zero_rho_power_is_refused(make):
  with pytest.raises(ValueError, match=f'{make.__name__} needs rho_power != 0'):
    make(1e-3, rho_power=0)


@pytest.mark.parametrize(
  'eps_placement, eps, right_power, wrong_power',
  [
    ('outside', 1e-3, 1, 2),
    ('inside', 1e-5, 2, 1),
  ],
)
def test_divgrad_equals_muleps_at_constant_rho(eps_placement, eps, right_power, wrong_power):
  params = _params()
  grads = _grads(params, 10, scale=0.01)
  rhos = [3.0] * len(grads)
  div = _run(opt.divgrad(1e-2, eps=eps, eps_placement=eps_placement), params, grads, rhos)
  mul_default = _run(opt.muleps(1e-2, eps=eps, eps_placement=eps_placement), params, grads, rhos)
  mul_right = _run(opt.muleps(1e-2, eps=eps, eps_placement=eps_placement, rho_power=right_power), params, grads, rhos)
  mul_wrong = _run(opt.muleps(1e-2, eps=eps, eps_placement=eps_placement, rho_power=wrong_power), params, grads, rhos)
  for d, m_default, m_right in zip(div, mul_default, mul_right):
    # Updates are ~1e-2 (lr times a unit direction); atol covers float32
    # cancellation in near-zero first moments.
    _assert_trees_close(m_default, d, rtol=1e-5, atol=1e-8)
    _assert_trees_close(m_right, d, rtol=1e-5, atol=1e-8)
  # With the other power, the placements are not interchangeable.
  assert _max_rel_diff(mul_wrong[-1], div[-1]) > 0.1


def test_divgrad_and_muleps_differ_when_rho_changes():
  params = _params()
  grads = _grads(params, 6, scale=0.01)
  rhos = [1.0, 10.0, 1.0, 10.0, 1.0, 10.0]
  div = _run(opt.divgrad(1e-2, eps=1e-3), params, grads, rhos)
  mul = _run(opt.muleps(1e-2, eps=1e-3), params, grads, rhos)
  assert _max_rel_diff(mul[-1], div[-1]) > 1e-2


# ----------------------------------------------------------------------------
# Composition with optax, jit.
# ----------------------------------------------------------------------------


def test_composes_in_chain_under_jit():
  params = _params()
  grads = _grads(params, 5, scale=3.0)
  rhos = [2.0, 3.0, 4.0, 5.0, 6.0]
  tx = optax.chain(optax.clip_by_global_norm(1.0), opt.divgrad(1e-2, eps=1e-3))
  update = jax.jit(tx.update)
  state = tx.init(params)
  ours = []
  for g, r in zip(grads, rhos):
    u, state = update(g, state, params, rho=jnp.float32(r))
    ours.append(u)
  clipped = [optax.clip_by_global_norm(1.0).update(g, optax.EmptyState())[0] for g in grads]
  scaled = [jax.tree.map(lambda x, r=r: x / jnp.float32(r), c) for c, r in zip(clipped, rhos)]
  ref = _run(optax.adam(1e-2, eps=1e-3), params, scaled)
  for u, r in zip(ours, ref):
    _assert_trees_close(u, r, rtol=1e-5)


def test_scale_by_inverse_rho_with_optax_adam_is_divgrad():
  params = _params()
  grads = _grads(params, 4, scale=0.1)
  rhos = [2.0, 0.5, 8.0, 1.0]
  chained = optax.chain(opt.scale_by_inverse_rho(), optax.adam(1e-2, eps=1e-3))
  ours = _run(chained, params, grads, rhos)
  ref = _run(opt.divgrad(1e-2, eps=1e-3), params, grads, rhos)
  for u, r in zip(ours, ref):
    _assert_trees_close(u, r, rtol=1e-6)


def test_with_extra_args_support_keeps_transforms():
  for tx in (opt.scale_by_adam(), opt.scale_by_inverse_rho(), opt.divgrad(1e-3), opt.muleps(1e-3)):
    assert isinstance(tx, optax.GradientTransformationExtraArgs)
    assert optax.with_extra_args_support(tx) is tx


def test_extra_args_other_than_rho_are_ignored():
  params = _params()
  g = _grads(params, 1)[0]
  tx = opt.muleps(1e-2, eps=1e-3)
  u1, _ = tx.update(g, tx.init(params), params, rho=2.0)
  u2, _ = tx.update(g, tx.init(params), params, rho=2.0, value=1.0)
  _assert_trees_close(u1, u2, rtol=0.0)


# ----------------------------------------------------------------------------
# Named ρ arguments and rho_scaled_adam: the method as data.
# ----------------------------------------------------------------------------


def test_rho_name_picks_the_extra_argument():
  params = _params()
  g = _grads(params, 1)[0]
  tx = opt.scale_by_inverse_rho(rho_name='grad_rho')
  out, _ = tx.update(g, tx.init(params), params, grad_rho=2.0, rho=5.0)
  _assert_trees_close(out, jax.tree.map(lambda x: np.asarray(x) / 2.0, g))
  with pytest.raises(ValueError, match='grad_rho'):
    tx.update(g, tx.init(params), params, rho=5.0)
  adam = opt.scale_by_adam(eps=1e-1, eps_scale_power=1.0, rho_name='eps_rho')
  named, _ = adam.update(g, adam.init(params), params, eps_rho=3.0, rho=7.0)
  plain = opt.scale_by_adam(eps=3e-1)
  ref, _ = plain.update(g, plain.init(params), params)
  _assert_trees_close(named, ref, rtol=1e-6)
  with pytest.raises(ValueError, match='eps_rho'):
    adam.update(g, adam.init(params), params, rho=7.0)


def _run_named(tx, params, grads, grad_rhos, eps_rhos):
  state = tx.init(params)
  out = []
  for g, gr, er in zip(grads, grad_rhos, eps_rhos):
    updates, state = tx.update(g, state, params, grad_rho=jnp.float32(gr), eps_rho=jnp.float32(er))
    out.append(updates)
    params = optax.apply_updates(params, updates)
  return out


@pytest.mark.parametrize('eps_placement', ['outside', 'inside'])
def test_rho_scaled_adam_is_divgrad_muleps_or_adam_exactly(eps_placement):
  params = _params()
  grads = _grads(params, 5, scale=0.01)
  rhos = [1.5, 4.0, 0.7, 2.2, 9.0]
  ones = [1.0] * len(rhos)
  kwargs = dict(b1=0.8, b2=0.99, eps=1e-3, eps_placement=eps_placement)
  tx = opt.rho_scaled_adam(1e-2, **kwargs)
  cases = [
    (rhos, ones, opt.divgrad(1e-2, **kwargs)),
    (ones, rhos, opt.muleps(1e-2, **kwargs)),
    (ones, ones, opt.adam(1e-2, **kwargs)),
  ]
  for grad_rhos, eps_rhos, reference in cases:
    ours = _run_named(tx, params, grads, grad_rhos, eps_rhos)
    ref = _run(reference, params, grads, rhos)
    for u, r in zip(ours, ref):
      _assert_trees_close(u, r, rtol=0.0)
  # The state is divgrad's, whichever method the arguments pick.
  assert jax.tree.structure(tx.init(params)) == jax.tree.structure(opt.divgrad(1e-2).init(params))
  with pytest.raises(ValueError, match='different'):
    opt.rho_scaled_adam(1e-2, grad_rho_name='rho', eps_rho_name='rho')


# ----------------------------------------------------------------------------
# make_optimizer.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize('method', ['none', 'sn', 'divout'])
def test_make_optimizer_plain_adam_ignores_rho(method):
  params = _params()
  grads = _grads(params, 4)
  tx = opt.make_optimizer(method, 1e-2, 0.9, 0.999, 1e-3)
  ours = _run(tx, params, grads, rhos=[5.0, 0.1, 2.0, 9.0])
  ref = _run(optax.adam(1e-2, 0.9, 0.999, 1e-3), params, grads)
  for u, r in zip(ours, ref):
    _assert_trees_close(u, r, rtol=1e-6)


@pytest.mark.parametrize('eps_placement', ['outside', 'inside'])
@pytest.mark.parametrize('method, factory', [('divgrad', opt.divgrad), ('muleps', opt.muleps)])
def test_make_optimizer_spectral_methods(method, factory, eps_placement):
  params = _params()
  grads = _grads(params, 4, scale=0.01)
  rhos = [5.0, 0.1, 2.0, 9.0]
  tx = opt.make_optimizer(method, 1e-2, 0.8, 0.99, 1e-4, eps_placement=eps_placement)
  ours = _run(tx, params, grads, rhos)
  ref = _run(factory(1e-2, 0.8, 0.99, 1e-4, eps_placement=eps_placement), params, grads, rhos)
  for u, r in zip(ours, ref):
    _assert_trees_close(u, r, rtol=0.0)
  with pytest.raises(ValueError, match='rho'):
    tx.update(grads[0], tx.init(params), params)


def test_make_optimizer_bad_method():
  with pytest.raises(ValueError) as info:
    opt.make_optimizer('spectral', 1e-3)
  message = str(info.value)
  for method in opt.METHODS:
    assert method in message
  assert set(opt.METHODS) == {'none', 'sn', 'divout', 'divgrad', 'muleps'}


# ----------------------------------------------------------------------------
# inject_rho.
# ----------------------------------------------------------------------------


class _CountingExactRho:
  """ρ = ∏ ‖w‖₂ over named dense layers; the state counts the calls."""

  def __init__(self, names: Sequence[str]):
    self.names = tuple(names)

  def init(self, params: Any) -> jax.Array:
    del params
    return jnp.zeros([], jnp.int32)

  def update(self, params: Any, state: jax.Array) -> tuple[jax.Array, Any]:
    rho = jnp.float32(1.0)
    for name in self.names:
      rho = rho * jnp.linalg.norm(params[name]['w'], 2)
    return jax.lax.stop_gradient(rho), state + 1


def _exact_rho(params: Any, names: Sequence[str]) -> float:
  return float(np.prod([np.linalg.norm(np.asarray(params[n]['w'], np.float64), 2) for n in names]))


@pytest.mark.parametrize('factory', [opt.divgrad, opt.muleps])
def test_inject_rho_feeds_estimated_rho(factory):
  params = _params()
  grads = _grads(params, 5, scale=0.1)
  names = ('dense', 'out')
  tx = opt.inject_rho(factory(1e-1, eps=1e-2), _CountingExactRho(names))
  inner = factory(1e-1, eps=1e-2)
  state = tx.init(params)
  assert isinstance(state, opt.InjectRhoState)
  inner_state = inner.init(params)
  update = jax.jit(tx.update)
  p = params
  for t, g in enumerate(grads, start=1):
    u, state = update(g, state, p)
    u_ref, inner_state = inner.update(g, inner_state, p, rho=jnp.float32(_exact_rho(p, names)))
    _assert_trees_close(u, u_ref, rtol=1e-5)
    assert int(state.estimator_state) == t
    p = optax.apply_updates(p, u)


def test_inject_rho_errors():
  params = _params()
  tx = opt.inject_rho(opt.divgrad(1e-3), _CountingExactRho(['dense']))
  state = tx.init(params)
  with pytest.raises(ValueError, match='params'):
    tx.update(params, state)
  with pytest.raises(ValueError, match='rho'):
    tx.update(params, state, params, rho=2.0)


def _regression_data(seed: int = 0) -> tuple[jax.Array, jax.Array]:
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(128, 5)).astype(np.float32)
  w_star = rng.normal(size=(5, 1)).astype(np.float32)
  y = x @ w_star + 0.01 * rng.normal(size=(128, 1)).astype(np.float32)
  return jnp.asarray(x), jnp.asarray(y)


def _mlp(x: jax.Array) -> jax.Array:
  return hk.nets.MLP([32, 1], name='mlp')(x)


def _fit(
  tx: optax.GradientTransformation,
  num_steps: int = 200,
) -> tuple[float, float, Any]:
  x, y = _regression_data()
  net = hk.without_apply_rng(hk.transform(_mlp))
  params = net.init(jax.random.PRNGKey(0), x)

  def loss_fn(p):
    return jnp.mean((net.apply(p, x) - y) ** 2)

  def step(carry, _):
    p, s = carry
    loss, g = jax.value_and_grad(loss_fn)(p)
    u, s = tx.update(g, s, p)
    return (optax.apply_updates(p, u), s), loss

  (params, state), _ = jax.jit(lambda c: jax.lax.scan(step, c, None, length=num_steps))((params, tx.init(params)))
  return float(loss_fn(net.init(jax.random.PRNGKey(0), x))), float(loss_fn(params)), state


def test_supervised_regression_with_divgrad_and_exact_rho():
  estimator = _CountingExactRho(['mlp/~/linear_0', 'mlp/~/linear_1'])
  tx = opt.inject_rho(opt.divgrad(1e-2, eps=1e-8), estimator)
  initial, final, state = _fit(tx)
  assert final < 0.05 * initial, (initial, final)
  assert int(state.estimator_state) == 200


def test_supervised_regression_with_rho_estimator():
  from smoothrl.networks.layers import LayerSpec
  from smoothrl.networks.spectral import rho_estimator

  specs = [LayerSpec('mlp/~/linear_0', 'dense', (5,)), LayerSpec('mlp/~/linear_1', 'dense', (32,))]
  estimator = rho_estimator(specs, [s.name for s in specs], jax.random.PRNGKey(1), num_iterations=2)
  tx = opt.inject_rho(opt.muleps(1e-2, eps=1e-3), estimator)
  initial, final, _ = _fit(tx)
  assert final < 0.05 * initial, (initial, final)

  # The power-iteration ρ converges to the exact product of spectral norms.
  x, _ = _regression_data()
  params = hk.without_apply_rng(hk.transform(_mlp)).init(jax.random.PRNGKey(0), x)
  update = jax.jit(estimator.update)
  state = estimator.init(params)
  for _ in range(100):
    rho, state = update(params, state)
  np.testing.assert_allclose(float(rho), _exact_rho(params, [s.name for s in specs]), rtol=1e-4)
