"""The GAN reproductions at their CPU scale (each ≤ 20 minutes on 2 cores): the directions thesis Sections 4.6 and
7.4 report, checked on the numbers each wrote to `result.json`, which are checked against its runs' metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest

from smoothrl.launch.reproductions import common, gans


def _reproduce(tmp_path_factory, name: str) -> tuple[object, dict]:
  out = tmp_path_factory.mktemp(name)
  gans.REPRODUCTIONS_BY_NAME[name].run(out, False)
  return out, json.loads((out / common.RESULT_FILE).read_text())


def _check_read_back(out, name: str, result: dict) -> None:
  """Every arm's mean best FID proxy is the mean over seeds of the minimum its runs' eval records hold."""
  assert result['quick'] is False and (out / common.FIGURE_FILE).stat().st_size > 0
  for experiment in gans.SPECS[name].experiments:
    arms = result['experiments'][experiment.name]['arms']
    for arm in experiment.arms:
      best = [min(r['fid_proxy'] for r in gans.evals(gans.run_dir(out, experiment, arm, s))) for s in experiment.seeds]
      assert arms[arm.name]['best_fid'] == pytest.approx(float(np.mean(best)), rel=1e-9)
      assert arms[arm.name]['stopped_runs'] == sum(
        gans.failed(gans.run_dir(out, experiment, arm, s)) for s in experiment.seeds
      )


@pytest.fixture(scope='module')
def sim_alt(tmp_path_factory):
  return _reproduce(tmp_path_factory, 'gan-sim-alt')


@pytest.mark.slow
def test_on_the_ring_alternating_beats_simultaneous_and_cancelling_helps(sim_alt):
  out, result = sim_alt
  _check_read_back(out, 'gan-sim-alt', result)
  direction = result['experiments']['ring']['direction']
  arms = {k: v['best_fid'] for k, v in result['experiments']['ring']['arms'].items()}
  # Figure 4.6a: alternating SGD beats simultaneous SGD in the zero-sum GAN.
  assert direction['alternating_beats_simultaneous'], arms
  # Figure 4.8: cancelling the interaction terms (c_φ = v_φh/4, c_θ = v_θh/4) improves simultaneous SGD.
  assert direction['cancel_improves_simultaneous'], arms
  # Figure 4.10: cancelling only the discriminator's interaction term does not hurt alternating SGD.
  assert direction['cancel_discriminator_term_does_not_hurt_alternating'], arms


@pytest.mark.slow
@pytest.mark.xfail(
  strict=True,
  reason='measured 2026-12-04: no arm covers a mode of the ring (best modes covered 0 in every run): its σ = 0.02 '
  'is narrower than the SGD generators get in 2000 steps (best FID proxies 0.025-0.044), so modes cannot rank them',
)
def test_on_the_ring_alternating_and_cancelling_cover_more_modes(sim_alt):
  direction = sim_alt[1]['experiments']['ring']['direction']
  assert direction['alternating_covers_more_modes'] and direction['cancel_covers_more_modes_simultaneous']


@pytest.mark.slow
@pytest.mark.xfail(
  strict=True,
  reason='measured 2026-12-04: on the digits after 1000 SGD steps every arm is still improving (best = final FID '
  'proxy) and simultaneous updates lead: mean best FID proxy simultaneous 301, with cancelled interaction terms '
  '331, alternating 366, alternating with the discriminator term cancelled 367',
)
def test_on_the_digits_alternating_beats_simultaneous_and_cancelling_helps(sim_alt):
  direction = sim_alt[1]['experiments']['digits']['direction']
  assert direction['alternating_beats_simultaneous'] and direction['cancel_improves_simultaneous']


@pytest.fixture(scope='module')
def saturating(tmp_path_factory):
  return _reproduce(tmp_path_factory, 'gan-saturating')


@pytest.mark.slow
def test_sn_and_divout_on_both_players_recover_the_saturating_loss(saturating):
  out, result = saturating
  _check_read_back(out, 'gan-saturating', result)
  direction = result['direction']
  arms = {k: v['best_fid'] for k, v in result['experiments']['digits']['arms'].items()}
  # Figure 7.12: SN and DIVOUT on both players improve on no normalisation; DIVOUT on the discriminator alone does
  # not reach the generator's update and stays poor.
  assert direction['sn_recovers'], arms
  assert direction['divout_both_recovers'], arms
  assert direction['divout_discriminator_alone_fails'], arms


@pytest.fixture(scope='module')
def muleps(tmp_path_factory):
  return _reproduce(tmp_path_factory, 'gan-muleps')


@pytest.mark.slow
def test_muleps_numbers_are_read_back_from_the_runs(muleps):
  out, result = muleps
  _check_read_back(out, 'gan-muleps', result)
  assert all(a['stopped_runs'] == 0 for a in result['experiments']['digits']['arms'].values())


@pytest.mark.slow
@pytest.mark.xfail(
  strict=True,
  reason='measured 2026-12-04: with the non-saturating loss at this scale SN is the worst arm and MULEPS the best '
  '(mean best FID proxy: MULEPS 11.7, none 15.2, DIVGRAD 83.7, SN 109.1): the proxy does not show Figure 7.6',
)
def test_optimisation_only_methods_do_not_recover_sn(muleps):
  direction = muleps[1]['direction']
  # Figure 7.6: SN improves on no normalisation; DIVGRAD and MULEPS, which change only the optimisation, do not
  # reach SN's FID proxy.
  assert direction['sn_beats_none']
  assert direction['divgrad_does_not_recover_sn'] and direction['muleps_does_not_recover_sn']


@pytest.fixture(scope='module')
def eps(tmp_path_factory):
  return _reproduce(tmp_path_factory, 'gan-eps')


@pytest.mark.slow
def test_at_eps_1e_8_the_sn_gan_leaves_its_best(eps):
  out, result = eps
  _check_read_back(out, 'gan-eps', result)
  # Figure 7.15: at ε = 1e-8 the SN-GAN's FID proxy rises again after its best.
  assert result['direction']['fixed_eps_exits_best'], result['experiments']['digits']['arms']['eps_fixed']


@pytest.mark.slow
@pytest.mark.xfail(
  strict=True,
  reason='measured 2026-12-04: annealing ε to 1e-2 made the late decline worse, not smaller (mean best / late FID '
  'proxy: fixed ε 44.1 / 73.6, annealed 79.5 / 156.7): the proxy does not show Figure 7.15',
)
def test_annealing_adam_eps_keeps_the_gan_near_its_best(eps):
  direction = eps[1]['direction']
  assert direction['annealed_degrades_less'] and direction['annealed_ends_better']
