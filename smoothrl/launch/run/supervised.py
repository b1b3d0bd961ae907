"""The supervised run kind: a `FitConfig` trained by `smoothrl.supervised.trainer`, through the shared recorder.

Runs that differ only in seed and learning rate (`group`) train as one program under `jax.vmap`: a learning-rate ×
seed sweep of a small model compiles once. Training runs in chunks of `log_period` steps, each one call of a
jitted `lax.scan`; between chunks the host writes one `eval` record per run (losses, accuracies, ‖g‖, ‖Hg‖, the rate
and its drift, GC, λ₀ and the edge-of-stability diagnostics when asked) and, every `checkpoint_period` steps, a checkpoint of the whole train state.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from smoothrl.launch.run import checkpoint, grouping
from smoothrl.launch.run import config as config_lib
from smoothrl.launch.run import recorder as recorder_lib
from smoothrl.launch.run.kind import RunKind, TrainOptions
from smoothrl.launch.run.progress import Progress
from smoothrl.supervised import data, models, regularisers, trainer
from smoothrl.supervised.data import DataConfig
from smoothrl.supervised.models import ModelConfig
from smoothrl.supervised.regularisers import RegulariserConfig
from smoothrl.supervised.trainer import MetricsConfig, OptimizerConfig

KIND_NAME = 'supervised'
MAX_SEED = 2**32 - 1


@dataclasses.dataclass(frozen=True)
class FitConfig(config_lib.JsonConfig):
  """One supervised training run (`smoothrl fit`).

  Attributes:
    seed: the run's seed (initialisation, minibatches, stochastic regularisers); the data split is
      `data.split_seed`'s, shared by the runs of a sweep.
    out: the run directory.
    steps: optimiser steps.
    batch_size: examples per step; 0 trains on the full batch (gradient descent).
    log_period: steps between evaluations (one `eval` record each); also the length of one compiled chunk.
    checkpoint_period: steps between checkpoints, a multiple of `log_period` (0: none).
  """

  seed: int = 0
  out: str = 'runs/fit'
  steps: int = 2000
  batch_size: int = 0
  log_period: int = 100
  checkpoint_period: int = 1000
  data: DataConfig = DataConfig()
  model: ModelConfig = ModelConfig()
  optimizer: OptimizerConfig = OptimizerConfig()
  regulariser: RegulariserConfig = RegulariserConfig()
  metrics: MetricsConfig = MetricsConfig()


PRESETS: dict[str, dict[str, Any]] = {
  # `smoothrl fit` on the 8×8 digits with DAL-0.5 (thesis Section 3.7, a CPU-sized proxy of Figure 3.26).
  'digits-dal': {'data.name': 'digits', 'model.widths': (100, 100), 'optimizer.name': 'dal-p', 'optimizer.p': 0.5},
  # Edge of stability on Iris (thesis Figure 3.13): a tanh MLP of 4 hidden layers of 10 units, GD at h = 0.18.
  'iris-eos': {
    'data.name': 'iris',
    'model.widths': (10, 10, 10, 10),
    'model.activation': 'tanh',
    'optimizer.learning_rate': 0.18,
    'metrics.gc': False,
    'metrics.edge_of_stability': True,
    'log_period': 10,
    'steps': 1300,
  },
  # Edge of stability on the 8x8 digits (thesis Figure 3.15): a tanh MLP (32, 32, 32), GD at h = 0.6, every step.
  'digits-eos': {
    'data.name': 'digits',
    'model.widths': (32, 32, 32),
    'model.activation': 'tanh',
    'optimizer.learning_rate': 0.6,
    'metrics.gc': False,
    'metrics.edge_of_stability': True,
    'log_period': 1,
    'steps': 200,
  },
  # Fashion-MNIST, an ELU MLP, full batch (Appendix A.3's MNIST setting at CPU scale).
  'fashion-mlp': {
    'data.name': 'fashion_mnist',
    'data.num_train': 10_000,
    'model.widths': (500, 500),
    'model.activation': 'elu',
  },
}


def validate(config: FitConfig, compiled_programs: bool = False) -> None:
  """Raises one `ConfigError` listing every problem of `config` before any work starts."""
  del compiled_programs  # every supervised run can be compiled
  c = config
  problems: list[str] = []
  check = lambda ok, message: None if ok else problems.append(message)
  integer = lambda v: isinstance(v, int) and not isinstance(v, bool)
  check(integer(c.seed) and 0 <= c.seed <= MAX_SEED, f'seed must be an integer in [0, 2**32), got {c.seed!r}')
  check(integer(c.steps) and c.steps > 0, f'steps must be a positive integer, got {c.steps!r}')
  check(integer(c.batch_size) and c.batch_size >= 0, f'batch_size must be >= 0 (0: full batch), got {c.batch_size!r}')
  check(integer(c.log_period) and c.log_period > 0, f'log_period must be a positive integer, got {c.log_period!r}')
  check(
    integer(c.checkpoint_period) and c.checkpoint_period >= 0 and c.checkpoint_period % max(c.log_period, 1) == 0,
    f'checkpoint_period ({c.checkpoint_period}) must be 0 (off) or a multiple of log_period ({c.log_period})',
  )
  m = c.metrics
  check(integer(m.gc_points) and m.gc_points > 0, f'metrics.gc_points must be positive, got {m.gc_points!r}')
  check(
    integer(m.lanczos_depth) and m.lanczos_depth >= 2, f'metrics.lanczos_depth must be >= 2, got {m.lanczos_depth!r}'
  )
  check(
    integer(m.ngf_substeps) and m.ngf_substeps >= 1, f'metrics.ngf_substeps must be positive, got {m.ngf_substeps!r}'
  )
  check(
    integer(m.eos_krylov_depth) and m.eos_krylov_depth >= 2,
    f'metrics.eos_krylov_depth must be an integer >= 2, got {m.eos_krylov_depth!r}',
  )
  check(
    isinstance(m.edge_of_stability, bool),
    f'metrics.edge_of_stability must be true or false, got {m.edge_of_stability!r}',
  )
  problems += data.validate(c.data)
  problems += models.validate(c.model)
  problems += trainer.validate(c.optimizer)
  problems += regularisers.validate(c.regulariser)
  if problems:
    raise config_lib.ConfigError('invalid config:\n  - ' + '\n  - '.join(problems))


def group(config: FitConfig) -> str:
  """Runs with one key train as members of one vmapped program: everything but seed, directory and rate."""
  optimizer = dataclasses.replace(config.optimizer, learning_rate=OptimizerConfig().learning_rate)
  return dataclasses.replace(config, seed=0, out='', optimizer=optimizer).to_json()


def canonical(config: FitConfig) -> FitConfig:
  """`config` with the fields that cannot change its run reset: a DAL rate ignores the learning rate."""
  config = dataclasses.replace(config, out='')
  if config.optimizer.name in trainer.DAL_OPTIMIZERS:
    config = config_lib.replace(config, **{'optimizer.learning_rate': OptimizerConfig().learning_rate})
  return config


def train(configs: Sequence[FitConfig], options: TrainOptions) -> list[dict[str, Any]]:
  """Trains supervised runs: with `options.compiled`, each group of runs that differ only in seed and learning
  rate as one vmapped program (at most `options.max_members` runs each); otherwise one run after another."""
  configs = list(configs)
  if options.compiled:
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(configs):
      groups.setdefault(group(c), []).append(i)
    size = options.max_members or len(configs)
    batches = [g[j : j + size] for g in groups.values() for j in range(0, len(g), size)]
  else:
    batches = [[i] for i in range(len(configs))]
  summaries: list[dict[str, Any] | None] = [None] * len(configs)
  for n, members in enumerate(batches):
    show = options.show_progress and n == 0
    for i, summary in zip(members, _train_group([configs[i] for i in members], show, options.resume)):
      summaries[i] = summary
  return summaries  # type: ignore[return-value]


class _Programs:
  """The jitted, vmapped functions of one group's trainer."""

  def __init__(self, config: FitConfig):
    self.dataset = data.load(config.data)
    self.model = models.make_model(config.model, self.dataset.x_train.shape[1:], self.dataset.num_outputs)
    t = trainer.make_trainer(
      self.model, self.dataset, config.optimizer, config.regulariser, config.batch_size, config.metrics
    )
    self.trainer = t
    self.init = jax.jit(jax.vmap(t.init))
    self.observe = jax.jit(jax.vmap(t.observe))  # the metrics, and the state carrying the EoS warm start
    self._train: dict[int, Any] = {}

  def train(self, state: trainer.TrainState, steps: int) -> trainer.TrainState:
    if steps not in self._train:
      self._train[steps] = jax.jit(jax.vmap(lambda s: self.trainer.train(s, steps)), donate_argnums=0)
    return self._train[steps](state)

  def template(self) -> trainer.TrainState:
    return jax.eval_shape(self.trainer.init, jax.random.PRNGKey(0), jnp.float32(1.0))


def _train_group(configs: list[FitConfig], show_progress: bool, resume: bool) -> list[dict[str, Any]]:
  """Trains runs of one group; finished runs (on resume) return their summaries, the rest continue from their
  checkpoints, members that stopped at different steps in programs of their own."""
  summaries: list[dict[str, Any] | None] = [None] * len(configs)
  todo = []
  for i, c in enumerate(configs):
    done = recorder_lib.finished_summary(c.out, c.to_json()) if resume else None
    if done is not None:
      summaries[i] = done
    else:
      todo.append(i)
  if not todo:
    return summaries  # type: ignore[return-value]
  programs = _Programs(configs[todo[0]])
  recorders = {i: recorder_lib.Recorder(configs[i].out, configs[i].to_json(), kind=KIND_NAME) for i in todo}
  try:
    with contextlib.ExitStack() as stack:
      for r in recorders.values():
        stack.enter_context(r)
      saved = {i: recorders[i].saved_checkpoint() if resume else None for i in todo}
      by_step: dict[int, list[int]] = {}
      for i in todo:
        by_step.setdefault(0 if saved[i] is None else saved[i].step, []).append(i)
      for members in by_step.values():
        results = _train_members(
          programs,
          [configs[i] for i in members],
          [recorders[i] for i in members],
          [saved[i] for i in members],
          show_progress,
        )
        for i, summary in zip(members, results):
          summaries[i] = summary
  except BaseException as e:
    for r in recorders.values():
      if r.failure is None and r.writer is not None:
        r.fail(e)
    raise
  return summaries  # type: ignore[return-value]


def _train_members(
  programs: _Programs,
  configs: list[FitConfig],
  recorders: list[recorder_lib.Recorder],
  saved: list[checkpoint.Saved | None],
  show_progress: bool,
) -> list[dict[str, Any]]:
  """Runs members that start at one step together to the end; one whose loss turns non-finite stops alone."""
  base = configs[0]
  rates = jnp.asarray([c.optimizer.learning_rate for c in configs], jnp.float32)
  if saved[0] is None:
    state = programs.init(jnp.stack([jax.random.PRNGKey(c.seed) for c in configs]), rates)
    t0, elapsed = 0, 0.0
  else:
    template = programs.template()
    state = grouping.stack([checkpoint.restore(s.leaves['state'], template, c.out) for s, c in zip(saved, configs)])
    t0, elapsed = saved[0].step, saved[0].meta['elapsed']
  for r, s in zip(recorders, saved):
    r.start(s)
  stopped = [False] * len(configs)
  last: list[dict[str, float]] = [{} for _ in configs]
  label = ','.join(f'{c.seed}' for c in configs)

  def record(step: int, elapsed: float) -> None:
    """Writes every live member's `eval` record at `step`; a member whose loss is not finite stops alone. The
    state takes what the evaluation carries forward (the warm start of the edge-of-stability diagnostics)."""
    nonlocal state
    metrics, state = programs.observe(state)
    metrics = jax.device_get(metrics)
    for i, r in enumerate(recorders):
      if stopped[i]:
        continue
      values = {k: float(v[i]) for k, v in metrics.items()}
      try:
        r.check_loss(values['train_loss'], step)
      except config_lib.TrainingError as e:  # this member stops; the vmapped program keeps its lane
        r.fail(e)
        stopped[i] = True
        continue
      last[i] = values
      r.write({'step': step, 'kind': 'eval', 'elapsed': elapsed, **values})

  with Progress(base.steps, enabled=show_progress, first=t0) as progress:
    start = time.perf_counter() - elapsed
    if t0 == 0:
      record(0, 0.0)  # the curves start at initialisation
    t = t0
    while t < base.steps and not all(stopped):
      end = min(t + base.log_period, base.steps)
      state = programs.train(state, end - t)
      record(end, time.perf_counter() - start)
      if all(stopped):
        break
      if base.checkpoint_period and end % base.checkpoint_period == 0 and end < base.steps:
        host = jax.device_get(state)
        for i, r in enumerate(recorders):
          if not stopped[i]:
            r.checkpoint(end, {'state': grouping.member(host, i)}, {'elapsed': time.perf_counter() - start})
      t = end
      shown = next(i for i in range(len(configs)) if not stopped[i])
      progress.update(
        end,
        force=end == base.steps,
        seeds=label,
        loss=last[shown].get('train_loss'),
        test=last[shown].get('test_accuracy', last[shown].get('test_loss')),
      )
  wall = time.perf_counter() - start
  host = jax.device_get(state)
  summaries = []
  for i, (c, r) in enumerate(zip(configs, recorders)):
    if stopped[i]:
      summaries.append(r.failure)
      continue
    summary = {'steps': c.steps, 'wall_seconds': wall, 'members_together': len(configs), 'final_eval': last[i]}
    model = {'arrays': grouping.member(host, i).params, 'meta': {'config': c.to_dict()}}
    summaries.append(r.finish(summary, c.steps, model))
  return summaries


KIND = RunKind(
  name=KIND_NAME,
  config_type=FitConfig,
  presets=PRESETS,
  validate=validate,
  train=train,
  canonical=canonical,
  group=group,
  score='test_accuracy',
  subject=lambda config: f'data/{config.get("data", {}).get("name", "?")}',
  step_name='optimiser steps',
)
