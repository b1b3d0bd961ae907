"""Flow runs on the shared platform: records against hand-computed flows on quadratics, validation before work, the
trajectories file, the networks, failures, resume, sweeps, summaries and plots of their directories."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from smoothrl.launch import cli, kinds
from smoothrl.launch.run import config as config_lib
from smoothrl.launch.run import flows, recorder
from smoothrl.launch.run.files import read_metrics
from smoothrl.launch.run.kind import TrainOptions
from smoothrl.launch.sweeps import backends
from smoothrl.launch.sweeps import spec as sweep

OPTIONS = TrainOptions(show_progress=False)


def _config(out, **fields):
  return config_lib.replace(flows.FlowConfig(out=str(out)), **fields)


def _evals(out):
  return [r for r in read_metrics(out / 'metrics.jsonl') if r['kind'] == 'eval']


@pytest.fixture(scope='module')
def square_run(tmp_path_factory):
  """½z² from z_0 = 1 at h = 1.5 for 4 steps, every flow in closed form."""
  out = tmp_path_factory.mktemp('square')
  config = _config(
    out,
    h=1.5,
    steps=4,
    flows=('ngf', 'igr', 'third', 'pf', 'pf+third'),
    **{'problem.name': 'square', 'integrator.method': 'closed_form', 'integrator.samples': 4},
  )
  flows.validate(config)
  summary = flows.train([config], OPTIONS)[0]
  return config, summary


def test_a_closed_form_run_records_every_flow_against_gd(square_run):
  config, summary = square_run
  out = config.out
  records = _evals(Path(out))
  assert [r['step'] for r in records] == [0, 1, 2, 3, 4]
  h = 1.5
  gd = [(1 - h) ** n for n in range(5)]  # (−0.5)^n
  for n, r in enumerate(records):
    assert r['loss_gd'] == pytest.approx(0.5 * gd[n] ** 2, abs=1e-15)
    assert r['lambda_0'] == pytest.approx(1.0) and r['h_lambda_0'] == pytest.approx(h)
    assert r['t'] == pytest.approx(n * h)
    # NGF: z(t) = e^{−t}; IGR: e^{−(1 + h/2)t}; third: e^{−(1 + h/2 + h²/3)t} (λ = 1).
    for flow, rate in (('ngf', 1.0), ('igr', 1 + h / 2), ('third', 1 + h / 2 + h**2 / 3)):
      assert r[f'global_error_{flow}'] == pytest.approx(abs(math.exp(-rate * n * h) - gd[n]), rel=1e-9, abs=1e-15)
      if n:
        assert r[f'per_iteration_error_{flow}'] == pytest.approx(abs(gd[n - 1]) * abs(math.exp(-rate * h) - (1 - h)))
      assert r[f'imag_norm_{flow}'] == 0.0
    # The PF is GD at every iterate: z(t) = (1 − h)^{t/h}, real at t = nh.
    for flow in ('pf', 'pf+third'):
      assert r[f'global_error_{flow}'] < 1e-12 and r[f'loss_{flow}'] == pytest.approx(r['loss_gd'], abs=1e-12)
  assert summary['global_error']['pf'] < 1e-12 and summary['h_lambda_0'] == pytest.approx(1.5)
  assert summary['max_per_iteration_error']['ngf'] == pytest.approx(abs(math.exp(-h) + 0.5))
  assert recorder.read_status(out) == {'state': 'done', 'step': 4}
  assert json.loads((Path(out) / 'run.json').read_text()) == {'kind': 'flow'}


def test_the_trajectories_file_holds_plain_arrays_of_every_path(square_run):
  config, _ = square_run
  with np.load(Path(config.out) / flows.TRAJECTORIES_FILE, allow_pickle=False) as f:
    assert all(f[k].dtype.kind == 'f' for k in f.files)  # real and imaginary parts apart, no objects
  traj = flows.load_trajectories(config.out)
  np.testing.assert_allclose(traj['ts'], 1.5 * np.arange(5))
  np.testing.assert_allclose(traj['path_ts'], 1.5 * np.arange(17) / 4)
  np.testing.assert_allclose(traj['gd'][:, 0], (-0.5) ** np.arange(5))
  z = traj['pf/path'][:, 0]
  np.testing.assert_allclose(z, (-0.5 + 0j) ** (traj['path_ts'] / 1.5), atol=1e-12)  # the complex oscillation
  assert np.max(np.abs(np.imag(z))) > 0.1
  assert traj['pf/one_step'].shape == (4, 1) and traj['ngf/iterates'].shape == (5, 1)
  np.testing.assert_allclose(traj['ngf/one_step'][:, 0], np.exp(-1.5) * traj['gd'][:-1, 0])


def test_diffrax_and_euler_runs_follow_the_closed_forms(tmp_path):
  h = 0.8
  diffrax_run = _config(tmp_path / 'd', h=h, steps=2, flows=('ngf',), **{'problem.name': 'square'})
  euler_run = _config(
    tmp_path / 'e',
    h=1.5,
    steps=2,
    flows=('pf',),
    complex=False,
    **{'problem.name': 'square', 'integrator.method': 'euler', 'integrator.dt': 1.5 / 400, 'integrator.samples': 2},
  )
  for c in (diffrax_run, euler_run):
    flows.validate(c)
  flows.train([diffrax_run, euler_run], OPTIONS)
  d = _evals(tmp_path / 'd')
  assert d[2]['global_error_ngf'] == pytest.approx(abs(math.exp(-2 * h) - (1 - h) ** 2), rel=1e-7)
  # complex=false: the real part of α_PF(1.5) = (log 0.5 + iπ)/1.5, so z(t) = 0.5^{t/h}: GD's magnitude without its
  # sign flips, 2 · 0.5 apart after one step, on the real line.
  e = _evals(tmp_path / 'e')
  assert e[1]['global_error_pf'] == pytest.approx(1.0, rel=1e-2) and e[2]['global_error_pf'] == pytest.approx(
    0, abs=1e-2
  )
  assert e[2]['imag_norm_pf'] == 0.0


def test_every_problem_of_a_config_is_listed_before_any_work(tmp_path):
  bad = _config(
    tmp_path / 'bad',
    h=-1.0,
    steps=0,
    flows=('ngf', 'adam'),
    **{'problem.name': 'banana', 'integrator.method': 'rk4', 'integrator.samples': 0},
  )
  with pytest.raises(config_lib.ConfigError) as e:
    flows.validate(bad)
  for word in ('h must be', 'steps must be', "'adam'", "'banana'", "'rk4'", 'samples'):
    assert word in str(e.value)
  assert not (tmp_path / 'bad').exists()
  with pytest.raises(config_lib.ConfigError, match='closed_form is for the quadratics'):
    flows.validate(_config(tmp_path, **{'problem.name': 'rosenbrock', 'integrator.method': 'closed_form'}))
  with pytest.raises(config_lib.ConfigError, match='problem.start applies to the toy problems'):
    flows.validate(_config(tmp_path, **{'problem.name': 'mlp', 'problem.start': (1.0,)}))
  with pytest.raises(config_lib.ConfigError, match='symmetric'):
    flows.validate(_config(tmp_path, **{'problem.matrix': (1.0, 2.0, 0.0, 1.0)}))


def test_a_complex_pf_on_a_loss_that_is_not_holomorphic_is_refused_with_the_reason(tmp_path):
  config = _config(tmp_path, h=0.5, flows=('ngf', 'pf'), **{'problem.name': 'cos'})
  with pytest.raises(config_lib.ConfigError, match=r'need a holomorphic loss.*not holomorphic.*lt') as e:
    flows.validate(config)
  assert 'complex=false' in str(e.value)
  flows.validate(config_lib.replace(config, complex=False))  # the real part of the field: accepted
  flows.validate(config_lib.replace(config, flows=('ngf', 'igr')))  # no principal flow: nothing complex


def test_a_singular_pf_field_asks_for_the_closed_form(tmp_path):
  config = _config(tmp_path, h=0.5, **{'problem.name': 'quadratic'})  # hλ_0 = 2 · 0.5 = 1
  with pytest.raises(config_lib.ConfigError, match='hλ = 1.*closed_form'):
    flows.validate(config)
  flows.validate(config_lib.replace(config, **{'integrator.method': 'closed_form'}))


def _forward(params, x):
  x = x.astype(jnp.float32).astype(jnp.float64)  # the model reads its inputs in float32
  return jnp.tanh(x @ params['hidden_0']['w'] + params['hidden_0']['b']) @ params['out']['w'] + params['out']['b']


def test_the_mlp_of_figure_3_9_is_its_mean_squared_error():
  with jax.enable_x64(True):
    mlp = flows.build_problem(flows.FlowConfig(seed=3, problem=flows.ProblemConfig(name='mlp')))
    assert mlp.size == 2 * 10 + 10 + 10 + 1
    x, y = mlp.args
    assert x.shape == (5, 2) and y.shape == (5, 1) and x.dtype == jnp.float64
    f = _forward(mlp.params, x)
    assert float(mlp.loss(mlp.params, x, y)) == pytest.approx(float(jnp.mean((f - y) ** 2)), rel=1e-12)


@pytest.mark.slow
def test_the_breast_cancer_mlp_is_its_binary_cross_entropy_and_holomorphic():
  config = flows.FlowConfig(seed=1, problem=flows.ProblemConfig(name='breast_cancer', num_points=40))
  with jax.enable_x64(True):
    cancer = flows.build_problem(config)
    assert cancer.size == 30 * 10 + 10 + 10 + 1
    x, y = cancer.args
    assert x.shape == (40, 30) and set(np.unique(y)) == {0.0, 1.0}
    f = _forward(cancer.params, x)
    bce = -jnp.mean(y * jnp.log(jax.nn.sigmoid(f)) + (1 - y) * jnp.log(1 - jax.nn.sigmoid(f)))
    assert float(cancer.loss(cancer.params, x, y)) == pytest.approx(float(bce), rel=1e-10)
  flows.validate(config)  # holomorphic: the complex PF is allowed


@pytest.mark.slow
def test_a_diverging_gd_stops_the_run_with_its_reason(tmp_path):
  config = _config(
    tmp_path,
    h=3.0,
    steps=600,
    flows=('ngf',),
    **{'problem.name': 'square', 'integrator.method': 'closed_form', 'integrator.samples': 1},
  )
  summary = flows.train([config], OPTIONS)[0]
  assert summary['state'] == 'failed' and 'non-finite loss' in summary['error']
  assert recorder.read_status(tmp_path)['state'] == 'failed'


def test_resume_skips_a_finished_run_and_refuses_another_config(square_run):
  config, summary = square_run
  assert flows.train([config], TrainOptions(show_progress=False, resume=True))[0] == summary
  with pytest.raises(config_lib.ConfigError, match='different config'):
    flows.train([config_lib.replace(config, h=0.7)], TrainOptions(show_progress=False, resume=True))


def test_sweeps_summaries_and_plots_read_flow_runs(tmp_path, capsys):
  assert kinds.get('flow') is flows.KIND
  spec = sweep.parse_spec(
    {
      'name': 'squares',
      'kind': 'flow',
      'out': str(tmp_path),
      'base': {'problem.name': 'square', 'integrator.method': 'closed_form', 'steps': 2, 'integrator.samples': 2},
      'grid': {'h': [0.5, 1.5]},
    }
  )
  runs = sweep.expand(spec)
  assert [r.config.h for r in runs] == [0.5, 1.5]
  with pytest.raises(sweep.SweepError, match="did you mean 'h'"):
    sweep.parse_spec({'name': 's', 'kind': 'flow', 'grid': {'hh': [0.1]}})
  for run in runs:  # what a worker of the local backend does with each run
    assert backends._train_one('flow', run.config.to_dict()) == {'state': 'done', 'step': 2}  # pylint: disable=protected-access
  assert cli.main(['summary', str(tmp_path)]) == 0
  assert 'flow/square' in capsys.readouterr().out


@pytest.mark.slow
def test_a_flow_sweep_runs_from_the_command_line_and_plots(tmp_path):
  args = ['--kind', 'flow', '--grid', 'h=0.8,1.5', '--set', 'problem.name=square', '--set', 'steps=3']
  done = subprocess.run(
    [sys.executable, '-m', 'smoothrl.launch.cli', 'sweep', *args, '--out', str(tmp_path), '--no-progress'],
    capture_output=True,
    text=True,
  )
  assert done.returncode == 0, done.stderr
  records = [_evals(d) for d in sorted((tmp_path / 'runs').glob('*'))]
  assert len(records) == 2 and all(r[-1]['global_error_pf'] < 1e-7 for r in records)
  assert cli.main(['plot', str(tmp_path), '--out', str(tmp_path / 'plots')]) == 0
  assert list((tmp_path / 'plots').glob('*.png'))


def test_the_continued_branch_moves_the_cut_off_the_real_axis():
  from smoothrl.flows import coefficients

  continued, principal_branch = jax.jit(flows.alpha_pf_continued), jax.jit(coefficients.alpha_pf)
  z = jnp.array([0.3, -2.0, 0.5 + 0.4j, 0.9 - 2j, 1e-5, 2.5 + 1e-9j, 2.5 + 0j, 2.5 - 1e-9j])
  ours, principal = np.asarray(continued(z)), np.asarray(principal_branch(z))
  np.testing.assert_allclose(ours[:5], principal[:5], rtol=1e-6)  # Re z < 1: the same function
  upper = (math.log(1.5) + 1j * math.pi) / 2.5
  np.testing.assert_allclose(ours[5:], [upper] * 3, rtol=1e-6)  # across the real axis beyond 1: continuous
  principal = principal[5:]  # 1 − z below the axis for Im z > 0: the lower side
  assert abs(principal[0] - upper) == pytest.approx(2 * math.pi / 2.5, rel=1e-5)  # the principal branch jumps
  assert abs(principal[2] - upper) < 1e-5


def test_the_run_kinds_principal_fields_agree_with_the_library_below_1_over_h():
  with jax.enable_x64(True):
    from smoothrl.flows import fields, problems

    theta, h = jnp.array([-0.4, 0.3]), 1e-3  # hλ < 1 here: both branches are the principal one
    for flow, library in (('pf', fields.principal), ('pf+third', fields.principal_third)):
      ours = jax.jit(flows.make_field(problems.rosenbrock, flow))(theta, jnp.asarray(h))
      np.testing.assert_allclose(ours, jax.jit(library(problems.rosenbrock, h))(theta), rtol=1e-10)
    third = jax.jit(lambda t: flows.third_order_term(problems.rosenbrock, t))(theta)
    x = theta[0]
    g = jax.jit(jax.grad(problems.rosenbrock))(theta)
    # ∂³E: only ∂xxx = 2400x and ∂xxy = −400 are non-zero, so T[g, g] = (2400x gx² − 800 gx gy, −400 gx²).
    expected = jnp.array([2400 * x * g[0] ** 2 - 800 * g[0] * g[1], -400 * g[0] ** 2])
    np.testing.assert_allclose(third, expected, rtol=1e-10)
