"""Short compiled runs on the chain MDP, shared by the compiled-runner tests, and a way to interrupt a run."""

import pytest

from smoothrl.envs.jax_chain import JaxChain
from smoothrl.launch.run import compiled
from smoothrl.launch.run import config as config_lib
from smoothrl.launch.run.files import read_metrics


def chain_config(out, **fields):
  """A 1,600-step compiled DQN + SN run on `chain/4` writing to `out`; `fields` override (dotted names too)."""
  cfg = config_lib.TrainConfig(
    env='chain/4',
    steps=1_600,
    eval_period=800,
    eval_steps=40,
    sigma_log_period=400,
    log_period=200,
    runner='compiled',
    out=str(out),
  )
  return config_lib.replace(
    cfg,
    **{
      'network.conv_layers': 0,
      'network.hidden': 32,
      'method.method': 'sn',
      'dqn.warmup_steps': 200,
      'dqn.epsilon_decay_steps': 800,
      'dqn.epsilon_end': 0.1,
      'dqn.update_period': 2,
      'dqn.target_update_period': 100,
      'dqn.learning_rate': 3e-3,
      'dqn.replay_capacity': 2_000,
      **fields,
    },
  )


def run_chain(configs, **kwargs):
  """`compiled.train` on `chain/4` configs, without a progress line."""
  env = JaxChain(4)
  return compiled.train(
    configs, lambda name: env, lambda c, hp: compiled.build_agent(c, hp, env), show_progress=False, **kwargs
  )


def chain_program(config):
  """The compiled runner's program for a `chain/4` config."""
  env = JaxChain(4)
  return compiled.Program(config, env, env, lambda c, hp: compiled.build_agent(c, hp, env))


def member_bytes(config):
  """`compiled.member_bytes` of the program for a `chain/4` config."""
  return compiled.member_bytes(chain_program(config), config)


def records(out, kind):
  """The run's metrics records of one kind."""
  return list(read_metrics(f'{out}/metrics.jsonl', kind))


def interrupt_at(step, run, runner_module=compiled, before=lambda: None):
  """Calls `run()`, stopping it with KeyboardInterrupt('stopped') when `runner_module`'s progress reaches `step`,
  as Ctrl-C there would; `before()` is called just before."""

  class Interrupting(runner_module.Progress):
    def update(self, at, **kwargs):
      if at == step:
        before()
        raise KeyboardInterrupt('stopped')
      super().update(at, **kwargs)

  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(runner_module, 'Progress', Interrupting)
    with pytest.raises(KeyboardInterrupt):
      run()
