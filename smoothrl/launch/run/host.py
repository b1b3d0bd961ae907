"""The host runner: a Python loop over a dm_env environment around the agent's jitted functions.

Per environment step there is one jitted call (acting) and one device-to-host read (the action). Learner metrics
stay on the device until a log interval. Random draws follow `smoothrl.keys`, and observations kept whole go to
the compiled runner's replay (`device_replay.HostReplay`), so on a JAX-native environment (`jax-minatar/<game>`,
`chain/<n>`) this runner takes the learner updates of the compiled one.
"""

from __future__ import annotations

import collections
import functools
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import dm_env
import jax
import jax.numpy as jnp
import numpy as np

from smoothrl import envs, keys
from smoothrl.agents import device_replay, dqn, factory
from smoothrl.agents.frame_replay import FrameReplayBuffer
from smoothrl.envs import atari_scores
from smoothrl.launch.run import checkpoint, policy
from smoothrl.launch.run import config as config_lib
from smoothrl.launch.run import recorder as recorder_lib
from smoothrl.launch.run import workers as workers_lib
from smoothrl.launch.run.files import eval_record
from smoothrl.launch.run.progress import Progress
from smoothrl.networks import smoothness


def build_agent(config: config_lib.TrainConfig, env: dm_env.Environment) -> dqn.DQN:
  """The agent of `config` for a dm_env environment."""
  return factory.make_agent(config, env.observation_spec().shape, env.action_spec().num_values)


def epsilon_at(config: dqn.DQNConfig, step: int) -> float:
  """The same schedule as `dqn.epsilon_schedule`, in host arithmetic: epsilon after `step` environment steps."""
  transition = max(config.epsilon_decay_steps - config.warmup_steps, 1)
  frac = min(max((step - config.warmup_steps) / transition, 0.0), 1.0)
  return (config.epsilon_start - config.epsilon_end) * (1.0 - frac) + config.epsilon_end  # optax's order: exact ends


class _Acting:
  """Jitted acting at step t of a key stream, with the key `keys.at(stream, t)` and exploration `epsilon(t)`."""

  def __init__(self, agent: dqn.DQN, epsilon: Callable[[jax.Array], jax.Array]):
    self._act = jax.jit(lambda state, stream, t, obs: agent.act(state, keys.at(stream, t), obs, epsilon(t)))

  def __call__(self, state: dqn.DQNState, stream: jax.Array, t: int, obs: np.ndarray) -> int:
    return int(self._act(dqn.actor_state(state), stream, np.int32(t), obs))


def smoothness_fn(agent: dqn.DQN):
  """A jitted `(actor, states) -> max_{s, i} ||dQ_i/ds||` for this agent (Appendix E.2.2)."""
  return jax.jit(lambda actor, states: smoothness.max_jacobian_norm(lambda o: agent.q_values(actor, o), states))


def episode_score(env: dm_env.Environment, episode_return: float) -> float:
  """The game score of the episode that just ended: the raw score where rewards are clipped for learning (Atari)."""
  return float(getattr(env, 'episode_score', episode_return))


def normalised(env_name: str, score: float) -> dict[str, float]:
  """The human-normalised score of an Atari game with reference scores, as a record field; {} otherwise."""
  if not env_name.startswith('atari/'):
    return {}
  try:
    return {'return_hns': float(atari_scores.human_normalised_score(env_name, score))}
  except ValueError:  # a game outside the Atari-57 reference table
    return {}


Replay = device_replay.HostReplay | FrameReplayBuffer


def make_replay(config: config_lib.TrainConfig, obs: np.ndarray) -> Replay:
  """Atari stacks are stored a frame at a time (1M transitions in 7.1 GB); other observations whole, in the
  compiled runner's buffer."""
  if config.env.startswith('atari/'):
    return FrameReplayBuffer(config.dqn.replay_capacity, obs.shape[:-1], obs.shape[-1])
  return device_replay.HostReplay(config.dqn.replay_capacity, obs.shape, obs.dtype)


def make_update(agent: dqn.DQN, batch_size: int, sample_stream: jax.Array):
  """One jitted learner update, sampling included: `update(state, replay, rng) -> (state, metrics)`.

  From a `HostReplay` the batch is drawn inside the same call with the key `keys.at(sample_stream, state.updates)`,
  as the compiled runner draws it; frame replay samples on the host with `rng`.
  """
  learner_step = jax.jit(agent.learner_step)
  from_buffer = jax.jit(
    lambda state, buffer: agent.learner_step(
      state, device_replay.sample(buffer, keys.at(sample_stream, state.updates), batch_size)
    )
  )

  def update(state: dqn.DQNState, replay: Replay, rng: np.random.Generator):
    if isinstance(replay, device_replay.HostReplay):
      return from_buffer(state, replay.buffer)
    return learner_step(state, replay.sample(rng, batch_size))

  return update


def evaluate(
  state: dqn.DQNState,
  env: dm_env.Environment,
  steps: int,
  acting: _Acting,
  stream: jax.Array,
  measure_smoothness,
  rng: np.random.Generator,
  num_states: int,
) -> dict[str, Any]:
  """Runs `steps` steps of `acting` on `stream`; returns completed-episode returns and the on-policy smoothness
  over a uniform sample of `num_states` of the visited states."""
  returns, episode_return, states, seen = [], 0.0, [], 0
  timestep = env.reset()
  for t in range(steps):
    seen += 1  # reservoir sampling keeps a uniform sample of the visited states
    if len(states) < num_states:
      states.append(timestep.observation)
    else:
      j = rng.integers(0, seen)
      if j < num_states:
        states[j] = timestep.observation
    timestep = env.step(acting(state, stream, t, timestep.observation))
    episode_return += float(timestep.reward)
    if timestep.last():
      returns.append(episode_score(env, episode_return))
      episode_return = 0.0
      timestep = env.reset()
  measure = measure_smoothness(dqn.actor_state(state), np.stack(states))
  return eval_record(returns, getattr(env, 'episode_score', episode_return), measure)


def _train_share(configs: list[dict[str, Any]], first: bool, show_progress: bool, resume: bool) -> list[dict[str, Any]]:
  """One worker's share of `train_many`'s runs, one after another; only the first share shows progress."""
  return [_train_or_stop(config_lib.TrainConfig.from_dict(c), show_progress and first, resume) for c in configs]


def train_many(
  configs: list[config_lib.TrainConfig], show_progress: bool = True, resume: bool = False, workers: int = 1
) -> list[dict[str, Any]]:
  """Trains runs (`train`) one after another with `workers=1`, else side by side in `workers` processes (0: one
  per core), each pinned to its share of the cores; returns their summaries in order.

  A run whose loss turns non-finite stops alone: its failure record (`status.json`'s, state 'failed') takes the
  place of its summary and the other runs go on.
  """
  for config in configs:
    config_lib.validate(config)
  workers = workers_lib.count(workers, len(configs))
  if workers > 1:
    share = functools.partial(_train_share, show_progress=show_progress, resume=resume)
    return workers_lib.run_shares(share, [c.to_dict() for c in configs], workers)
  return [_train_or_stop(config, show_progress, resume) for config in configs]


def _train_or_stop(config: config_lib.TrainConfig, show_progress: bool, resume: bool) -> dict[str, Any]:
  """`train`'s summary, or the failure record of a run that a `TrainingError` stopped."""
  try:
    return train(config, show_progress, resume)
  except config_lib.TrainingError:
    return recorder_lib.read_status(config.out)


def train(config: config_lib.TrainConfig, show_progress: bool = True, resume: bool = False) -> dict[str, Any]:
  """Trains one run, its directory written by a `Recorder` (config, metrics, status, checkpoints, summary and
  final parameters).

  With `resume`, a run directory that holds a checkpoint continues from it (the metrics after the checkpoint are
  dropped and written again), and a finished run returns its summary without doing anything.
  """
  config_lib.validate(config)
  if resume:
    done = recorder_lib.finished_summary(config.out, config.to_json())
    if done is not None:
      return done
  with recorder_lib.Recorder(config.out, config.to_json(), config.tensorboard) as recorder:
    try:
      return _train(config, recorder, recorder.saved_checkpoint() if resume else None, show_progress)
    except BaseException as e:
      recorder.fail(e)
      raise


class _Loop(NamedTuple):
  """The host loop's state besides the agent's and the environments': what a checkpoint holds of it."""

  replay: Replay
  timestep: dm_env.TimeStep
  np_rng: np.random.Generator
  episode_return: float
  episode_length: int
  episodes: int
  recent: collections.deque
  last_eval: dict[str, Any] | None
  elapsed: float


_OBJECTS = ('replay', 'env', 'eval_env')  # saved through their own `get_state` / `set_state`


def _snapshot(
  state: dqn.DQNState, loop: _Loop, env: dm_env.Environment, eval_env: dm_env.Environment
) -> tuple[dict[str, Any], dict[str, Any]]:
  """A checkpoint's trees and metadata (`Recorder.checkpoint`): the agent state, the replay's and environments'
  own states (`get_state`: arrays and JSON), the current timestep, the generator's state and the counters."""
  trees: dict[str, Any] = {'state': state, 'observation': np.asarray(loop.timestep.observation)}
  meta: dict[str, Any] = {
    'step_type': int(loop.timestep.step_type),
    'reward': _plain(loop.timestep.reward),
    'discount': _plain(loop.timestep.discount),
    'np_rng': loop.np_rng.bit_generator.state,
    'episode_return': loop.episode_return,
    'episode_length': loop.episode_length,
    'episodes': loop.episodes,
    'recent': list(loop.recent),
    'last_eval': loop.last_eval,
    'elapsed': loop.elapsed,
  }
  for name, obj in zip(_OBJECTS, (loop.replay, env, eval_env)):
    arrays, meta[name] = obj.get_state()
    trees.update({f'{name}.{key}': value for key, value in arrays.items()})
  return trees, meta


def _plain(value: Any) -> float | None:
  return None if value is None else float(value)


def _restore(
  saved: checkpoint.Saved,
  template: Any,
  replay: Replay,
  env: dm_env.Environment,
  eval_env: dm_env.Environment,
  run_dir: str,
) -> tuple[dqn.DQNState, _Loop]:
  """The agent state (on `template`, its shapes) and loop state of a checkpoint, with the replay and environments
  (built afresh for the run) set to their saved states.

  Raises:
    ConfigError: the checkpoint does not fit the run (`checkpoint.misfit`), as one of another version's may not.
  """
  state = checkpoint.restore(saved.leaves['state'], template, run_dir)
  meta, what = saved.meta, 'its loop state'
  try:
    for name, obj in zip(_OBJECTS, (replay, env, eval_env)):
      prefix, what = f'{name}.', f'its {name} state'
      obj.set_state({k[len(prefix) :]: v[0] for k, v in saved.leaves.items() if k.startswith(prefix)}, meta[name])
    what = 'its loop state'
    np_rng = np.random.default_rng()
    np_rng.bit_generator.state = meta['np_rng']
    timestep = dm_env.TimeStep(
      dm_env.StepType(meta['step_type']), meta['reward'], meta['discount'], saved.leaves['observation'][0]
    )
    loop = _Loop(
      replay,
      timestep,
      np_rng,
      meta['episode_return'],
      meta['episode_length'],
      meta['episodes'],
      collections.deque(meta['recent'], maxlen=20),
      meta['last_eval'],
      meta['elapsed'],
    )
  except (KeyError, TypeError, ValueError) as e:  # a field missing, of another type, or of other settings
    raise checkpoint.misfit(run_dir, f'{what}: {type(e).__name__}: {e}') from e
  return jax.tree.map(jnp.asarray, state), loop


def _train(
  config: config_lib.TrainConfig, recorder: recorder_lib.Recorder, saved: checkpoint.Saved | None, show_progress: bool
) -> dict[str, Any]:
  keys.unroll_threefry_on_cpu()
  env = envs.make(config.env, seed=config.seed, **config.env_kwargs())
  eval_env = envs.make(config.env, seed=config.seed + keys.EVAL_SEED_OFFSET, **config.env_kwargs())
  agent = build_agent(config, env)
  d = config.dqn
  streams = keys.streams(jax.random.PRNGKey(config.seed))
  eval_stream = keys.streams(jax.random.PRNGKey(config.seed + keys.EVAL_SEED_OFFSET)).act
  update = make_update(agent, d.batch_size, streams.sample)
  measure_sigmas = jax.jit(agent.critic.measure)
  acting = _Acting(agent, dqn.epsilon_schedule(d))
  eval_acting = _Acting(agent, lambda t: jnp.float32(config.eval_epsilon))
  measure_smoothness = smoothness_fn(agent)
  obs_shape, num_actions = env.observation_spec().shape, env.action_spec().num_values

  timestep = env.reset()
  replay = make_replay(config, timestep.observation)
  if saved is None:
    state = agent.init(streams.init, jnp.asarray(timestep.observation))
    replay.start_episode(timestep.observation)
    loop = _Loop(
      replay, timestep, np.random.default_rng(config.seed), 0.0, 0, 0, collections.deque(maxlen=20), None, 0.0
    )
    first = 1
  else:
    template = jax.eval_shape(agent.init, streams.init, jnp.asarray(timestep.observation))
    state, loop = _restore(saved, template, replay, env, eval_env, config.out)
    first = saved.step + 1
  recorder.start(saved)  # once the checkpoint is known to fit: a refused one leaves the metrics as they were
  replay, timestep, np_rng, episode_return, episode_length, episodes, recent, last_eval, elapsed = loop

  pending: list[dict[str, jax.Array]] = []
  start = time.perf_counter() - elapsed
  with Progress(config.steps, enabled=show_progress, first=first - 1) as progress:
    for step in range(first, config.steps + 1):
      action = acting(state, streams.act, step - 1, timestep.observation)
      timestep = env.step(action)
      replay.add(action, timestep.reward, timestep.discount, timestep.observation)
      episode_return += float(timestep.reward)
      episode_length += 1
      if timestep.last():
        episodes += 1
        score = episode_score(env, episode_return)
        recent.append(score)
        extra = {'clipped_return': episode_return} if score != episode_return else {}
        recorder.write({'step': step, 'kind': 'episode', 'return': score, 'length': episode_length, **extra})
        episode_return, episode_length = 0.0, 0
        timestep = env.reset()
        replay.start_episode(timestep.observation)

      if step > d.warmup_steps and step % d.update_period == 0:
        state, metrics = update(state, replay, np_rng)
        pending.append(metrics)

      if step % config.log_period == 0 and pending:
        means = {
          k: float(v) for k, v in jax.device_get(jax.tree.map(lambda *xs: jnp.mean(jnp.stack(xs)), *pending)).items()
        }
        pending.clear()
        recorder.check_loss(means['loss'], step)
        elapsed = time.perf_counter() - start
        recorder.write(
          {
            'step': step,
            'kind': 'train',
            'epsilon': epsilon_at(d, step - 1),
            'updates': int(state.updates),
            'elapsed': elapsed,
            'steps_per_sec': step / elapsed,
            **means,
          }
        )

      if step % config.sigma_log_period == 0:
        sigmas, spectral_state = measure_sigmas(state.params, state.spectral)
        state = state._replace(spectral=spectral_state)
        recorder.write(
          {
            'step': step,
            'kind': 'sigma',
            'sigma': {k: float(v) for k, v in sigmas.items()},
            'selected': list(agent.critic.selected),
          }
        )

      if step % config.eval_period == 0 or step == config.steps:
        last_eval = evaluate(
          state,
          eval_env,
          config.eval_steps,
          eval_acting,
          keys.at(eval_stream, step),
          measure_smoothness,
          np_rng,
          config.smoothness_states,
        )
        last_eval.update(normalised(config.env, last_eval['return_mean']))
        recorder.write({'step': step, 'kind': 'eval', 'epsilon': config.eval_epsilon, **last_eval})

      if config.checkpoint_period and step % config.checkpoint_period == 0 and step < config.steps:
        loop = _Loop(
          replay,
          timestep,
          np_rng,
          episode_return,
          episode_length,
          episodes,
          recent,
          last_eval,
          time.perf_counter() - start,
        )
        recorder.checkpoint(step, *_snapshot(state, loop, env, eval_env))

      progress.update(
        step,
        force=step == config.steps,
        ret=float(np.mean(recent)) if recent else None,
        eval=last_eval['return_mean'] if last_eval else None,
      )

  summary = {
    'steps': config.steps,
    'episodes': episodes,
    'updates': int(state.updates),
    'wall_seconds': time.perf_counter() - start,
    'final_eval': last_eval,
    'runner': 'host',
  }
  return recorder.finish(summary, config.steps, policy.model_record(config, state, obs_shape, num_actions))
