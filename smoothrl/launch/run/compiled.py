"""The compiled runner: acting, replay, learning, target refreshes and the epsilon schedule inside `lax.scan`.

Training runs in chunks of `log_period` environment steps, each one call of a jitted program; between chunks the
host writes metrics, measures sigma and evaluates (evaluation is a compiled program too). The agent functions,
replay and key streams (`smoothrl.keys`) are the ones the host runner uses, so on a JAX-native environment both
runners take the same learner updates. A chunk after warm-up is a scan over iterations of `update_period` environment
steps followed by one learner step, so there is no branch in the hot loop.

Several runs (seeds, learning rates, Adam epsilons, Lipschitz constants K, methods and their layers) that share
the critic's structure run as one program under `jax.vmap`: these hyperparameters are traced arguments, so a grid
compiles once. Members that share one method and layer selection use the static critic; a group that mixes them
uses the dynamic critic (`critic.DynamicMethod`), which computes sigma of every layer and gives each member the
static critic's values. A group larger than the device's memory holds runs as several such programs
(`members_per_program`). On a CPU members run through static programs, one per method and layer selection, one
after another in each of `train_grid`'s worker processes (one per core, each pinned to its core).
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from smoothrl import envs
from smoothrl import keys as keys_lib
from smoothrl.agents import device_replay, dqn, factory
from smoothrl.agents.factory import HParams
from smoothrl.agents.replay import Transitions
from smoothrl.envs.jax_env import JaxEnv
from smoothrl.launch.run import checkpoint, grouping
from smoothrl.launch.run import config as config_lib
from smoothrl.launch.run import recorder as recorder_lib
from smoothrl.launch.run import workers as workers_lib
from smoothrl.launch.run.files import eval_record
from smoothrl.launch.run.grouping import device_bytes, members_per_program, method_key, structure_key
from smoothrl.launch.run.policy import model_record
from smoothrl.launch.run.progress import Progress
from smoothrl.networks import smoothness


class Carry(NamedTuple):
  agent: dqn.DQNState
  env_state: Any
  obs: jax.Array
  replay: device_replay.DeviceReplay
  keys: keys_lib.Streams  # the run's key streams (`smoothrl.keys`), counted by step and update
  episode_return: jax.Array
  episode_length: jax.Array


class Program:
  """The jitted pieces of one compiled run structure; every function is per member (vmap adds the member axis).

  A `dynamic` program takes the method and layers as data (`HParams.of(config, dynamic=True)`); a static one runs
  `config`'s method and layers.
  """

  def __init__(
    self,
    config: config_lib.TrainConfig,
    env: JaxEnv,
    eval_env: JaxEnv,
    build_agent: Callable[[config_lib.TrainConfig, HParams], dqn.DQN],
    dynamic: bool = False,
  ):
    keys_lib.unroll_threefry_on_cpu()
    self.config, self.env, self.eval_env, self.dynamic = config, env, eval_env, dynamic
    d = config.dqn
    self._agent = lambda hp: build_agent(config, hp)
    schedule = dqn.epsilon_schedule(d)

    def env_step(agent: dqn.DQN, carry: Carry, t: jax.Array) -> tuple[Carry, tuple[jax.Array, ...]]:
      action = agent.act(carry.agent, keys_lib.at(carry.keys.act, t), carry.obs, schedule(t))
      next_obs, reset_obs, env_state, reward, terminal, truncated = env.step_autoreset(
        keys_lib.at(carry.keys.env, t + 1), carry.env_state, action
      )
      done = terminal | truncated
      transition = Transitions(carry.obs, action, reward, 1.0 - terminal.astype(jnp.float32), next_obs)
      episode_return = carry.episode_return + reward
      episode_length = carry.episode_length + 1
      carry = Carry(
        carry.agent,
        env_state,
        reset_obs,
        device_replay.add(carry.replay, transition),
        carry.keys,
        jnp.where(done, 0.0, episode_return),
        jnp.where(done, 0, episode_length),
      )
      return carry, (done, episode_return, episode_length)

    def warmup(hp: HParams, carry: Carry, t0: jax.Array, steps: int):
      agent = self._agent(hp)
      return jax.lax.scan(lambda c, t: env_step(agent, c, t), carry, t0 + jnp.arange(steps))

    def iteration(agent: dqn.DQN, carry: Carry, t0: jax.Array):
      carry, episodes = jax.lax.scan(lambda c, t: env_step(agent, c, t), carry, t0 + jnp.arange(d.update_period))
      sample_key = keys_lib.at(carry.keys.sample, carry.agent.updates)
      state, metrics = agent.learner_step(carry.agent, device_replay.sample(carry.replay, sample_key, d.batch_size))
      return carry._replace(agent=state), (episodes, metrics)

    def train_chunk(hp: HParams, carry: Carry, t0: jax.Array, iterations: int):
      agent = self._agent(hp)
      starts = t0 + d.update_period * jnp.arange(iterations)
      carry, (episodes, metrics) = jax.lax.scan(lambda c, t: iteration(agent, c, t), carry, starts)
      flat = jax.tree.map(lambda x: x.reshape(-1), episodes)
      return carry, flat, jax.tree.map(jnp.mean, metrics)

    def evaluate(hp: HParams, actor: dqn.ActorState, key: jax.Array):
      agent = self._agent(hp)
      blocks = min(config.smoothness_states, config.eval_steps)
      per_block = config.eval_steps // blocks

      def step(c, _):
        env_state, obs, key, ret, length = c
        key, act_key, env_key = jax.random.split(key, 3)
        action = agent.act(actor, act_key, obs, config.eval_epsilon)
        _, obs, env_state, reward, terminal, truncated = eval_env.step_autoreset(env_key, env_state, action)
        done = terminal | truncated
        ret, length = ret + reward, length + 1
        return (env_state, obs, key, jnp.where(done, 0.0, ret), jnp.where(done, 0, length)), (done, ret)

      def block(c, _):
        first_obs = c[1]
        c, out = jax.lax.scan(step, c, None, per_block)
        return c, (out, first_obs)

      reset_key, key = jax.random.split(key)
      obs, env_state = eval_env.reset(reset_key)
      init = (env_state, obs, key, jnp.float32(0.0), jnp.int32(0))
      (_, _, _, running, _), ((done, returns), states) = jax.lax.scan(block, init, None, blocks)
      q_fn = lambda o: agent.q_values(actor, o)
      return done.reshape(-1), returns.reshape(-1), running, smoothness.max_jacobian_norm(q_fn, states)

    def init(hp: HParams, key: jax.Array) -> Carry:
      agent = self._agent(hp)
      streams = keys_lib.streams(key)
      obs, env_state = env.reset(keys_lib.at(streams.env, 0))
      return Carry(
        agent.init(streams.init, obs),
        env_state,
        obs,
        device_replay.init(d.replay_capacity, env.obs_shape, obs.dtype),
        streams,
        jnp.float32(0.0),
        jnp.int32(0),
      )

    def measure(hp: HParams, carry: Carry):
      agent = self._agent(hp)
      sigmas, vectors = agent.critic.measure(carry.agent.params, carry.agent.spectral)
      return sigmas, carry._replace(agent=carry.agent._replace(spectral=vectors))

    vm = _over_members
    # Every function takes a leading member axis; `static` arguments are segment lengths. Training segments and
    # the σ measurement donate the carry, so the replay buffer is updated in place rather than copied per call.
    self.init = jax.jit(vm(init))
    self.warmup = jax.jit(vm(warmup, (0, 0, None, None)), static_argnums=3, donate_argnums=1)
    self.train_chunk = jax.jit(vm(train_chunk, (0, 0, None, None)), static_argnums=3, donate_argnums=1)
    self.evaluate = jax.jit(vm(evaluate))
    self.measure = jax.jit(vm(measure), donate_argnums=1)


def _over_members(f: Callable[..., Any], in_axes: int | tuple[int | None, ...] = 0) -> Callable[..., Any]:
  """`f` over a leading member axis of the arguments `in_axes` marks: vmapped, or for a single member called on
  that member alone (a vmap of one makes XLA:CPU pick batched kernels, ~12% slower per training iteration)."""
  mapped = jax.vmap(f, in_axes=in_axes)

  def call(*args):
    axes = in_axes if isinstance(in_axes, tuple) else (in_axes,) * len(args)
    sizes = {x.shape[0] for a, axis in zip(args, axes) if axis is not None for x in jax.tree.leaves(a)}
    if sizes != {1}:
      return mapped(*args)
    out = f(*(a if axis is None else jax.tree.map(lambda x: x[0], a) for a, axis in zip(args, axes)))
    return jax.tree.map(lambda x: x[None], out)

  return call


def _boundaries(config: config_lib.TrainConfig) -> list[int]:
  """Segment ends: every log, sigma and evaluation period, the end of warm-up and the last step."""
  ends = {config.steps, min(config.dqn.warmup_steps, config.steps)}
  for period in (config.log_period, config.sigma_log_period, config.eval_period):
    ends.update(range(period, config.steps + 1, period))
  return sorted(e for e in ends if e > 0)


def validate(config: config_lib.TrainConfig) -> None:
  """What the compiled runner needs beyond `config.validate`: segment lengths in whole learner iterations."""
  config_lib.validate(config)
  period = config.dqn.update_period
  bad = [
    f'{name} ({value})'
    for name, value in (
      ('steps', config.steps),
      ('dqn.warmup_steps', config.dqn.warmup_steps),
      ('log_period', config.log_period),
      ('eval_period', config.eval_period),
      ('sigma_log_period', config.sigma_log_period),
    )
    if value % period
  ]
  if bad:
    raise config_lib.ConfigError(
      f'the compiled runner needs multiples of dqn.update_period ({period}): ' + ', '.join(bad)
    )


class _Member:
  """Host-side bookkeeping for one member: its recorder, its episodes, its last evaluation."""

  def __init__(self, config: config_lib.TrainConfig, recorder: recorder_lib.Recorder, saved: checkpoint.Saved | None):
    self.config, self.recorder = config, recorder
    self.episodes = 0 if saved is None else saved.meta['episodes']
    self.last_eval: dict[str, Any] | None = None if saved is None else saved.meta['last_eval']
    self.recent: list[float] = [] if saved is None else list(saved.meta['recent'])

  @property
  def stopped(self) -> bool:
    return self.recorder.failure is not None

  def episodes_done(self, t0: int, done: np.ndarray, returns: np.ndarray, lengths: np.ndarray) -> None:
    for i in np.flatnonzero(done):
      self.recorder.write(
        {'step': t0 + int(i) + 1, 'kind': 'episode', 'return': float(returns[i]), 'length': int(lengths[i])}
      )
      self.recent = (self.recent + [float(returns[i])])[-20:]
      self.episodes += 1


def member_shapes(program: Program, config: config_lib.TrainConfig) -> Carry:
  """The shapes and dtypes of one member's carry in `program` (`jax.ShapeDtypeStruct`s, without the member axis)."""
  shapes = jax.eval_shape(
    program.init, grouping.stack([HParams.of(config, program.dynamic)]), jax.random.PRNGKey(0)[None]
  )
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), shapes)


def member_bytes(program: Program, config: config_lib.TrainConfig) -> int:
  """Device memory of one member's carry (replay, agent and environment state) in `program`, in bytes."""
  return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(member_shapes(program, config)))


def train(
  configs: Sequence[config_lib.TrainConfig],
  env_factory: Callable[[str], JaxEnv],
  build_agent: Callable[[config_lib.TrainConfig, HParams], dqn.DQN],
  vmap_members: bool = True,
  show_progress: bool = True,
  resume: bool = False,
  max_members: int | None = None,
) -> list[dict[str, Any]]:
  """Trains runs that share one structure (`structure_key`) as compiled programs; returns their summaries.

  With `vmap_members`, members run together under `jax.vmap`, on the dynamic critic when they differ in method
  or layers, at most `max_members` to a program (by default as many as `members_per_program` lets the device
  hold, all of them where it does not say); otherwise one after another through static compiled functions, shared
  by the members of one method and layer selection. With `resume`, finished members are skipped and the others
  continue from their checkpoints, those saved at the same step together. A member whose loss turns non-finite
  stops alone: its failure record (`status.json`'s, state 'failed') takes the place of its summary and the other
  members go on.
  """
  if not configs:
    raise ValueError('no runs to train')
  if max_members is not None and max_members < 1:
    raise config_lib.ConfigError(f'members per program must be at least 1, got {max_members}')
  for config in configs:
    validate(config)
  structures = {structure_key(c) for c in configs}
  if len(structures) > 1:
    raise config_lib.ConfigError(
      'these runs differ in more than seed, learning rate, Adam eps, K, method and '
      'layers; group them by structure (see compiled.structure_key)'
    )
  programs: dict[Any, Program] = {}

  def program_for(members: list[int]) -> Program:
    methods = {method_key(configs[i]) for i in members}
    key = 'dynamic' if len(methods) > 1 else methods.pop()
    if key not in programs:
      first = configs[members[0]]
      programs[key] = Program(
        first, env_factory(first.env), env_factory(first.env), build_agent, dynamic=key == 'dynamic'
      )
    return programs[key]

  finished: dict[int, dict[str, Any]] = {}
  if resume:
    for i, config in enumerate(configs):
      summary = recorder_lib.finished_summary(config.out, config.to_json())
      if summary is not None:
        finished[i] = summary
  todo = [i for i in range(len(configs)) if i not in finished]
  size = 1
  if vmap_members and todo:
    device = device_bytes() if max_members is None else None
    if device is not None:  # a member's bytes are counted only where the device says how many it holds
      max_members = members_per_program(member_bytes(program_for(todo), configs[todo[0]]), device)
    size = max_members or len(todo)
  together = [todo]
  if resume and size > 1:  # members resume together only from checkpoints at the same step
    by_step: dict[int | None, list[int]] = {}
    for i in todo:
      by_step.setdefault(checkpoint.saved_step(configs[i].out), []).append(i)
    together = list(by_step.values())
  groups = [same[i : i + size] for same in together for i in range(0, len(same), size)]
  for group in groups:
    for i, summary in zip(group, _train_group(program_for(group), [configs[i] for i in group], show_progress, resume)):
      finished[i] = summary
  return [finished[i] for i in range(len(configs))]


def _train_group(
  program: Program, configs: list[config_lib.TrainConfig], show_progress: bool, resume: bool
) -> list[dict[str, Any]]:
  recorders = [recorder_lib.Recorder(c.out, c.to_json(), c.tensorboard) for c in configs]
  try:
    with contextlib.ExitStack() as stack:  # on any exit every member's metrics file is closed
      for r in recorders:
        stack.enter_context(r)
      return _train_members(program, configs, recorders, show_progress, resume)
  except BaseException as e:
    for r in recorders:
      if r.failure is None:
        r.fail(e)
    raise


def _saved_group(recorders: list[recorder_lib.Recorder]) -> list[checkpoint.Saved] | None:
  """The members' checkpoints when every member holds one at the same step, else None (start afresh)."""
  saved = [r.saved_checkpoint() for r in recorders]
  if any(s is None for s in saved) or len({s.step for s in saved}) != 1:
    return None
  return saved


def _train_members(
  program: Program,
  configs: list[config_lib.TrainConfig],
  recorders: list[recorder_lib.Recorder],
  show_progress: bool,
  resume: bool,
) -> list[dict[str, Any]]:
  """Runs the group's members together to the end; a member whose loss turns non-finite stops alone (its
  failure record takes the place of its summary) while the others go on."""
  base = program.config
  saved = _saved_group(recorders) if resume else None
  hp = grouping.stack([HParams.of(c, program.dynamic) for c in configs])
  if saved is None:
    carry = program.init(hp, jnp.stack([jax.random.PRNGKey(c.seed) for c in configs]))
    t0, elapsed = 0, 0.0
  else:
    template = member_shapes(program, base)
    carry = grouping.stack([checkpoint.restore(s.leaves['carry'], template, c.out) for s, c in zip(saved, configs)])
    t0, elapsed = saved[0].step, saved[0].meta['elapsed']
  for i, r in enumerate(recorders):
    r.start(None if saved is None else saved[i])
  members = [_Member(c, r, None if saved is None else saved[i]) for i, (c, r) in enumerate(zip(configs, recorders))]
  eval_keys = [jax.random.PRNGKey(c.seed + keys_lib.EVAL_SEED_OFFSET) for c in configs]
  label = ','.join(str(c.seed) for c in configs)
  with Progress(base.steps, enabled=show_progress, first=t0) as progress:
    start = time.perf_counter() - elapsed
    live = lambda: [(i, m) for i, m in enumerate(members) if not m.stopped]
    for end in _boundaries(base):
      if end <= t0:
        continue
      length = end - t0
      if end <= base.dqn.warmup_steps:
        carry, (done, returns, lengths) = program.warmup(hp, carry, t0, length)
        metrics = None
      else:
        carry, (done, returns, lengths), metrics = program.train_chunk(hp, carry, t0, length // base.dqn.update_period)
      done, returns, lengths = (np.asarray(x) for x in jax.device_get((done, returns, lengths)))
      for i, m in live():
        m.episodes_done(t0, done[i], returns[i], lengths[i])
      if metrics is not None:
        metrics = jax.device_get(metrics)
        updates = np.asarray(jax.device_get(carry.agent.updates))
        elapsed = time.perf_counter() - start
        for i, m in live():
          values = {k: float(v[i]) for k, v in metrics.items()}
          try:
            m.recorder.check_loss(values['loss'], end)
          except config_lib.TrainingError as e:  # this member stops; the vmapped program keeps its lane
            m.recorder.fail(e)
            continue
          m.recorder.write(
            {
              'step': end,
              'kind': 'train',
              'epsilon': float(dqn.epsilon_schedule(base.dqn)(end - 1)),
              'updates': int(updates[i]),
              'elapsed': elapsed,
              'steps_per_sec': end / elapsed,
              **values,
            }
          )
        if not live():
          break
      if end % base.sigma_log_period == 0:
        sigmas, carry = program.measure(hp, carry)
        sigmas = jax.device_get(sigmas)
        for i, m in live():
          m.recorder.write(
            {
              'step': end,
              'kind': 'sigma',
              'sigma': {k: float(v[i]) for k, v in sigmas.items()},
              'selected': list(method_key(m.config)[1]),
            }
          )
      if end % base.eval_period == 0 or end == base.steps:
        actor = jax.vmap(dqn.actor_state)(carry.agent)
        keys = jnp.stack([jax.random.fold_in(k, end) for k in eval_keys])
        done_e, returns_e, running, smooth = jax.device_get(program.evaluate(hp, actor, keys))
        for i, m in live():
          m.last_eval = eval_record(np.asarray(returns_e[i])[np.asarray(done_e[i])], running[i], smooth[i])
          m.recorder.write({'step': end, 'kind': 'eval', 'epsilon': base.eval_epsilon, **m.last_eval})
      if base.checkpoint_period and end % base.checkpoint_period == 0 and end < base.steps:
        host_carry = jax.device_get(carry)
        for i, m in live():
          m.recorder.checkpoint(
            end,
            {'carry': grouping.member(host_carry, i)},
            {
              'episodes': m.episodes,
              'recent': m.recent,
              'last_eval': m.last_eval,
              'elapsed': time.perf_counter() - start,
            },
          )
      t0 = end
      shown = live()[0][1]
      progress.update(
        end,
        force=end == base.steps,
        seeds=label,
        ret=float(np.mean(shown.recent)) if shown.recent else None,
        eval=shown.last_eval['return_mean'] if shown.last_eval else None,
      )
  wall = time.perf_counter() - start
  host_carry = jax.device_get(carry)
  summaries = []
  for i, m in enumerate(members):
    if m.stopped:
      summaries.append(m.recorder.failure)
      continue
    member = grouping.member(host_carry, i)
    summary = {
      'steps': base.steps,
      'episodes': m.episodes,
      'updates': int(member.agent.updates),
      'wall_seconds': wall,
      'final_eval': m.last_eval,
      'runner': 'compiled',
      'members_together': len(members),
    }
    model = model_record(m.config, member.agent, program.env.obs_shape, program.env.num_actions)
    summaries.append(m.recorder.finish(summary, base.steps, model))
  return summaries


def make_env(name: str) -> JaxEnv:
  """The JAX-native environment of a config's `env` name."""
  try:
    return envs.make_jax(name)
  except ValueError as e:
    raise config_lib.ConfigError(f'the compiled runner needs a JAX-native environment: {e}') from None


def build_agent(config: config_lib.TrainConfig, hp: HParams, env: JaxEnv) -> dqn.DQN:
  """The agent of `config` with `hp`'s values, on a dynamic critic when `hp.method` is set."""
  return factory.make_agent(config, env.obs_shape, env.num_actions, hp)


def _train_share(configs: list[dict[str, Any]], first: bool, show_progress: bool, resume: bool) -> list[dict[str, Any]]:
  """One worker's share of `train_grid`'s runs, one after another; only the first share shows progress."""
  return train_grid([config_lib.TrainConfig.from_dict(c) for c in configs], False, show_progress and first, resume)


def train_grid(
  configs: Sequence[config_lib.TrainConfig],
  vmap_members: bool | None = None,
  show_progress: bool = True,
  resume: bool = False,
  workers: int = 1,
  max_members: int | None = None,
) -> list[dict[str, Any]]:
  """Trains any list of runs: grouped by structure, each group one compiled program; summaries in input order.

  `vmap_members` defaults to True on accelerators and False on a CPU, where members run one after another: in
  this process with `workers=1`, else side by side in `workers` processes (0: one per core), each pinned to its
  share of the cores and taking every `workers`-th run. Only the first worker shows progress. Vmapped groups
  larger than `max_members` (by default, than the device's memory holds; see `train`) run as several programs,
  one after another. A run whose loss turns non-finite stops alone (see `train`).
  """
  if vmap_members is None:
    vmap_members = jax.default_backend() != 'cpu'
  for config in configs:
    validate(config)
    make_env(config.env)
  workers = workers_lib.count(workers, len(configs))
  if workers > 1 and not vmap_members:
    share = functools.partial(_train_share, show_progress=show_progress, resume=resume)
    return workers_lib.run_shares(share, [c.to_dict() for c in configs], workers)
  groups: dict[str, list[int]] = {}
  for i, config in enumerate(configs):
    groups.setdefault(structure_key(config), []).append(i)
  summaries: list[Any] = [None] * len(configs)
  for indices in groups.values():
    group = [configs[i] for i in indices]
    results = train(
      group,
      make_env,
      lambda c, hp: build_agent(c, hp, make_env(c.env)),
      vmap_members,
      show_progress=show_progress,
      resume=resume,
      max_members=max_members,
    )
    for i, summary in zip(indices, results):
      summaries[i] = summary
  return summaries
