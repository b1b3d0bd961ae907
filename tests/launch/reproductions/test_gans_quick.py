"""The GAN reproductions' numbers and directions on hand-written run directories, their configs, and one quick
end-to-end run (the ring experiment of `gan-sim-alt` at its smoke-test size)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from smoothrl.launch.reproductions import REPRODUCTIONS, common, gans
from smoothrl.launch.run import gan
from smoothrl.launch.run.files import METRICS_FILE
from smoothrl.launch.run.recorder import write_status


def _write_run(directory: Path, fids, modes=None, stopped: bool = False) -> None:
  directory.mkdir(parents=True, exist_ok=True)
  lines = []
  for i, fid in enumerate(fids):
    record = {'step': 10 * i, 'kind': 'eval', 'fid_proxy': fid, 'kid_proxy': 0.0}
    if modes is not None:
      record['modes_covered'] = modes[i]
    lines.append(json.dumps({'step': 10 * i, 'kind': 'train', 'd_loss': 1.0, 'g_loss': 1.0}))
    lines.append(json.dumps(record))
  (directory / METRICS_FILE).write_text('\n'.join(lines) + '\n')
  last = 10 * (len(fids) - 1)
  if stopped:
    write_status(directory, 'failed', last, f'non-finite loss nan at step {last}; stopping this run')
  else:
    write_status(directory, 'done', last)


def _experiment(arms, preset='digits', seeds=(0, 1)) -> gans.Experiment:
  return gans.Experiment(
    name='toy', preset=preset, arms=tuple(gans.Arm(a, a) for a in arms), steps=30, log_period=10, eval_period=10,
    eval_samples=100, seeds=seeds,
  )  # fmt: skip


def test_run_numbers_best_final_late_and_modes():
  records = [{'fid_proxy': f, 'modes_covered': m} for f, m in zip([9.0, 3.0, 5.0, 4.0], [1, 6, 8, 7])]
  numbers = gans.run_numbers(records, stopped=False, late_fraction=0.5)
  assert numbers == {'best_fid': 3.0, 'final_fid': 4.0, 'late_fid': 4.5, 'best_modes': 8.0, 'final_modes': 7.0}
  # At least one record is 'late'; a stopped run ends at +inf FID and 0 modes, its best is what it reached.
  numbers = gans.run_numbers(records, stopped=True, late_fraction=0.01)
  assert numbers['best_fid'] == 3.0 and math.isinf(numbers['final_fid']) and math.isinf(numbers['late_fid'])
  assert numbers['final_modes'] == 0.0 and numbers['best_modes'] == 8.0
  assert gans.run_numbers([{'fid_proxy': 2.0}], False, 0.25) == {'best_fid': 2.0, 'final_fid': 2.0, 'late_fid': 2.0}
  assert gans.run_numbers([{'fid_proxy': float('nan')}, {'fid_proxy': 1.5}], False, 0.5)['best_fid'] == 1.5
  with pytest.raises(ValueError, match='at least one eval record'):
    gans.run_numbers([], False, 0.25)


def test_arm_numbers_are_means_over_seeds_read_from_disk(tmp_path):
  experiment = _experiment(['a'], seeds=(0, 1))
  arm = experiment.arms[0]
  _write_run(gans.run_dir(tmp_path, experiment, arm, 0), [10.0, 2.0, 4.0, 6.0])
  _write_run(gans.run_dir(tmp_path, experiment, arm, 1), [10.0, 4.0, 8.0], stopped=True)
  numbers = gans.experiment_numbers(tmp_path, experiment)['a']
  assert numbers['best_fid'] == pytest.approx(3.0) and numbers['best_fid_seeds'] == [2.0, 4.0]
  assert numbers['final_fid_seeds'][0] == 6.0 and math.isinf(numbers['final_fid'])
  assert numbers['stopped_runs'] == 1
  # The last quarter of 4 records is 1 record (6.0); of 3 records, 1 too.
  assert numbers['late_fid_seeds'][0] == 6.0
  assert gans.run_dir(tmp_path, experiment, arm, 1) == tmp_path / 'runs' / 'toy' / 'a' / 'seed1'
  assert gans.failed(gans.run_dir(tmp_path, experiment, arm, 1)) and not gans.failed(
    gans.run_dir(tmp_path, experiment, arm, 0)
  )


SIM_ALT = ('simultaneous', 'alternating', 'simultaneous_cancel', 'alternating_cancel')


def test_sim_alt_direction_on_a_ring_written_by_hand(tmp_path):
  experiment = _experiment(SIM_ALT, preset='ring')
  curves = {  # (fids, modes) per arm, both seeds alike
    'simultaneous': ([50.0, 20.0, 30.0], [1, 3, 2]),
    'alternating': ([50.0, 5.0, 6.0], [1, 6, 5]),
    'simultaneous_cancel': ([50.0, 8.0, 9.0], [1, 7, 7]),
    'alternating_cancel': ([50.0, 4.0, 5.0], [1, 8, 8]),
  }
  for arm in experiment.arms:
    for seed in experiment.seeds:
      fids, modes = curves[arm.name]
      _write_run(gans.run_dir(tmp_path, experiment, arm, seed), fids, modes)
  arms = gans.experiment_numbers(tmp_path, experiment)
  assert arms['alternating']['best_modes'] == 6.0 and arms['simultaneous']['best_fid'] == 20.0
  assert gans.sim_alt_direction(arms) == {
    'alternating_beats_simultaneous': True,
    'cancel_improves_simultaneous': True,
    'cancel_discriminator_term_does_not_hurt_alternating': True,
    'alternating_covers_more_modes': True,
    'cancel_covers_more_modes_simultaneous': True,
  }
  # The opposite numbers give the opposite directions; image sets have no modes.
  flipped = {name: {'best_fid': -a['best_fid'], 'best_modes': -a['best_modes']} for name, a in arms.items()}
  assert not any(gans.sim_alt_direction(flipped).values())
  no_modes = {name: {'best_fid': a['best_fid']} for name, a in arms.items()}
  assert set(gans.sim_alt_direction(no_modes)) == {
    'alternating_beats_simultaneous',
    'cancel_improves_simultaneous',
    'cancel_discriminator_term_does_not_hurt_alternating',
  }


def _arms(**best):
  return {name: {'best_fid': value} for name, value in best.items()}


def test_saturating_and_muleps_directions():
  thesis = _arms(none=80.0, sn=10.0, divout_discriminator=70.0, divout_both=12.0)
  assert gans.saturating_direction(thesis) == {
    'sn_recovers': True,
    'divout_both_recovers': True,
    'divout_discriminator_alone_fails': True,
  }
  # DIVOUT on the discriminator alone between SN and DIVOUT on both is not a failure.
  between = _arms(none=80.0, sn=10.0, divout_discriminator=11.0, divout_both=12.0)
  assert gans.saturating_direction(between)['divout_discriminator_alone_fails'] is False
  assert gans.saturating_direction(_arms(none=5.0, sn=10.0, divout_discriminator=1.0, divout_both=12.0)) == {
    'sn_recovers': False,
    'divout_both_recovers': False,
    'divout_discriminator_alone_fails': False,
  }
  assert gans.muleps_direction(_arms(none=30.0, sn=10.0, divgrad=25.0, muleps=28.0)) == {
    'sn_beats_none': True,
    'divgrad_does_not_recover_sn': True,
    'muleps_does_not_recover_sn': True,
  }
  assert gans.muleps_direction(_arms(none=30.0, sn=10.0, divgrad=9.0, muleps=10.0)) == {
    'sn_beats_none': True,
    'divgrad_does_not_recover_sn': False,
    'muleps_does_not_recover_sn': False,
  }


def test_eps_direction_from_degradation_read_from_disk(tmp_path):
  experiment = gans.Experiment(
    name='toy', preset='digits', arms=(gans.Arm('eps_fixed', 'f'), gans.Arm('eps_annealed', 'a')), steps=70,
    log_period=10, eval_period=10, eval_samples=100, seeds=(0,), late_fraction=0.25,
  )  # fmt: skip
  fixed, annealed = experiment.arms
  # Fixed ε: best 4, then it leaves it (the last 2 of 8 evaluations average 12). Annealed: best 5, late 6.
  _write_run(gans.run_dir(tmp_path, experiment, fixed, 0), [50, 20, 8, 4, 6, 9, 11, 13])
  _write_run(gans.run_dir(tmp_path, experiment, annealed, 0), [50, 25, 10, 7, 5, 6, 6, 6])
  arms = gans.experiment_numbers(tmp_path, experiment)
  assert arms['eps_fixed']['degradation'] == pytest.approx(8.0)
  assert arms['eps_annealed']['degradation'] == pytest.approx(1.0)
  assert gans.eps_direction(arms) == {
    'fixed_eps_exits_best': True,
    'annealed_degrades_less': True,
    'annealed_ends_better': True,
  }
  swapped = {'eps_fixed': arms['eps_annealed'], 'eps_annealed': arms['eps_fixed']}
  assert gans.eps_direction(swapped) == {
    'fixed_eps_exits_best': True,
    'annealed_degrades_less': False,
    'annealed_ends_better': False,
  }


def test_numbers_prefix_the_directions_of_several_experiments(tmp_path):
  spec = gans.SPECS['gan-muleps']
  one = _experiment(('none', 'sn', 'divgrad', 'muleps'), seeds=(0,))
  two = dataclasses.replace(one, name='other')
  for experiment, fids in ((one, (30.0, 10.0, 25.0, 28.0)), (two, (30.0, 10.0, 5.0, 28.0))):
    for arm, fid in zip(experiment.arms, fids):
      _write_run(gans.run_dir(tmp_path, experiment, arm, 0), [50.0, fid])
  first = gans.run_dir(tmp_path, one, one.arms[0], 0) / METRICS_FILE
  classifier = json.dumps({'step': 0, 'kind': 'classifier', 'classifier_accuracy': 0.97})
  first.write_text(classifier + '\n' + first.read_text())
  single = gans.numbers(tmp_path, spec, [one])
  assert single['experiments']['toy']['classifier_accuracy'] == 0.97
  assert single['direction'] == {
    'sn_beats_none': True,
    'divgrad_does_not_recover_sn': True,
    'muleps_does_not_recover_sn': True,
  }
  both = gans.numbers(tmp_path, spec, [one, two])
  assert both['direction']['toy/divgrad_does_not_recover_sn'] is True
  assert both['direction']['other/divgrad_does_not_recover_sn'] is False
  assert both['experiments']['other']['arms']['divgrad']['best_fid'] == 5.0
  assert both['experiments']['other']['classifier_accuracy'] is None  # no classifier record


def test_the_figure_draws_curves_and_the_last_samples(tmp_path):
  experiment = _experiment(('a', 'b'), preset='ring', seeds=(0,))
  for arm in experiment.arms:
    directory = gans.run_dir(tmp_path, experiment, arm, 0)
    _write_run(directory, [9.0, 5.0, 4.0], [1, 5, 8])
    (directory / gan.SAMPLES_DIR).mkdir()
    from matplotlib.image import imsave  # pylint: disable=g-import-not-at-top

    imsave(directory / gan.SAMPLES_DIR / 'step_000020.png', np.zeros((4, 4, 3)))
    imsave(directory / gan.SAMPLES_DIR / 'step_000010.png', np.ones((4, 4, 3)))
  assert gans.last_samples(gans.run_dir(tmp_path, experiment, experiment.arms[0], 0)).name == 'step_000020.png'
  assert gans.last_samples(tmp_path / 'nowhere') is None
  fig = gans._figure(tmp_path, [experiment], 'toy')
  FigureCanvasAgg(fig).draw()
  # FID and modes panels plus one sample image per arm.
  assert sum(1 for ax in fig.axes if ax.images) == 2
  assert len(fig.axes) == 4


def test_the_configs_are_the_thesis_settings(tmp_path):
  assert {'gan-sim-alt', 'gan-saturating', 'gan-muleps', 'gan-eps'} <= set(REPRODUCTIONS)
  for name, spec in gans.SPECS.items():
    assert REPRODUCTIONS[name].run is not None
    for experiment in (*spec.experiments, *spec.quick_experiments):
      for config in gans.configs(tmp_path, [experiment]):
        gan.validate(config)
  ring = gans.run_config(tmp_path, gans.SIM_ALT_RING, gans.SIM_ALT_ARMS[0], 2)
  assert (ring.data.name, ring.network.kind, ring.gan.loss, ring.gan.update) == (
    'ring',
    'mlp',
    'saturating',
    'simultaneous',
  )
  assert (ring.optimizer.name, ring.optimizer.discriminator_rate, ring.gan.method, ring.seed) == (
    'sgd',
    0.05,
    'none',
    2,
  )
  assert Path(ring.out) == tmp_path / 'runs' / 'ring' / 'simultaneous' / 'seed2'
  alternating = {a.name: gans.run_config(tmp_path, gans.SIM_ALT_DIGITS, a, 0) for a in gans.SIM_ALT_ARMS}
  assert alternating['alternating'].gan.update == 'alternating' and alternating['alternating'].data.name == 'digits'
  saturating = {a.name: gans.run_config(tmp_path, gans.SATURATING, a, 0) for a in gans.SATURATING.arms}
  assert {c.gan.loss for c in saturating.values()} == {'saturating'}
  assert {c.gan.update for c in saturating.values()} == {'simultaneous'}  # Appendix E.4
  assert (saturating['divout_discriminator'].gan.method, saturating['divout_discriminator'].gan.scope) == (
    'divout',
    'discriminator',
  )
  assert saturating['divout_both'].gan.scope == 'both' and saturating['sn'].gan.method == 'sn'
  assert saturating['sn'].optimizer.name == 'adam' and saturating['sn'].gan.adam_betas == (0.5, 0.999)
  muleps = {a.name: gans.run_config(tmp_path, gans.MULEPS, a, 0) for a in gans.MULEPS.arms}
  assert muleps['muleps'].gan.loss == 'non_saturating' and muleps['muleps'].gan.scope == 'both'
  eps = {a.name: gans.run_config(tmp_path, gans.EPS, a, 0) for a in gans.EPS.arms}
  assert eps['eps_fixed'].optimizer.eps_final is None and eps['eps_annealed'].optimizer.eps_final == 1e-2
  assert eps['eps_annealed'].optimizer.eps == 1e-8 and eps['eps_annealed'].gan.method == 'sn'


def test_one_ring_run_written_by_the_gan_kind_is_read_back(tmp_path):
  # One arm of the quick ring experiment through the 'gan' kind, with one hidden layer per network (three compiles
  # of the MLP pair's programs: ~5-10 s on this CPU).
  small = {'network.generator_widths': (32,), 'network.discriminator_widths': (32,)}
  arm = dataclasses.replace(gans.SIM_ALT_ARMS[0], fields=(*gans.SIM_ALT_ARMS[0].fields, *small.items()))
  experiment = dataclasses.replace(gans.quick(gans.SIM_ALT_RING), arms=(arm,), eval_period=8)
  (summary,) = gans.train(gans.configs(tmp_path, [experiment]))
  directory = gans.run_dir(tmp_path, experiment, experiment.arms[0], 0)
  assert summary['steps'] == experiment.steps and not gans.failed(directory)
  records = gans.evals(directory)
  assert [r['step'] for r in records] == list(range(0, experiment.steps + 1, experiment.eval_period))
  numbers = gans.experiment_numbers(tmp_path, experiment)['simultaneous']
  assert numbers['best_fid'] == pytest.approx(min(r['fid_proxy'] for r in records))
  assert numbers['final_fid'] == pytest.approx(records[-1]['fid_proxy'])
  assert numbers['best_modes'] == max(r['modes_covered'] for r in records) and numbers['stopped_runs'] == 0
  assert gans.last_samples(directory) == directory / gan.SAMPLES_DIR / f'step_{experiment.steps:06d}.png'
  fig = gans._figure(tmp_path, [experiment], 'one run')
  FigureCanvasAgg(fig).draw()
  assert sum(1 for ax in fig.axes if ax.images) == 1
  # Trained already: a second call reads the finished run back.
  assert gans.train(gans.configs(tmp_path, [experiment]))[0]['wall_seconds'] == summary['wall_seconds']
  assert gans.run_config(tmp_path, experiment, arm, 0).network.generator_widths == (32,)


RESULT_KEYS = {'reproduction', 'figure', 'claim', 'settings', 'proxy', 'settings_used', 'quick', 'direction'}


# The quick reproduction compiles the programs of four MLP pairs (~12 s each on this CPU) and draws the figure in
# three formats: ~35 s, so it is slow; one real run is read back above, the numbers on hand-written runs.
@pytest.mark.slow
def test_gan_sim_alt_quick_run_writes_runs_figure_and_result(tmp_path):
  result = gans.GAN_SIM_ALT.run(tmp_path, True)
  assert (tmp_path / common.FIGURE_FILE).stat().st_size > 0
  on_disk = json.loads((tmp_path / common.RESULT_FILE).read_text())
  assert RESULT_KEYS <= set(on_disk) and on_disk['quick'] is True and on_disk['reproduction'] == 'gan-sim-alt'
  assert 'small-scale' in on_disk['proxy']
  assert set(on_disk['direction']) == set(result['direction']) and all(
    isinstance(v, bool) for v in on_disk['direction'].values()
  )
  experiment = gans.SPECS['gan-sim-alt'].quick_experiments[0]
  for arm in experiment.arms:
    directory = gans.run_dir(tmp_path, experiment, arm, 0)
    records = gans.evals(directory)
    assert [r['step'] for r in records] == list(range(0, experiment.steps + 1, experiment.eval_period))
    assert on_disk['experiments']['ring']['arms'][arm.name]['best_fid'] == pytest.approx(
      min(r['fid_proxy'] for r in records)
    )
    assert gans.last_samples(directory).name == f'step_{experiment.steps:06d}.png'
