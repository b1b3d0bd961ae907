"""The flow reproductions at full size, each asserting the thesis' claims on the numbers its runs wrote; where the
proxy does not show the thesis' effect the check is a strict xfail that says why."""

from __future__ import annotations

import json

import pytest

from smoothrl.launch.reproductions import REPRODUCTIONS, common
from smoothrl.launch.reproductions import flows as repro

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def results(tmp_path_factory):
  """Each reproduction run once, its `result.json` read back from disk."""
  cache: dict[str, dict] = {}

  def get(name: str) -> dict:
    if name not in cache:
      out = tmp_path_factory.mktemp(name)
      REPRODUCTIONS[name].run(out, False)
      assert (out / common.FIGURE_FILE).stat().st_size > 0
      cache[name] = json.loads((out / common.RESULT_FILE).read_text())
    return cache[name]

  return get


def test_pf_quadratic_passes_through_every_gd_iterate_and_ngf_igr_do_not(results):
  r = results('pf-quadratic')
  assert r['direction'] == {'pf_passes_through_gd_iterates': True, 'ngf_and_igr_miss_them': True}
  for rate in ('0.9', '1.05'):  # integrated by diffrax, complex
    assert r['per_rate'][rate]['method'] == 'diffrax'
    assert r['per_rate'][rate]['max_global_error']['pf'] < repro.EXACT
    assert min(r['per_rate'][rate]['max_global_error'][f] for f in ('ngf', 'igr')) > 0.1


def test_pf_1d_oscillates_and_diverges_with_gd(results):
  r = results('pf-1d')
  assert all(r['direction'].values()), r['direction']
  assert r['fig3.6']['2.1']['pf_final_abs'] > 1 > r['fig3.6']['1.5']['pf_final_abs']


def test_pf_banana_tracks_gd_below_1_over_h_and_the_third_order_term_restabilises_it(results):
  d = results('pf-banana')['direction']
  assert d['pf_closer_than_ngf_igr_at_smallest_h']
  assert d['pf_third_closer_than_pf_at_largest_h']


@pytest.mark.xfail(
  strict=True,
  reason='from (−1.2, 1) at h = 0.0017 (hλ₀ = 2.56) the proxy PF stays bounded but further from GD than the NGF and '
  'the IGR flow: it does not track GD over many iterations as Figure 3.8b shows',
)
def test_pf_banana_tracks_gd_near_2_over_h(results):
  assert results('pf-banana')['direction']['pf_closer_than_ngf_igr_near_2_over_h']


@pytest.mark.xfail(
  strict=True,
  reason='at h = 0.005 the PF + third-order flow stays bounded where the PF diverges, but the NGF and the IGR flow '
  'end closer to GD: it captures the instability, not the trajectory',
)
def test_pf_banana_third_order_flow_is_the_closest_at_the_largest_h(results):
  assert results('pf-banana')['direction']['pf_third_closest_at_largest_h']


def test_pf_cos_is_closest_to_gd(results):
  d = results('pf-cos')['direction']
  assert d['pf_closest_to_gd'] and d['pf_real_on_the_path']


@pytest.mark.xfail(
  strict=True,
  reason="the printed function never increases (E' ≥ 0) and its stationary points are inflection points: at "
  "h = 0.5 and 0.85 GD itself stops at −3π/2 with the flows, and the PF is real there (h|E''| < 1), so nothing exits",
)
def test_pf_cos_escapes_where_ngf_and_igr_stop(results):
  assert results('pf-cos')['direction']['pf_escapes_where_ngf_igr_stop']


def test_pf_mlp_has_the_smallest_global_error_over_the_first_iterations(results):
  r = results('pf-mlp')
  assert r['direction']['pf_smallest_global_error_first_n']
  assert [round(v['h_lambda_0'], 2) for v in r['per_rate'].values()] == [0.92, 1.84, 2.3]


def test_pf_breast_cancer_runs_at_the_figures_rates(results):
  r = results('pf-breast-cancer')
  assert [round(v['h_lambda_0'], 1) for v in r['per_rate'].values()] == [1.7, 5.7]
  for v in r['per_rate'].values():
    assert all(0 < e < 10 for f in ('igr', 'pf') for e in v['global_errors'][f])


@pytest.mark.xfail(
  strict=True,
  reason='measured 2026-12-04: the PF misses GD by more than the IGR flow at both rates (global errors after 1 and 2 '
  'steps: PF 0.45, 0.57 against IGR 0.20, 0.13 at h = 1.5, hλ₀ = 1.70; PF 3.24, 3.47 against IGR 1.62, 1.57 at h = 5, '
  'hλ₀ = 5.65): the proxy does not show Figure A.7',
)
def test_pf_breast_cancer_tracks_gd_better_than_igr(results):
  assert results('pf-breast-cancer')['direction']['pf_smaller_than_igr']
