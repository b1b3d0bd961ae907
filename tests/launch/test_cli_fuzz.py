"""Bad input of every kind ends in a one-line `smoothrl: ...` error and exit status 2, with nothing written."""

from __future__ import annotations

import json
import os
import random
import re

import pytest

from smoothrl.launch import cli
from smoothrl.launch.run import config as config_lib
from smoothrl.launch.sweeps import backends
from smoothrl.launch.sweeps import spec as sweep

_SPEC = 'name: s\nout: sweep\nbase: {env: chain/4, steps: 100, network.conv_layers: 0}\ngrid: {seed: [0, 1]}\n'
_LEARNING_RATES = ','.join(f'{(i + 1) * 1e-7:.7g}' for i in range(10_000))

# (arguments, files written first: name -> text or bytes; a name ending in '/' is a directory)
CASES = [
  (['--bogus'], {}),
  (['train', '--bogus'], {}),
  (['train', '--steps', 'abc'], {}),
  (['train', '--steps', '0'], {}),
  (['train', '--steps', '0', '--method', 'weird', '--gamma', '2'], {}),  # several problems in one error
  (['train', '--layers', 'x'], {}),
  (['train', '--layers'], {}),
  (['train', '--env', 'nope/x'], {}),
  (['train', '--preset', 'nope'], {}),
  (['train', '--seed', '-1'], {}),
  (['train', '--seed', str(2**32)], {}),
  (['train', '--seeds', '3-1'], {}),
  (['train', '--seeds', '0,0'], {}),
  (['train', '--seeds', '0-999999999'], {}),
  (['train', '--tensorboard', 'maybe'], {}),
  (['train', '--workers', '-3'], {}),
  (['train', '--members-per-program', '0'], {}),
  (['train', '--out', 'file'], {'file': 'x'}),
  (['train', '--out', 'file/sub'], {'file': 'x'}),
  (['train', '--out', ''], {}),
  (['train', '--resume', 'missing'], {}),
  (['train', '--resume', 'file'], {'file': 'x'}),
  (['train', '--resume', 'run'], {'run/config.json': '{garbage'}),
  (['train', '--resume', 'run'], {'run/config.json': '[1, 2]'}),
  (['train', '--resume', 'run'], {'run/config.json': '{"steps": "many", "eval_period": "x"}'}),
  (['train', '--resume', 'run'], {'run/config.json': b'\x89PNG\r\n\x1a\n\xff\xfe'}),
  (['train', '--resume', 'run'], {'run/config.json/': None}),
  (['sweep'], {}),
  (['sweep', 'missing.yaml'], {}),
  (['sweep', 'adir'], {'adir/': None}),
  (['sweep', 'random.yaml'], {'random.yaml': random.Random(0).randbytes(512)}),
  (['sweep', 'image.png'], {'image.png': b'\x89PNG\r\n\x1a\n' + bytes(range(256))}),
  (['sweep', 'empty.yaml'], {'empty.yaml': ''}),
  (['sweep', 'list.yaml'], {'list.yaml': '[1, 2]'}),
  (['sweep', 'text.yaml'], {'text.yaml': 'just some words'}),
  (['sweep', 'bad.yaml'], {'bad.yaml': 'grid: [unclosed\n'}),
  (['sweep', 'deep.yaml'], {'deep.yaml': '[' * 5000}),
  (['sweep', 'unknown.yaml'], {'unknown.yaml': 'name: s\ngird: {seed: [0]}\nbase: {stpes: 3}\n'}),
  (['sweep', 'types.yaml'], {'types.yaml': 'name: [1]\nkind: [rl]\npreset: {a: 1}\nout: 3\ngrid: 7\n'}),
  (
    ['sweep', 'values.yaml'],
    {
      'values.yaml': 'name: s\ngrid: {seed: [-1, 1e400], dqn.learning_rate: [1e999999]}\n'
      'base: {dqn.gamma: 10000000000000000000000000000000000000000000000'
      '0000000000000000000000000000000000000000000000000000000000000000000'
      '00000000000000000000000000000000000000000000000000000000000000000000'
      '00000000000000000000000000000000000000000000000000000000000000000000'
      '000000000000000000000000000000000000000000000000000000000000000000}'
      '\n'
    },
  ),
  (['sweep', 'huge.yaml'], {'huge.yaml': 'name: s\nbase: {network.conv_layers: 100000000000}\ngrid: {seed: [0]}\n'}),
  (['sweep', 'outfile.yaml'], {'outfile.yaml': _SPEC, 'sweep': 'a file'}),
  (['sweep', 'under.yaml', '--out', 'file/sub'], {'under.yaml': _SPEC, 'file': 'x'}),
  (['sweep', 's.yaml', '--grid', 'seed=0-1'], {'s.yaml': _SPEC}),
  (['sweep', 's.yaml', '--set', 'steps=5'], {'s.yaml': _SPEC}),
  (['sweep', 's.yaml', '--preset', 'minatar-quick'], {'s.yaml': _SPEC}),
  (['sweep', 's.yaml', '--backend', 'slurm'], {'s.yaml': _SPEC}),
  (['sweep', 's.yaml', '--gpus-per-run', '1'], {'s.yaml': _SPEC}),
  (['sweep', 's.yaml', '--backend', 'ray', '--gpus-per-run', '-1'], {'s.yaml': _SPEC}),
  (['sweep', 's.yaml', '--backend', 'ray', '--cpus-per-run', 'nan'], {'s.yaml': _SPEC}),
  (['sweep', '--grid', 'a='], {}),
  (['sweep', '--grid', '=1'], {}),
  (['sweep', '--grid', 'seed=0', '--set', 'steps'], {}),
  (['sweep', '--grid', 'seed=0', '--set', 'dqn=3'], {}),
  (['sweep', '--grid', 'seed=0', '--set', 'stepz=3'], {}),
  (['sweep', '--grid', 'seed=0', '--set', 'out=elsewhere'], {}),
  (['sweep', '--grid', 'seed=0', '--preset', 'nope'], {}),
  (['sweep', '--grid', 'seed=0', '--workers', '-3', '--set', 'steps=10'], {}),
  (['sweep', '--grid', 'seed=0', '--members-per-program', '0'], {}),
  (['sweep', '--grid', 'seed=0-999999999'], {}),
  (['sweep', '--grid', 'seed=0-9999', '--grid', f'dqn.learning_rate={_LEARNING_RATES}'], {}),
  (['sweep', '--grid', 'seed=0', '--backend', 'compiled', '--set', 'steps=1001'], {}),
  (['summary', 'missing'], {}),
  (['plot', 'missing'], {}),
]

_LAST_LINE = re.compile(r'^(smoothrl: |smoothrl \w+: error: |usage: )')


def _tree(root) -> list[str]:
  return sorted(
    os.path.relpath(os.path.join(d, name), root) for d, dirs, files in os.walk(root) for name in dirs + files
  )


@pytest.fixture
def no_work(monkeypatch):
  """Training and sweep execution fail the test if reached: every case must be refused before."""

  def reached(*args, **kwargs):
    raise AssertionError('bad input reached training')

  monkeypatch.setattr(cli.rl, 'train', reached)
  monkeypatch.setattr(backends, '_run_pool', reached)
  monkeypatch.setattr(backends, '_run_compiled', reached)


@pytest.mark.parametrize('argv, files', CASES, ids=[' '.join(a)[:60] for a, _ in CASES])
def test_bad_input_is_refused_with_nothing_written(tmp_path, monkeypatch, capsys, no_work, argv, files):
  monkeypatch.chdir(tmp_path)
  for name, content in files.items():
    path = tmp_path / name
    if name.endswith('/'):
      path.mkdir(parents=True)
      continue
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
      path.write_bytes(content)
    else:
      path.write_text(content)
  before = _tree(tmp_path)
  try:
    code = cli.main(argv)
  except SystemExit as e:  # argparse's own errors
    code = e.code
  err = capsys.readouterr().err
  assert code == 2, err
  assert 'Traceback' not in err
  lines = err.strip().splitlines()
  assert lines and _LAST_LINE.match(lines[-1]), err
  assert _tree(tmp_path) == before


def _random_value(rng: random.Random, depth: int, keys: list[str]):
  kind = rng.choice(
    ['mapping', 'list', 'str', 'int', 'float', 'none', 'bool', 'key']
    if depth < 4
    else ['str', 'int', 'float', 'none', 'bool', 'key']
  )
  if kind == 'mapping':
    return {_random_key(rng, keys): _random_value(rng, depth + 1, keys) for _ in range(rng.randint(0, 4))}
  if kind == 'list':
    return [_random_value(rng, depth + 1, keys) for _ in range(rng.randint(0, 3))]
  if kind == 'str':
    return rng.choice(['', 'sn', 'none', 'minatar/breakout', 'chain/4', 'x' * 200, '-2', 'a/b', '\0', '\n', 'rl'])
  if kind == 'int':
    return rng.choice([0, 1, -1, 2, 3, 10**400, -(10**20), 2**32, 10**12])
  if kind == 'float':
    return rng.choice([0.5, -0.0, 1e-4, float('nan'), float('inf'), -1e300, 1e300])
  if kind == 'bool':
    return rng.random() < 0.5
  if kind == 'key':
    return rng.choice(keys)
  return None


def _random_key(rng: random.Random, keys: list[str]):
  return rng.choice(keys + [1, None, True, 2.5, 'unknown', 'dqn', 'network'])


def test_parse_spec_only_ever_raises_sweep_errors():
  rng = random.Random(20240601)
  fields = list(sweep.fields(config_lib.TrainConfig))
  top = list(sweep.TOP_LEVEL_KEYS)
  parsed = 0
  for case in range(1500):
    if case % 3 == 0:  # anything
      data = _random_value(rng, 0, top + fields)
    elif case % 3 == 1:  # valid keys, random values
      data = {key: _random_value(rng, 1, fields) for key in rng.sample(top, rng.randint(1, len(top)))}
      for section in ('base', 'grid', 'zip', 'exclude'):
        if rng.random() < 0.5:
          data[section] = {rng.choice(fields): _random_value(rng, 2, fields) for _ in range(rng.randint(1, 3))}
    else:  # a valid spec with one field's value or values replaced
      data = {
        'name': 'f',
        'out': 'o',
        'base': {'env': 'chain/4', 'network.conv_layers': 0, 'steps': 100},
        'grid': {'seed': [0, 1]},
      }
      field = rng.choice(fields)
      if rng.random() < 0.5:
        data['base'][field] = _random_value(rng, 3, fields)
      else:
        data['grid'][field] = [_random_value(rng, 3, fields) for _ in range(rng.randint(1, 3))]
    try:
      spec = sweep.parse_spec(data)
    except config_lib.ConfigError:
      continue
    except Exception as e:  # pylint: disable=broad-except
      pytest.fail(f'{type(e).__name__}: {e} for {json.dumps(data, default=repr)[:2000]}')
    assert isinstance(spec, sweep.SweepSpec)
    parsed += 1
  assert parsed > 0  # some random specs are valid ones
