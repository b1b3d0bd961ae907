"""The platform is generic over run kinds: a toy kind goes through sweeps, the recorder, a backend and results."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from smoothrl.launch import kinds
from smoothrl.launch.analysis import report, results
from smoothrl.launch.run import checkpoint, recorder
from smoothrl.launch.run import config as config_lib
from smoothrl.launch.run.files import read_metrics
from smoothrl.launch.run.kind import RunKind, TrainOptions
from smoothrl.launch.sweeps import backends
from smoothrl.launch.sweeps import spec as sweep


@dataclasses.dataclass(frozen=True)
class Toy:
  """Gradient descent on E(x) = x^2 / 2 from x = 1, a run of `steps` steps."""

  seed: int = 0
  out: str = 'runs/toy'
  learning_rate: float = 0.1
  steps: int = 4

  def to_dict(self):
    return dataclasses.asdict(self)

  def to_json(self):
    return json.dumps(self.to_dict(), sort_keys=True)

  @classmethod
  def from_dict(cls, data):
    return config_lib.build(cls, data)


def _validate(config: Toy, compiled: bool) -> None:
  del compiled
  if config.learning_rate <= 0:
    raise config_lib.ConfigError('invalid config:\n  - learning_rate must be positive')


def _train(configs, options: TrainOptions):
  summaries = []
  for config in configs:
    with recorder.Recorder(config.out, config.to_json(), kind='toy') as rec:
      saved = rec.saved_checkpoint() if options.resume else None
      rec.start(saved)
      x, first = (1.0, 1) if saved is None else (float(saved.leaves['x'][0]), saved.step + 1)
      for step in range(first, config.steps + 1):
        x -= config.learning_rate * x
        rec.write({'step': step, 'kind': 'eval', 'accuracy': 1.0 - abs(x)})
        rec.checkpoint(step, {'x': np.float64(x)}, {})
      summaries.append(rec.finish({'x': x}, config.steps, {'arrays': {'x': np.float64(x)}, 'meta': {}}))
  return summaries


TOY = RunKind(
  name='toy',
  config_type=Toy,
  presets={'slow': {'learning_rate': 0.01}},
  validate=_validate,
  train=_train,
  score='accuracy',
)


@pytest.fixture
def toy_kind(monkeypatch):
  monkeypatch.setitem(kinds.KINDS, 'toy', TOY)
  return TOY


def test_a_sweep_of_another_kind_is_checked_against_its_own_config(toy_kind, tmp_path):
  spec = sweep.parse_spec(
    {
      'name': 't',
      'kind': 'toy',
      'out': str(tmp_path),
      'preset': 'slow',
      'grid': {'learning_rate': [0.1, 0.5], 'seed': [0, 1]},
    }
  )
  runs = sweep.expand(spec)
  assert [type(r.config) for r in runs] == [Toy] * 4
  assert [(r.config.learning_rate, r.config.seed) for r in runs] == [(0.1, 0), (0.1, 1), (0.5, 0), (0.5, 1)]
  assert sweep.parse_spec({'name': 't', 'kind': 'toy', 'preset': 'slow'}).base_config().learning_rate == 0.01
  with pytest.raises(sweep.SweepError, match=r"grid\.learning_rat: unknown field; did you mean 'learning_rate'"):
    sweep.parse_spec({'name': 't', 'kind': 'toy', 'grid': {'learning_rat': [0.1]}})
  with pytest.raises(sweep.SweepError, match='learning_rate must be positive'):
    sweep.parse_spec({'name': 't', 'kind': 'toy', 'grid': {'learning_rate': [-1.0]}})
  with pytest.raises(sweep.SweepError, match="unknown run kind 'nope'; valid: rl, supervised, flow, gan, toy"):
    sweep.parse_spec({'name': 't', 'kind': 'nope'})


def test_a_backend_trains_runs_of_another_kind_and_results_read_their_score(toy_kind, tmp_path):
  spec = sweep.parse_spec({'name': 't', 'kind': 'toy', 'out': str(tmp_path), 'grid': {'learning_rate': [0.1, 0.5]}})
  for run in sweep.expand(spec):  # what a worker of the local or Ray backend does with each run
    assert backends._train_one('toy', run.config.to_dict()) == {'state': 'done', 'step': 4}  # pylint: disable=protected-access
  loaded = {r.config.learning_rate: r for r in results.load_runs(tmp_path)}
  assert [r.kind for r in loaded.values()] == ['toy', 'toy']
  np.testing.assert_allclose(loaded[0.5].eval_returns, 1 - 0.5 ** np.arange(1, 5))  # the kind's score field
  np.testing.assert_allclose(loaded[0.1].eval_returns[-1], 1 - 0.9**4)
  meta, leaves = checkpoint.load_model(loaded[0.1].path)
  assert meta == {} and float(leaves[0]) == pytest.approx(0.9**4)
  assert not (loaded[0.1].path / 'checkpoint').exists()


def test_a_stopped_run_of_another_kind_resumes_where_it_stopped(toy_kind, tmp_path):
  config = Toy(out=str(tmp_path / 'r'), steps=6)
  _train([dataclasses.replace(config, steps=3)], TrainOptions())  # as if stopped after step 3
  (tmp_path / 'r' / 'summary.json').unlink()
  recorder.write_status(config.out, 'running', 3)
  (tmp_path / 'r' / 'config.json').write_text(config.to_json())
  checkpoint.save(config.out, 3, {'x': np.float64(0.9**3)}, {})
  assert _train([config], TrainOptions(resume=True))[0]['x'] == pytest.approx(0.9**6)
  steps = [r['step'] for r in read_metrics(tmp_path / 'r' / 'metrics.jsonl')]
  assert steps == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize('higher_is_better', [True, False])
def test_best_scores_and_rankings_follow_the_kinds_direction(monkeypatch, tmp_path, higher_is_better):
  monkeypatch.setitem(kinds.KINDS, 'toy', dataclasses.replace(TOY, higher_is_better=higher_is_better))
  _train([Toy(out=str(tmp_path / f'lr{lr}'), learning_rate=lr) for lr in (0.1, 0.5)], TrainOptions())
  groups = results.group_runs(results.load_runs(tmp_path))
  best = {g.params['learning_rate']: g.score('best', normalise=False).mean for g in groups}
  # accuracy 1 − 0.9^t and 1 − 0.5^t for t = 1..4: rising, so the best is the last when higher is better.
  expected = {0.1: 1 - 0.9**4, 0.5: 1 - 0.5**4} if higher_is_better else {0.1: 0.1, 0.5: 0.5}
  assert best == pytest.approx(expected)
  first = results.rank_labels(groups, 'final', normalise=False)[0]
  assert first == ('learning_rate=0.5' if higher_is_better else 'learning_rate=0.1')
  if higher_is_better:
    assert report.score_matrices(results.load_runs(tmp_path), normalise=False).scores
  else:
    with pytest.raises(ValueError, match='better when lower'):
      report.score_matrices(results.load_runs(tmp_path), normalise=False)
