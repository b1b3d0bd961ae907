"""GAN training under discretisation drift and smoothness constraints (thesis Sections 4.6 and 7.4), as small-scale
CPU proxies of CIFAR-10 experiments, with the FID proxy of `smoothrl.gan.metrics` (features of a classifier trained
on the data) in place of the Inception Score and FID, and mode coverage on the ring of 8 Gaussians.

`gan-sim-alt` (Section 4.6, Figures 4.6, 4.8, 4.10): the zero-sum (saturating) GAN trained with plain SGD, with
simultaneous and with alternating updates, each with and without the explicit regularisers that cancel the
interaction terms of the drift (Table 4.2: simultaneous c_φ = v_φh/4, c_θ = v_θh/4; alternating only the
discriminator's term, c_φ = v_φh/4, as Section 4.6.3 recommends), on the ring mixture (MLP pair) and on the 8x8
digits (DCGAN pair).

`gan-saturating` (Figure 7.12): the saturating loss with Adam (β₁ = 0.5) and simultaneous updates on the digits,
with no normalisation, SN, DIVOUT on the discriminator's loss alone and DIVOUT on both players' losses (Eq 7.13).

`gan-muleps` (Figure 7.6): the non-saturating loss, same optimiser, with no normalisation, SN, DIVGRAD (Eq 7.28)
and MULEPS (Eq 7.31), both reaching the generator's optimiser too (scope 'both', since its gradient passes through
the discriminator).

`gan-eps` (Figure 7.15): SN-GAN with the non-saturating loss and Adam, ε = 1e-8 fixed against ε annealed
exponentially from 1e-8 to 1e-2 over training.

Every run is a run directory of the 'gan' run kind under `OUT/runs/<experiment>/<arm>/seed<k>/`; every number is
read back from its `metrics.jsonl` (and `status.json` for runs that stopped on a non-finite loss). Per arm, the
mean over seeds of the best (lowest) FID proxy over the evaluations, of the final one and of the mean over the last
quarter of them ('late'); on mixtures also the best and final numbers of modes covered. A run that stopped on a
non-finite loss counts with a final and late FID proxy of +inf (and 0 final modes). The `direction` dict of
`result.json` holds the thesis' claims as booleans computed from those means.

    smoothrl reproduce gan-sim-alt --out runs/repro/gan-sim-alt
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.image import imread

from smoothrl.launch.reproductions import common
from smoothrl.launch.run import config as config_lib
from smoothrl.launch.run import gan
from smoothrl.launch.run.files import METRICS_FILE, read_metrics
from smoothrl.launch.run.kind import TrainOptions
from smoothrl.launch.run.recorder import read_status

Fields = tuple[tuple[str, Any], ...]


@dataclasses.dataclass(frozen=True)
class Arm:
  """One training setting of an experiment: its directory name, its legend label and its dotted config fields."""

  name: str
  label: str
  fields: Fields = ()


@dataclasses.dataclass(frozen=True)
class Experiment:
  """Runs of every arm on one data set, `seeds` each.

  Attributes:
    name: the directory under `OUT/runs/` (and the key of the experiment's numbers).
    preset: the 'gan' kind's preset for the data set and networks ('digits', 'ring').
    arms: the settings compared.
    steps, log_period, eval_period, eval_samples: as in `GanRunConfig`.
    seeds: one run per arm and seed.
    base: dotted fields every arm shares (after the preset, before the arm's own).
    late_fraction: the share of the last evaluations averaged into the 'late' FID proxy.
  """

  name: str
  preset: str
  arms: tuple[Arm, ...]
  steps: int
  log_period: int
  eval_period: int
  eval_samples: int
  seeds: tuple[int, ...]
  base: Fields = ()
  late_fraction: float = 0.25

  @property
  def mixture(self) -> bool:
    return self.preset in ('ring', 'grid')


def run_dir(out: Path | str, experiment: Experiment, arm: Arm, seed: int) -> Path:
  """`out/runs/<experiment>/<arm>/seed<seed>`."""
  return Path(out) / 'runs' / experiment.name / arm.name / f'seed{seed}'


def run_config(out: Path | str, experiment: Experiment, arm: Arm, seed: int) -> gan.GanRunConfig:
  """The `GanRunConfig` of one run: the preset, the experiment's shared fields, then the arm's."""
  fields = {
    **gan.KIND.presets[experiment.preset],
    **dict(experiment.base),
    **dict(arm.fields),
    'seed': seed,
    'steps': experiment.steps,
    'log_period': experiment.log_period,
    'eval_period': experiment.eval_period,
    'eval_samples': experiment.eval_samples,
    'checkpoint_period': 0,
  }
  return config_lib.replace(gan.GanRunConfig(out=str(run_dir(out, experiment, arm, seed))), **fields)


def train(configs: Sequence[gan.GanRunConfig], show_progress: bool = False) -> list[dict[str, Any]]:
  """Trains (or, when they finished already, reads back) `configs` through the 'gan' kind, one after another. A run
  that stopped on a non-finite loss or non-finite samples is a result (its failure record is returned, its
  `status.json` says 'failed'); any other error stops the reproduction."""
  for config in configs:
    gan.validate(config)
  return gan.train(configs, TrainOptions(show_progress=show_progress, resume=True))


# ----------------------------------------------------------------------------
# Numbers read back from the run directories.
# ----------------------------------------------------------------------------


def evals(directory: Path | str) -> list[dict[str, Any]]:
  """The `eval` records a run wrote to its `metrics.jsonl`, in step order."""
  return [r for r in read_metrics(Path(directory) / METRICS_FILE) if r.get('kind') == 'eval']


def failed(directory: Path | str) -> bool:
  """Whether the run's `status.json` says it stopped with an error."""
  status = read_status(directory)
  return bool(status) and status['state'] == 'failed'


def run_numbers(records: Sequence[Mapping[str, Any]], stopped: bool, late_fraction: float) -> dict[str, float]:
  """One run's numbers from its `eval` records: 'best_fid' (the lowest FID proxy), 'final_fid', 'late_fid' (the mean
  over the last `late_fraction` of the records, at least one), and with 'modes_covered' in the records
  'best_modes' and 'final_modes'. A `stopped` run (a non-finite loss) has final and late FID +inf, final modes 0.

  Raises:
    ValueError: no records.
  """
  if not records:
    raise ValueError('a run needs at least one eval record')
  fid = np.asarray([float(r['fid_proxy']) for r in records], np.float64)
  fid = np.where(np.isfinite(fid), fid, np.inf)
  late = fid[-max(1, round(late_fraction * fid.size)) :]
  numbers = {
    'best_fid': float(np.min(fid)),
    'final_fid': math.inf if stopped else float(fid[-1]),
    'late_fid': math.inf if stopped else float(np.mean(late)),
  }
  if 'modes_covered' in records[0]:
    modes = np.asarray([float(r['modes_covered']) for r in records], np.float64)
    numbers['best_modes'] = float(np.max(modes))
    numbers['final_modes'] = 0.0 if stopped else float(modes[-1])
  return numbers


def arm_numbers(runs: Sequence[Mapping[str, float]], stopped: Sequence[bool]) -> dict[str, Any]:
  """The mean over seeds of each of `run_numbers`' fields, the per-seed values ('<field>_seeds'), the number of
  runs stopped on a non-finite loss, and 'degradation' = mean late FID − mean best FID (how far an arm fell from
  its best)."""
  numbers: dict[str, Any] = {}
  for field in runs[0]:
    values = [float(r[field]) for r in runs]
    numbers[field] = float(np.mean(values))
    numbers[f'{field}_seeds'] = values
  numbers['stopped_runs'] = int(sum(stopped))
  numbers['degradation'] = numbers['late_fid'] - numbers['best_fid']
  return numbers


def experiment_numbers(out: Path | str, experiment: Experiment) -> dict[str, dict[str, Any]]:
  """`arm_numbers` of every arm of `experiment`, read from its run directories under `out`."""
  result = {}
  for arm in experiment.arms:
    dirs = [run_dir(out, experiment, arm, seed) for seed in experiment.seeds]
    stopped = [failed(d) for d in dirs]
    runs = [run_numbers(evals(d), s, experiment.late_fraction) for d, s in zip(dirs, stopped)]
    result[arm.name] = arm_numbers(runs, stopped)
  return result


# ----------------------------------------------------------------------------
# The thesis' directions, from the arms' numbers.
# ----------------------------------------------------------------------------


def sim_alt_direction(arms: Mapping[str, Mapping[str, Any]]) -> dict[str, bool]:
  """Section 4.6 on one data set, from the mean best FID proxy (and best modes on mixtures): alternating beats
  simultaneous SGD (Figure 4.6a); cancelling the interaction terms improves simultaneous SGD (Figure 4.8) and,
  cancelling the discriminator's term only, does not hurt alternating SGD (Figure 4.10); on mixtures the same for
  modes covered (at least as many)."""
  fid = {name: a['best_fid'] for name, a in arms.items()}
  direction = {
    'alternating_beats_simultaneous': fid['alternating'] < fid['simultaneous'],
    'cancel_improves_simultaneous': fid['simultaneous_cancel'] < fid['simultaneous'],
    'cancel_discriminator_term_does_not_hurt_alternating': fid['alternating_cancel'] <= fid['alternating'],
  }
  if 'best_modes' in arms['simultaneous']:
    modes = {name: a['best_modes'] for name, a in arms.items()}
    direction |= {
      'alternating_covers_more_modes': modes['alternating'] > modes['simultaneous'],
      'cancel_covers_more_modes_simultaneous': modes['simultaneous_cancel'] > modes['simultaneous'],
    }
  return direction


def saturating_direction(arms: Mapping[str, Mapping[str, Any]]) -> dict[str, bool]:
  """Figure 7.12, from the mean best FID proxy: SN and DIVOUT on both players recover from the saturating loss's
  poor performance without normalisation; DIVOUT on the discriminator alone does not (it is worse than both SN and
  DIVOUT on both players)."""
  fid = {name: a['best_fid'] for name, a in arms.items()}
  return {
    'sn_recovers': fid['sn'] < fid['none'],
    'divout_both_recovers': fid['divout_both'] < fid['none'],
    'divout_discriminator_alone_fails': fid['divout_discriminator'] > max(fid['sn'], fid['divout_both']),
  }


def muleps_direction(arms: Mapping[str, Mapping[str, Any]]) -> dict[str, bool]:
  """Figure 7.6, from the mean best FID proxy: SN improves on no normalisation, and the optimisation-only methods
  DIVGRAD and MULEPS do not recover SN's performance."""
  fid = {name: a['best_fid'] for name, a in arms.items()}
  return {
    'sn_beats_none': fid['sn'] < fid['none'],
    'divgrad_does_not_recover_sn': fid['divgrad'] > fid['sn'],
    'muleps_does_not_recover_sn': fid['muleps'] > fid['sn'],
  }


def eps_direction(arms: Mapping[str, Mapping[str, Any]]) -> dict[str, bool]:
  """Figure 7.15: with ε = 1e-8 the run leaves its best FID proxy (late above best); annealing ε to 1e-2 falls less
  far from its best, and ends better (mean late FID proxy)."""
  fixed, annealed = arms['eps_fixed'], arms['eps_annealed']
  return {
    'fixed_eps_exits_best': fixed['degradation'] > 0,
    'annealed_degrades_less': annealed['degradation'] < fixed['degradation'],
    'annealed_ends_better': annealed['late_fid'] < fixed['late_fid'],
  }


# ----------------------------------------------------------------------------
# The figure: FID proxy (and modes) against steps per arm, and the last eval's samples.
# ----------------------------------------------------------------------------


def _mean_curve(dirs: Sequence[Path], field: str) -> tuple[np.ndarray, np.ndarray]:
  """(steps, mean over runs) of `field` at the steps every run evaluated."""
  per_run = [{r['step']: float(r[field]) for r in evals(d)} for d in dirs]
  steps = sorted(set.intersection(*(set(p) for p in per_run))) if per_run else []
  return np.asarray(steps), np.asarray([np.mean([p[s] for p in per_run]) for s in steps])


def last_samples(directory: Path | str) -> Path | None:
  """The sample PNG of the run's last `eval` record, else its latest sample PNG, else None."""
  samples = Path(directory) / gan.SAMPLES_DIR
  records = evals(directory) if (Path(directory) / METRICS_FILE).is_file() else []
  if records:
    path = samples / f'step_{int(records[-1]["step"]):06d}.png'
    if path.is_file():
      return path
  found = sorted(samples.glob('step_*.png')) if samples.is_dir() else []
  return found[-1] if found else None


def _figure(out: Path, experiments: Sequence[Experiment], title: str) -> Figure:
  columns = max(len(e.arms) for e in experiments)
  fig = Figure(figsize=(4 * columns, 7.5 * len(experiments)), layout='constrained')
  rows = fig.subfigures(len(experiments), 1, squeeze=False)[:, 0]
  for row, experiment in zip(rows, experiments):
    top, bottom = row.subfigures(2, 1, height_ratios=(1.1, 1))
    curves = top.subplots(1, 2 if experiment.mixture else 1, squeeze=False)[0]
    for i, arm in enumerate(experiment.arms):
      dirs = [run_dir(out, experiment, arm, seed) for seed in experiment.seeds]
      for k, field in enumerate(('fid_proxy', 'modes_covered') if experiment.mixture else ('fid_proxy',)):
        for d in dirs:
          records = evals(d)
          curves[k].plot([r['step'] for r in records], [r[field] for r in records], color=f'C{i}', lw=0.5, alpha=0.4)
        steps, mean = _mean_curve(dirs, field)
        curves[k].plot(steps, mean, color=f'C{i}', lw=1.8, label=arm.label)
    curves[0].set_yscale('log')
    curves[0].set(xlabel='training steps', ylabel='FID proxy (lower is better)', title=f'{experiment.name}: FID proxy')
    curves[0].legend(fontsize=8)
    if experiment.mixture:
      curves[1].set(xlabel='training steps', ylabel='modes covered', title=f'{experiment.name}: modes covered')
    images = bottom.subplots(1, columns, squeeze=False)[0]
    for ax in images:
      ax.set_axis_off()
    for ax, arm in zip(images, experiment.arms):
      path = last_samples(run_dir(out, experiment, arm, experiment.seeds[0]))
      if path is not None:
        ax.imshow(imread(path))
      ax.set_title(f'{arm.label}\nlast eval, seed {experiment.seeds[0]}', fontsize=9)
  fig.suptitle(f'{title} (small-scale proxy)')
  return fig


# ----------------------------------------------------------------------------
# The reproductions.
# ----------------------------------------------------------------------------


def _arm(name: str, label: str, **fields: Any) -> Arm:
  return Arm(name, label, tuple(sorted(fields.items())))


def _with(experiment: Experiment, **changes: Any) -> Experiment:
  return dataclasses.replace(experiment, **changes)


# Section 4.6: the zero-sum game with plain SGD at a rate of the thesis' sweep, equal for both players; the
# regularisers' drift is that of these rates (v_φh, v_θh).
SGD_RATE = 0.05
_SGD: Fields = (
  ('gan.loss', 'saturating'),
  ('gan.method', 'none'),
  ('gan.adam_betas', None),
  ('optimizer.name', 'sgd'),
  ('optimizer.discriminator_rate', SGD_RATE),
  ('optimizer.generator_rate', SGD_RATE),
)
_CANCEL = {'gan.regulariser': 'cancel_interaction', 'gan.drift_rates': (SGD_RATE, SGD_RATE)}
SIM_ALT_ARMS = (
  _arm('simultaneous', 'simultaneous', **{'gan.update': 'simultaneous'}),
  _arm('alternating', 'alternating', **{'gan.update': 'alternating'}),
  _arm(
    'simultaneous_cancel',
    'simultaneous, interaction terms cancelled',
    **{'gan.update': 'simultaneous', **_CANCEL},
  ),
  _arm(
    'alternating_cancel',
    "alternating, discriminator's interaction term cancelled",
    **{'gan.update': 'alternating', 'gan.regulariser_players': 'discriminator', **_CANCEL},
  ),
)
SIM_ALT_RING = Experiment(
  name='ring', preset='ring', arms=SIM_ALT_ARMS, steps=2000, log_period=50, eval_period=250, eval_samples=1000,
  seeds=(0, 1, 2), base=_SGD,
)  # fmt: skip
SIM_ALT_DIGITS = Experiment(
  name='digits', preset='digits', arms=SIM_ALT_ARMS, steps=1000, log_period=50, eval_period=250, eval_samples=1000,
  seeds=(0, 1), base=_SGD,
)  # fmt: skip

# Section 7.4: Adam with β₁ = 0.5 at 4e-4 for both players (the top of the thesis' sweep, Figure 7.15's rate),
# simultaneous updates (Appendix E.4).
_ADAM: Fields = (
  ('gan.update', 'simultaneous'),
  ('gan.adam_betas', (0.5, 0.999)),
  ('optimizer.name', 'adam'),
  ('optimizer.discriminator_rate', 4e-4),
  ('optimizer.generator_rate', 4e-4),
)
SATURATING = Experiment(
  name='digits',
  preset='digits',
  arms=(
    _arm('none', 'no normalisation', **{'gan.method': 'none'}),
    _arm('sn', 'SN', **{'gan.method': 'sn'}),
    _arm('divout_discriminator', 'DIVOUT, discriminator only', **{'gan.method': 'divout', 'gan.scope': 'discriminator'}),
    _arm('divout_both', 'DIVOUT, both players', **{'gan.method': 'divout', 'gan.scope': 'both'}),
  ),
  steps=1500, log_period=50, eval_period=250, eval_samples=1000, seeds=(0, 1),
  base=(*_ADAM, ('gan.loss', 'saturating')),
)  # fmt: skip
MULEPS = Experiment(
  name='digits',
  preset='digits',
  arms=(
    _arm('none', 'no normalisation', **{'gan.method': 'none'}),
    _arm('sn', 'SN', **{'gan.method': 'sn'}),
    _arm('divgrad', 'DIVGRAD', **{'gan.method': 'divgrad', 'gan.scope': 'both'}),
    _arm('muleps', 'MULEPS', **{'gan.method': 'muleps', 'gan.scope': 'both'}),
  ),
  steps=1500, log_period=50, eval_period=250, eval_samples=1000, seeds=(0, 1),
  base=(*_ADAM, ('gan.loss', 'non_saturating')),
)  # fmt: skip
EPS = Experiment(
  name='digits',
  preset='digits',
  arms=(
    _arm('eps_fixed', 'ε = 1e-8', **{'optimizer.eps': 1e-8}),
    _arm('eps_annealed', 'ε annealed 1e-8 → 1e-2', **{'optimizer.eps': 1e-8, 'optimizer.eps_final': 1e-2}),
  ),
  steps=2500, log_period=50, eval_period=250, eval_samples=1000, seeds=(0, 1),
  base=(*_ADAM, ('gan.loss', 'non_saturating'), ('gan.method', 'sn')),
)  # fmt: skip


def quick(experiment: Experiment) -> Experiment:
  """The smoke-test size of `experiment`: one seed, a few steps, few eval samples."""
  return _with(experiment, steps=8, log_period=4, eval_period=4, eval_samples=200, seeds=(0,))


@dataclasses.dataclass(frozen=True)
class Spec:
  """A reproduction's experiments (full size) and how its direction is computed from each one's arm numbers."""

  experiments: tuple[Experiment, ...]
  quick_experiments: tuple[Experiment, ...]
  direction: Callable[[Mapping[str, Mapping[str, Any]]], dict[str, bool]]
  title: str


SPECS: dict[str, Spec] = {
  'gan-sim-alt': Spec(
    (SIM_ALT_RING, SIM_ALT_DIGITS),
    (quick(SIM_ALT_RING),),
    sim_alt_direction,
    'Zero-sum GAN with SGD: simultaneous vs alternating, interaction terms cancelled (Section 4.6)',
  ),
  'gan-saturating': Spec(
    (SATURATING,), (quick(SATURATING),), saturating_direction, 'Saturating loss: SN and DIVOUT (Figure 7.12)'
  ),
  'gan-muleps': Spec(
    (MULEPS,), (quick(MULEPS),), muleps_direction, 'Non-saturating loss: SN, DIVGRAD and MULEPS (Figure 7.6)'
  ),
  'gan-eps': Spec((EPS,), (quick(EPS),), eps_direction, 'SN-GAN with Adam: ε fixed and annealed (Figure 7.15)'),
}


def configs(out: Path | str, experiments: Sequence[Experiment]) -> list[gan.GanRunConfig]:
  """Every run of `experiments`, arm by arm, seed by seed."""
  return [run_config(out, e, arm, seed) for e in experiments for arm in e.arms for seed in e.seeds]


def numbers(out: Path | str, spec: Spec, experiments: Sequence[Experiment]) -> dict[str, Any]:
  """Each experiment's arm numbers and direction (keyed by experiment name), read from the runs under `out`; with
  one experiment its direction is also the top-level 'direction', with several the top-level one holds each
  experiment's directions prefixed '<experiment>/'."""
  result: dict[str, Any] = {'experiments': {}, 'direction': {}}
  for experiment in experiments:
    arms = experiment_numbers(out, experiment)
    direction = spec.direction(arms)
    result['experiments'][experiment.name] = {'arms': arms, 'direction': direction}
    if not experiment.mixture:  # the test accuracy of the classifier whose features the FID proxy uses
      first = run_dir(out, experiment, experiment.arms[0], experiment.seeds[0]) / METRICS_FILE
      accuracy = [r['classifier_accuracy'] for r in read_metrics(first, 'classifier')]
      result['experiments'][experiment.name]['classifier_accuracy'] = accuracy[0] if accuracy else None
    prefix = f'{experiment.name}/' if len(experiments) > 1 else ''
    result['direction'] |= {f'{prefix}{k}': v for k, v in direction.items()}
  return result


def reproduce(name: str, out: Path | str, quick_run: bool = False) -> dict[str, Any]:
  """Trains reproduction `name`'s runs into `out/runs/`, reads them back, draws `out/figure.png` and writes
  `out/result.json`."""
  out = Path(out)
  spec = SPECS[name]
  experiments = spec.quick_experiments if quick_run else spec.experiments
  train(configs(out, experiments))
  result = numbers(out, spec, experiments)
  return common.finish(
    out,
    REPRODUCTIONS_BY_NAME[name],
    _figure(out, experiments, spec.title),
    result,
    {e.name: _settings(e) for e in experiments},
    quick_run,
  )


def _settings(experiment: Experiment) -> dict[str, Any]:
  settings = dataclasses.asdict(experiment)
  settings['base'] = dict(experiment.base)
  settings['arms'] = {arm.name: dict(arm.fields) for arm in experiment.arms}
  return settings


def _runner(name: str) -> Callable[[Path, bool], dict[str, Any]]:
  return lambda out, quick_run=False: reproduce(name, out, quick_run)


GAN_SIM_ALT = common.Reproduction(
  name='gan-sim-alt',
  figure='Figures 4.6, 4.8, 4.10 (Section 4.6)',
  claim=(
    'In the zero-sum GAN trained with SGD, alternating updates beat simultaneous ones; cancelling the interaction '
    'terms of the drift with explicit regularisation (c_φ = v_φh/4, c_θ = v_θh/4) improves simultaneous SGD, and '
    "with alternating updates cancelling only the discriminator's term does not hurt."
  ),
  settings=(
    'Small-scale CPU proxy: the saturating (zero-sum) loss, plain SGD at 0.05 for both players, batch 64; the ring '
    'of 8 Gaussians with the MLP pair, 2000 steps, 3 seeds (modes covered and the FID proxy on raw coordinates); the '
    '8x8 digits with the small DCGAN pair, 1000 steps, 2 seeds (the FID proxy on features of a classifier trained on '
    'the digits); 1000 samples per evaluation; the best FID proxy per run, mean over seeds.'
  ),
  run=_runner('gan-sim-alt'),
)
GAN_SATURATING = common.Reproduction(
  name='gan-saturating',
  figure='Figure 7.12',
  claim=(
    'With the saturating loss, the GAN without normalisation performs poorly; SN recovers, and so does DIVOUT when '
    'applied to both players; DIVOUT on the discriminator alone does not.'
  ),
  settings=(
    'Small-scale CPU proxy: the 8x8 digits, the small DCGAN pair, the saturating loss, Adam (β₁ = 0.5, rate 4e-4 '
    'for both players), simultaneous updates, batch 64, 1500 steps, 2 seeds; the best FID proxy (classifier '
    'features, 1000 samples) per run, mean over seeds.'
  ),
  run=_runner('gan-saturating'),
)
GAN_MULEPS = common.Reproduction(
  name='gan-muleps',
  figure='Figure 7.6',
  claim=(
    'With the non-saturating loss, the optimisation-only methods DIVGRAD and MULEPS do not recover the performance '
    'of SN, which improves on no normalisation.'
  ),
  settings=(
    'Small-scale CPU proxy: the 8x8 digits, the small DCGAN pair, the non-saturating loss, Adam (β₁ = 0.5, rate '
    '4e-4 for both players), simultaneous updates, batch 64, 1500 steps, 2 seeds; DIVGRAD and MULEPS with ρ of the '
    "whole discriminator reaching both players' optimisers; the best FID proxy per run, mean over seeds."
  ),
  run=_runner('gan-muleps'),
)
GAN_EPS = common.Reproduction(
  name='gan-eps',
  figure='Figure 7.15',
  claim=(
    'With Adam at ε = 1e-8 an SN-GAN leaves its best performance later in training; annealing ε to 1e-2 makes it '
    'fall less far from its best.'
  ),
  settings=(
    'Small-scale CPU proxy: the 8x8 digits, the small DCGAN pair with SN, the non-saturating loss, Adam (β₁ = 0.5, '
    'rate 4e-4 for both players), simultaneous updates, batch 64, 2500 steps, 2 seeds; ε = 1e-8 fixed or annealed '
    'exponentially to 1e-2 over the run; degradation = the mean over the last quarter of evaluations of the FID '
    'proxy minus its best, mean over seeds.'
  ),
  run=_runner('gan-eps'),
)

REPRODUCTIONS = (GAN_SIM_ALT, GAN_SATURATING, GAN_MULEPS, GAN_EPS)
REPRODUCTIONS_BY_NAME = {r.name: r for r in REPRODUCTIONS}
