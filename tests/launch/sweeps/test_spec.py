"""Sweep specs: expansion, run names, every validation problem in one error, command-line grids, shipped specs."""

from __future__ import annotations

import itertools
import math
import pathlib
import re
import time

import pytest

from smoothrl.launch.run import config as config_lib
from smoothrl.launch.sweeps import spec as sweep

SPECS = pathlib.Path(__file__).resolve().parents[3] / 'specs'
GAMES = ['minatar/asterix', 'minatar/breakout', 'minatar/seaquest', 'minatar/space_invaders']
ARCHS = {'network.conv_layers': [1, 2, 3], 'network.conv_channels': [24, 24, 32], 'network.hidden': [128, 128, 256]}


def _spec(**overrides):
  data = {
    'name': 'demo',
    'out': 'runs/demo',
    'preset': 'dqn-minatar',
    'base': {'steps': 5000, 'dqn.warmup_steps': 1000},
    'grid': {'method.method': ['none', 'sn'], 'method.layers': [[-2], [-2, -3]], 'seed': [0, 1, 2]},
    'zip': dict(ARCHS),
    'exclude': [{'method.method': 'none', 'method.layers': [-2, -3]}],  # the baseline ignores the layers
  }
  data.update(overrides)
  return data


def _problems(data) -> list[str]:
  with pytest.raises(sweep.SweepError) as info:
    sweep.parse_spec(data, source='test.yaml')
  error = info.value
  assert isinstance(error, config_lib.ConfigError)
  assert str(error).startswith(f'test.yaml: {len(error.problems)} problem')
  assert all(p in str(error) for p in error.problems)
  return list(error.problems)


def _one(problems: list[str], *parts: str) -> str:
  hits = [p for p in problems if all(part in p for part in parts)]
  assert len(hits) == 1, (parts, problems)
  return hits[0]


def test_grid_times_zip_minus_excludes():
  runs = sweep.expand(sweep.parse_spec(_spec()))
  assert len(runs) == 2 * 2 * 3 * 3 - 3 * 3  # 36 minus none x [-2, -3] x 3 seeds x 3 architectures

  got = {
    (
      r.config.method.method,
      r.config.method.layers,
      r.config.seed,
      r.config.network.conv_layers,
      r.config.network.conv_channels,
      r.config.network.hidden,
    )
    for r in runs
  }
  want = {
    (m, layers, s) + a
    for m, layers, s, a in itertools.product(['none', 'sn'], [(-2,), (-2, -3)], [0, 1, 2], zip(*ARCHS.values()))
    if (m, layers) != ('none', (-2, -3))
  }
  assert got == want and len(got) == len(runs)
  for run in runs:
    assert run.config.steps == 5000 and run.config.dqn.warmup_steps == 1000  # base
    assert run.config.dqn.gamma == 0.99 and run.config.dqn.learning_rate == 0.00025  # preset (Table E.1)
    assert dict(run.assignment)['seed'] == run.config.seed
  # Grid fields in spec order, first slowest; the zip rows are the fastest factor.
  assert [(r.config.seed, r.config.network.conv_layers) for r in runs[:4]] == [(0, 1), (0, 2), (0, 3), (1, 1)]
  assert [r.index for r in runs] == list(range(len(runs)))


def test_names_ids_and_run_directories_are_stable_and_safe():
  data = _spec(
    grid={'env': GAMES[:2], 'dqn.learning_rate': [0.00025, 1e-4], 'method.layers': [[-2], [-2, -3]], 'seed': [0, 1]},
    base={'method.method': 'sn'},
    exclude=[],
  )
  runs = sweep.expand(sweep.parse_spec(data))
  again = sweep.expand(sweep.parse_spec(data))
  assert [(r.name, r.run_id, r.out) for r in runs] == [(r.name, r.run_id, r.out) for r in again]
  assert runs[0].name == 'env=asterix,lr=0.00025,layers=-2,conv=1,width=24,fc=128,seed=0'
  assert len({r.name for r in runs}) == len({r.run_id for r in runs}) == len(runs) == 2 * 2 * 2 * 2 * 3
  for run in runs:
    assert re.fullmatch(r'[A-Za-z0-9._+=,~-]+', run.name) and len(run.name) <= 120
    assert run.out == run.config.out == f'runs/demo/runs/{run.name}'
    assert re.fullmatch(r'[0-9a-f]{10}', run.run_id)
  # A change of the base keeps names and ids; a change of the sweep directory moves every run.
  edited = sweep.expand(sweep.parse_spec({**data, 'base': {'method.method': 'sn', 'steps': 7}, 'out': 'elsewhere/'}))
  assert [(r.name, r.run_id) for r in edited] == [(r.name, r.run_id) for r in runs]
  assert edited[0].out == f'elsewhere/runs/{runs[0].name}'


def test_long_names_are_shortened_with_the_id():
  data = {
    'name': 'long',
    'out': 'o',
    'grid': {
      'env': ['minatar/breakout', 'chain/5'],
      'dqn.learning_rate': [1e-4],
      'dqn.adam_eps': [3e-4],
      'dqn.gamma': [0.9],
      'dqn.batch_size': [32],
      'dqn.replay_capacity': [50000],
      'dqn.target_update_period': [4000],
      'dqn.epsilon_decay_steps': [1000],
      'eval_epsilon': [0.001],
      'regulariser.penalty_coef': [0.0],
      'seed': [0],
    },
  }
  runs = sweep.expand(sweep.parse_spec(data))
  assert runs[0].name.startswith('env=minatar-breakout,lr=0.0001,')  # two families: the family stays
  assert all(len(r.name) == 120 and r.name.endswith('~' + r.run_id) for r in runs)


def test_nested_and_dotted_base_are_the_same_spec():
  dotted = _spec(base={'steps': 5000, 'dqn.warmup_steps': 1000, 'dqn.learning_rate': 1e-3, 'method.lipschitz': 2})
  nested = _spec(
    base={'steps': 5000, 'dqn': {'warmup_steps': 1000, 'learning_rate': 1e-3}, 'method': {'lipschitz': 2.0}}
  )
  mixed = _spec(base={'steps': 5000, 'dqn.warmup_steps': 1000, 'dqn': {'learning_rate': 1e-3}, 'method.lipschitz': 2.0})
  specs = [sweep.parse_spec(d) for d in (dotted, nested, mixed)]
  assert specs[0] == specs[1] == specs[2]
  assert [r.config for r in sweep.expand(specs[0])] == [r.config for r in sweep.expand(specs[1])]
  assert specs[0].base_config().method.lipschitz == 2.0 and isinstance(specs[0].base_config().method.lipschitz, float)
  nested_grid = _spec(grid={'method': {'method': ['none', 'sn'], 'layers': [[-2], [-2, -3]]}, 'seed': [0, 1, 2]})
  assert sweep.parse_spec(nested_grid) == sweep.parse_spec(_spec())


def test_to_dict_round_trips():
  spec = sweep.parse_spec(_spec())
  assert sweep.parse_spec(spec.to_dict()) == spec


def test_one_error_lists_every_problem():
  data = {
    'name': 'bad',
    'out': 'runs/bad',
    'preset': 'dqn-minatr',
    'grdi': {},
    'base': {
      'dqn.learnin_rate': 1e-3,
      'steps': 'many',
      'learning_rate': 1e-3,
      'dqn': 3,
      'out': 'x',
      'env': 'minatar/breakout',
    },
    'grid': {
      'env': ['minatar/brekout', 'minatar/asterix'],
      'method.method': ['sn', 'divgrd'],
      'method.layers': [[-2], [-5], -3],
      'seed': [],
      'dqn.learning_rate': [1e-4, -1.0],
      'network.hidden': 64,
    },
    'zip': {'network.conv_layers': [1, 2], 'network.conv_channels': [24]},
    'exclude': [{'seed': 1}, {'dqn.gamma': 0.9}, {'dqn.learning_rate': 0.5}],
  }
  problems = _problems(data)
  _one(problems, "unknown top-level key 'grdi'", "did you mean 'grid'")
  _one(problems, "preset: unknown preset 'dqn-minatr'", "did you mean 'dqn-minatar'")
  _one(problems, 'base.dqn: a config section, not a field', 'learning_rate')
  _one(problems, 'base.steps: expected an integer', "'many'")
  _one(problems, 'base.learning_rate: unknown field', "did you mean 'dqn.learning_rate'")
  _one(problems, 'base.dqn.learnin_rate: unknown field', "did you mean 'dqn.learning_rate'")
  _one(problems, 'base.out: set per run')
  _one(problems, 'env: given in both base and grid')
  _one(problems, "grid.method.method[1]: 'divgrd' is not one of", "did you mean 'divgrad'")
  _one(problems, 'grid.method.layers[2]: expected a list of integers', 'write [-3]')
  _one(problems, 'grid.seed: empty list')
  _one(problems, 'grid.network.hidden: expected a list of values')
  _one(problems, 'zip: lists of different lengths', 'network.conv_layers has 2', 'network.conv_channels has 1')
  _one(problems, 'exclude[1].dqn.gamma: not a grid or zip field')
  _one(problems, 'exclude[2].dqn.learning_rate: 0.5 is not among its values')
  # config.validate on every run, each distinct problem once with its count and an example run.
  env = _one(problems, "unknown environment 'minatar/brekout'")
  # What is left after dropping the bad values: 2 envs x 1 method x 2 layer selections x 2 rates = 8 runs.
  assert env.endswith('(4 of 8 runs, e.g. env=brekout,method=sn,layers=-2,lr=0.0001)')
  _one(problems, 'invalid layer selection [-5]', 'out of range', '(4 of 8 runs, e.g.')
  _one(problems, 'dqn.learning_rate must be positive, got -1.0', '(4 of 8 runs')
  # Each problem once; the nested 'dqn' mapping was replaced by `dqn: 3` in the dict literal above.
  assert len(problems) == len(set(problems)) == 18


def test_unknown_nested_field_suggests_the_closest_name():
  problems = _problems(
    _spec(base={'dqn': {'learnin_rate': 1e-3}, 'network.hiden': 64}, grid={'methd.layers': [[-2]], 'seed': [0]})
  )
  _one(problems, "base.dqn.learnin_rate: unknown field; did you mean 'dqn.learning_rate'?")
  _one(problems, "base.network.hiden: unknown field; did you mean 'network.hidden'?")
  _one(problems, "grid.methd.layers: unknown field; did you mean 'method.layers'?")


def test_repeated_runs_values_and_dead_exclusions():
  # The baseline ignores the layer selection: SN's grid over layers repeats it unless excluded.
  problems = _problems(_spec(exclude=[]))
  repeat = _one(problems, 'runs repeat an earlier run')
  assert repeat.startswith('9 runs repeat') and 'differ only in method.layers' in repeat
  # Layer order does not change a run either; repeated values and rows are named as such.
  problems = _problems(
    _spec(
      grid={'method.method': ['sn'], 'method.layers': [[-2, -3], [-3, -2]], 'seed': [0, 0, 1]},
      exclude=[],
      zip={'network.conv_layers': [1, 1], 'network.hidden': [64, 64]},
    )
  )
  _one(problems, 'grid.seed: repeated values [0]')
  _one(problems, 'zip: repeated rows network.conv_layers=1, network.hidden=64')
  _one(problems, '2 runs repeat an earlier run')
  # An exclusion that removes nothing is a typo somewhere: here no zip row pairs these values.
  problems = _problems(
    _spec(
      exclude=[{'method.method': 'none', 'method.layers': [-2, -3]}, {'network.conv_layers': 1, 'network.hidden': 256}]
    )
  )
  assert problems == ['exclude {network.conv_layers: 1, network.hidden: 256} matches no run']


def test_layer_indices_are_checked_against_each_architecture():
  data = _spec(grid={'method.method': ['sn'], 'method.layers': [[-2, -3, -4]], 'seed': [0]}, exclude=[])
  problems = _problems(data)
  bad = _one(problems, 'invalid layer selection [-2, -3, -4]')
  assert '(1 of 3 runs, e.g. ' in bad and 'conv=1' in bad  # only the one-convolution critic lacks layer -4
  data['exclude'] = [{'network.conv_layers': 1}]
  assert len(sweep.expand(sweep.parse_spec(data))) == 2


def test_missing_and_malformed_sections():
  problems = _problems({'grid': None, 'zip': [1], 'exclude': {'seed': 0}, 'out': 3})
  _one(problems, 'name: missing')
  _one(problems, 'out: expected a directory path')
  _one(problems, 'grid: expected a mapping of fields, got nothing')
  _one(problems, 'zip: expected a mapping of fields')
  _one(problems, 'exclude: expected a list')
  problems = _problems({'name': 'n', 'grid': {'seed': [0, 1]}, 'zip': {'seed': [2, 3], 'dqn.gamma': [0.9, 0.99]}})
  assert problems == ['seed: given in both grid and zip; name each field in one place']
  with pytest.raises(sweep.SweepError, match='expected a mapping with keys'):
    sweep.parse_spec([1, 2])


def test_expand_checks_specs_built_by_hand():
  spec = sweep.SweepSpec(name='x', out='o', grid=(('dqn.learning_rate', (1e-3, -1.0)),))
  with pytest.raises(sweep.SweepError, match=r'must be positive, got -1.0 \(1 of 2 runs'):
    sweep.expand(spec)


def test_yaml_files(tmp_path):
  path = tmp_path / 'spec.yaml'
  path.write_text(
    'name: y\nout: runs/y\nbase:\n  dqn:\n    learning_rate: 3e-4\n  steps: 5e6\n'
    'grid:\n  dqn.adam_eps: [1e-5, 1.0e-4]\n  seed: [0, 1]\n'
  )
  spec = sweep.load_spec(path)
  assert spec.source == str(path)
  runs = sweep.expand(spec)
  assert [r.config.dqn.adam_eps for r in runs] == [1e-5, 1e-5, 1e-4, 1e-4]  # YAML 1.2 numbers, not strings
  assert runs[0].config.dqn.learning_rate == 3e-4 and runs[0].config.steps == 5_000_000

  path.write_text('name: y\ngrid:\n  seed: [0]\n  seed: [1]\nbase: {steps: 10, steps: 20}\n')
  with pytest.raises(sweep.SweepError) as info:
    sweep.load_spec(path)
  assert [p for p in info.value.problems if 'given twice' in p] == [
    "line 4: key 'seed' is given twice in one mapping",
    "line 5: key 'steps' is given twice in one mapping",
  ]

  path.write_text('name: y\ngrid: [unclosed\n')
  with pytest.raises(sweep.SweepError, match='not valid YAML'):
    sweep.load_spec(path)


def test_read_value():
  assert [sweep.read_value(t) for t in ('1e-5', '5000', 'sn', '[-2, -3]', 'true')] == [1e-5, 5000, 'sn', [-2, -3], True]


def test_grid_from_args():
  base = config_lib.replace(config_lib.preset('dqn-minatar'), steps=2000, env='minatar/seaquest', out='runs/cli')
  spec = sweep.grid_from_args(
    base, ['dqn.learning_rate=1e-4,3e-4', 'method.method=sn,divgrad', 'seed=0-4', 'method.layers=-2;-2,-3']
  )
  assert (spec.name, spec.out) == ('cli', 'runs/cli')
  assert dict(spec.grid) == {
    'dqn.learning_rate': (1e-4, 3e-4),
    'method.method': ('sn', 'divgrad'),
    'seed': (0, 1, 2, 3, 4),
    'method.layers': ((-2,), (-2, -3)),
  }
  runs = sweep.expand(spec)
  assert len(runs) == 2 * 2 * 5 * 2
  assert all(r.config.steps == 2000 and r.config.env == 'minatar/seaquest' for r in runs)
  assert runs[0].out == 'runs/cli/runs/lr=0.0001,method=sn,layers=-2,seed=0'

  sn = config_lib.replace(config_lib.TrainConfig(), **{'method.method': 'sn'})
  spec = sweep.grid_from_args(
    sn, ['regulariser.batch_norm=true,false', 'seed=3', 'method.lipschitz=1,2.5', 'steps=1e4'], name='g', out='o'
  )
  assert dict(spec.grid) == {
    'regulariser.batch_norm': (True, False),
    'seed': (3,),
    'method.lipschitz': (1.0, 2.5),
    'steps': (10000,),
  }

  with pytest.raises(sweep.SweepError) as info:
    sweep.grid_from_args(
      config_lib.TrainConfig(),
      [
        'seed=a',
        'nonsense',
        'dqn.learnin_rate=1',
        'method.layers=-2;x',
        'seed=1',
        'network.conv_layers=4-2',
        'dqn.gamma=',
      ],
    )
  problems = info.value.problems
  assert info.value.source == 'command-line grid'
  _one(problems, "grid.seed[0]: expected an integer, got 'a'")
  _one(problems, "'nonsense': expected FIELD=VALUES")
  _one(problems, "grid.dqn.learnin_rate: unknown field; did you mean 'dqn.learning_rate'?")
  _one(problems, "grid.method.layers[1]: expected a list of integers such as [-2, -3], got 'x'")
  _one(problems, 'seed: assigned twice')
  _one(problems, "grid.network.conv_layers[0]: expected an integer, got '4-2'")
  _one(problems, 'dqn.gamma: no values')
  assert 'seed=0-4' in sweep.GRID_SYNTAX and "'method.layers=-2;-2,-3'" in sweep.GRID_SYNTAX


# The shipped specs: each loads, validates and has the run count of the grid it documents.


def _log_spaced(values, step):
  return all(math.isclose(math.log10(b) - math.log10(a), step, abs_tol=2e-3) for a, b in zip(values, values[1:]))


def test_every_shipped_spec_is_tested():
  assert sorted(p.name for p in SPECS.glob('*.yaml')) == sorted(
    [
      'smoke.yaml',
      'fig7_2b_minatar_sn.yaml',
      'fig7_4_sensitivity.yaml',
      'fig7_5_divgrad_muleps.yaml',
      'figE3_lipschitz.yaml',
    ]
  )
  for path in SPECS.glob('*.yaml'):
    assert path.read_text().startswith('#'), f'{path.name} needs its comment header'


def test_smoke_spec():
  spec = sweep.load_spec(SPECS / 'smoke.yaml')
  runs = sweep.expand(spec)
  assert len(runs) == 2 * 2 * 2  # methods x learning rates x seeds
  config = runs[0].config
  assert (config.env, config.steps, config.eval_period, config.eval_steps) == ('minatar/breakout', 5000, 2500, 1000)
  assert (config.dqn.warmup_steps, config.log_period, config.sigma_log_period) == (1000, 500, 2500)
  assert {r.config.method.method for r in runs} == {'none', 'sn'}


def test_fig7_2b_spec():
  spec = sweep.load_spec(SPECS / 'fig7_2b_minatar_sn.yaml')
  grid = dict(spec.grid)
  assert list(grid['env']) == GAMES and grid['seed'] == tuple(range(10))
  runs = sweep.expand(spec)
  assert len(runs) == len(GAMES) * (1 + len(grid['method.layers'])) * 10
  assert all(r.config.steps == 15_000_000 for r in runs)
  assert {r.config.network for r in runs} == {config_lib.TrainConfig().network}  # Table E.3
  assert {r.config.method.layers for r in runs if r.config.method.method == 'sn'} == {(-2,), (-3,), (-2, -3)}


def test_fig7_4_spec():
  spec = sweep.load_spec(SPECS / 'fig7_4_sensitivity.yaml')
  grid, zipped = dict(spec.grid), dict(spec.zipped)
  lrs, eps = grid['dqn.learning_rate'], grid['dqn.adam_eps']
  assert (lrs[0], round(lrs[-1], 5), eps[0], eps[-1]) == (1e-5, 0.00215, 1e-5, 0.01)  # the printed end points
  assert _log_spaced(lrs, 1 / 3) and _log_spaced(eps, 1 / 2)
  archs = list(zip(zipped['network.conv_layers'], zipped['network.conv_channels'], zipped['network.hidden']))
  assert archs == [(1, 24, 128), (2, 24, 128), (3, 24, 128), (4, 24, 128), (2, 32, 256), (3, 32, 256)]  # Table E.6
  runs = sweep.expand(spec)
  assert len(runs) == len(GAMES) * 2 * len(lrs) * len(eps) * len(grid['seed']) * len(archs) == 5376
  assert {(r.config.method.method, r.config.method.layers) for r in runs} == {('none', (-2,)), ('sn', (-2,))}


def test_fig7_5_spec():
  spec = sweep.load_spec(SPECS / 'fig7_5_divgrad_muleps.yaml')
  grid, zipped = dict(spec.grid), dict(spec.zipped)
  assert set(grid['method.method']) == {'none', 'sn', 'divout', 'divgrad', 'muleps'}
  archs = list(zip(zipped['network.conv_layers'], zipped['network.conv_channels'], zipped['network.hidden']))
  assert archs == [(1, 24, 128), (2, 24, 128), (1, 32, 256), (2, 32, 256)]  # Table E.6, optimisation methods
  subsets = grid['method.layers']
  per_arch = [1 + 4 * sum(len(s) <= conv + 1 for s in subsets) for conv, _, _ in archs]  # baseline + methods
  runs = sweep.expand(spec)
  assert len(runs) == len(GAMES) * len(grid['seed']) * sum(per_arch) == 2400
  all_hidden = [r for r in runs if r.config.method.layers == (-2, -3, -4) and r.config.method.method != 'none']
  assert all_hidden and {r.config.network.conv_layers for r in all_hidden} == {2}


def test_figE3_spec():
  spec = sweep.load_spec(SPECS / 'figE3_lipschitz.yaml')
  grid = dict(spec.grid)
  runs = sweep.expand(spec)
  assert len(runs) == len(GAMES) * (1 + len(grid['method.lipschitz'])) * len(grid['seed']) == 160
  sn = [r.config.method for r in runs if r.config.method.method == 'sn']
  assert {m.layers for m in sn} == {(-2, -3, -4)} and {m.lipschitz for m in sn} == {1.0, 2.0, 10.0}
  assert {r.config.network for r in runs} == {config_lib.TrainConfig().network}  # Table E.3: all but the output


# Bad input: files that are no specs, values of the wrong kind, sweeps too large to hold.


@pytest.mark.parametrize(
  'name, content, problem',
  [
    ('missing.yaml', None, 'no such file'),
    ('adir', 'directory', 'is a directory, not a spec file'),
    ('random.yaml', bytes(range(128, 256)) * 4, 'not a text file (UTF-8)'),
    ('image.png', b'\x89PNG\r\n\x1a\n' + bytes(range(256)), 'not a text file (UTF-8)'),
    ('control.yaml', b'name: \x07\x00\n', 'not valid YAML'),
    ('empty.yaml', b'', 'the file is empty'),
    ('comments.yaml', b'# nothing but a comment\n', 'the file is empty'),
    ('list.yaml', b'[1, 2]', 'expected a mapping with keys name, kind, out'),
    ('words.yaml', b'just words', 'got str'),
    ('deep.yaml', b'[' * 5000, 'nested too deeply'),
  ],
)
def test_files_that_are_no_specs(tmp_path, name, content, problem):
  path = tmp_path / name
  if content == 'directory':
    path.mkdir()
  elif content is not None:
    path.write_bytes(content)
  with pytest.raises(sweep.SweepError) as info:
    sweep.load_spec(path)
  assert info.value.source == str(path) and len(info.value.problems) == 1
  assert problem in info.value.problems[0]


def test_values_of_the_wrong_kind_are_problems_not_crashes():
  _one(_problems({'name': 'n', 'kind': ['rl']}), "kind: unknown run kind ['rl']")
  _one(_problems({'name': 'n', 'preset': {'a': 1}, 'grid': {'seed': [0]}}), "preset: unknown preset {'a': 1}")
  _one(_problems({'name': 'n\n', 'grid': {'seed': [0]}}), 'name: expected a name of letters')
  _one(_problems({'name': 'n', 'out': 'a\0b', 'grid': {'seed': [0]}}), 'out: expected a directory path')
  problems = _problems({'name': 'n', 'base': {'dqn.gamma': 10**400}, 'grid': {'seed': [-1, 0, 2**32]}})
  _one(problems, 'base.dqn.gamma: expected a number, got 1000')
  _one(problems, 'seed must be an integer from 0 to 4,293,967,292', 'got -1 (1 of 3 runs')
  _one(problems, 'seed must be an integer from 0 to 4,293,967,292', 'got 4294967296 (1 of 3 runs')
  # A depth that would build a billion layer names is refused as a number, before anything is built.
  problems = _problems({'name': 'n', 'base': {'network.conv_layers': 10**9}, 'grid': {'seed': [0]}})
  _one(problems, 'network.conv_layers must be in [0, 64], got 1000000000')


def test_many_bad_values_are_listed_once_each_up_to_a_few():
  problems = _problems({'name': 'n', 'grid': {'seed': [f'x{i}' for i in range(10_000)]}})
  assert len(problems) == sweep._LISTED + 1
  assert problems[-1] == 'grid.seed: 9,995 more values that are not an integer'


def _timed_refusal(call) -> str:
  start = time.perf_counter()
  with pytest.raises(sweep.SweepError) as info:
    call()
  assert time.perf_counter() - start < 2.0
  return str(info.value)


def test_a_sweep_of_a_hundred_million_runs_is_refused_at_once(tmp_path):
  rates = [(i + 1) * 1e-7 for i in range(10_000)]
  grid = ['seed=0-9999', 'dqn.learning_rate=' + ','.join(f'{r:.7g}' for r in rates)]
  message = _timed_refusal(lambda: sweep.grid_from_args(config_lib.TrainConfig(), grid))
  assert 'the sweep has 100,000,000 runs, more than the 1,000,000 one sweep may hold' in message
  # One range alone larger than a sweep is refused without building it.
  message = _timed_refusal(lambda: sweep.grid_from_args(config_lib.TrainConfig(), ['seed=0-999999999999']))
  assert 'seed=0-999999999999: 1,000,000,000,000 values, more than the 1,000,000 runs' in message
  path = tmp_path / 'huge.yaml'
  path.write_text(f'name: huge\ngrid:\n  seed: {list(range(10_000))}\n  dqn.learning_rate: {rates}\n')
  message = _timed_refusal(lambda: sweep.load_spec(path))
  assert 'the sweep has 100,000,000 runs' in message


def test_the_out_of_a_spec_file_can_be_overridden(tmp_path):
  path = tmp_path / 'spec.yaml'
  path.write_text('name: y\nout: runs/y\ngrid:\n  seed: [0, 1]\n')
  assert sweep.load_spec(path).out == 'runs/y'
  spec = sweep.load_spec(path, out=str(tmp_path / 'elsewhere/'))
  assert spec.out == str(tmp_path / 'elsewhere') and spec.name == 'y'
  assert all(r.out.startswith(f'{tmp_path}/elsewhere/runs/') for r in sweep.expand(spec))
  with pytest.raises(sweep.SweepError, match='out: expected a directory path'):
    sweep.load_spec(path, out='')


def test_grid_from_args_with_fixed_fields():
  spec = sweep.grid_from_args(
    config_lib.TrainConfig(), ['seed=0-1'], out='o', fixed={'steps': 5000, 'dqn': {'learning_rate': 1e-3}}
  )
  assert spec.base_config().steps == 5000 and spec.base_config().dqn.learning_rate == 1e-3
  with pytest.raises(sweep.SweepError) as info:
    sweep.grid_from_args(
      config_lib.TrainConfig(), ['seed=0-1'], out='o', fixed={'dqn': 3, 'stepz': 1, 'out': 'x', 'seed': 2}
    )
  problems = info.value.problems
  _one(problems, 'base.dqn: a config section, not a field')
  _one(problems, "base.stepz: unknown field; did you mean 'steps'?")
  _one(problems, 'base.out: set per run')
  _one(problems, 'seed: given in both base and grid')
