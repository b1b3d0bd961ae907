"""Local error orders of the flows against one GD step on a non-quadratic loss: ‖θ_flow(h; θ_0) − (θ_0 − hg)‖ =
O(h^p) with p = 2 (NGF), 3 (IGR flow), 3 (PF alone, erratum 7), 4 (third-order flow), 4 (PF + third-order term)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from smoothrl.flows import fields
from smoothrl.flows import integrate as it

ORDERS = {'ngf': 2, 'igr': 3, 'pf': 3, 'third': 4, 'pf+third': 4}
HS = np.geomspace(0.01, 0.08, 6)
THETA_0 = np.array([0.6, -0.4])


def _loss(p):
  """Smooth, holomorphic and not quadratic: a nonzero third derivative along g (T[g, g] ≠ 0)."""
  x, y = p[0], p[1]
  return jnp.cos(x) + 0.5 * y**2 + 0.3 * x**2 * y + 0.2 * x * y**2


def _all_flows(state, h):
  """The five fields at once on a dict of five copies of θ: one diffrax solve (and one compilation) for all."""
  return {name: fields.make(name, _loss, h)(state[name]) for name in ORDERS}


@pytest.fixture(scope='module')
def local_errors():
  with jax.enable_x64(True):
    theta = jnp.asarray(THETA_0)

    def errors(h):
      start = {name: theta for name in ORDERS}
      # The PF's state is complex; _loss is entire (cos and polynomials), so the holomorphy check is skipped.
      end = it.integrate(_all_flows, start, h, h, rtol=1e-13, atol=1e-15, holomorphic=True).ys
      step = theta - h * jax.grad(_loss)(theta)
      return {name: jnp.linalg.norm(end[name][0] - step) for name in ORDERS}

    # lax.map, not vmap: one h after another compiles faster, and the adaptive steps differ per h.
    return jax.tree.map(np.asarray, jax.jit(lambda hs: jax.lax.map(errors, hs))(jnp.asarray(HS)))


@pytest.mark.parametrize('name', list(ORDERS))
def test_local_error_order(local_errors, name):
  slope = np.polyfit(np.log(HS), np.log(local_errors[name]), 1)[0]
  assert abs(slope - ORDERS[name]) < 0.15, (name, slope, local_errors[name])


def test_higher_order_flows_are_closer_at_every_h(local_errors):
  e = local_errors
  assert np.all(e['igr'] < e['ngf']) and np.all(e['third'] < e['igr']) and np.all(e['pf+third'] < e['pf'])
  # The PF's missing (h²/12)T[g, g] term is what separates it from the third-order flow (erratum 7).
  assert np.all(e['pf'] > 10 * e['pf+third'][None])
