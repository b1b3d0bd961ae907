"""The host runner: a Python loop over a dm_env environment around the agent's jitted functions.

Per environment step there is one jitted call (acting) and one device-to-host read (the action). Learner metrics
stay on the device until a log interval. Random draws follow `smoothrl.keys`, and observations kept whole go to
the compiled runner's replay (`device_replay.HostReplay`), so on a JAX-native environment (`jax-minatar/<game>`,
`chain/<n>`) this runner takes the learner updates of the compiled one.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import math
import time
from pathlib import Path
from typing import Any, Callable

import dm_env
import jax
import jax.numpy as jnp
import numpy as np

from smoothrl import envs
from smoothrl import keys
from smoothrl.agents import c51
from smoothrl.agents import critic as critic_lib
from smoothrl.agents import device_replay
from smoothrl.agents import dqn
from smoothrl.agents.frame_replay import FrameReplayBuffer
from smoothrl.launch import checkpoint
from smoothrl.launch import config as config_lib
from smoothrl.launch import workers as workers_lib
from smoothrl.launch.io import (CHECKPOINT_FILE, CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, MetricsWriter,
                                atomic_write_text, eval_record)
from smoothrl.launch.progress import Progress
from smoothrl.networks import smoothness

EVAL_SEED_OFFSET = 1_000_003  # evaluation environments never share a seed with training ones
SMOOTHNESS_STATES = 512  # on-policy states kept from each evaluation for the smoothness measure


def build_agent(config: config_lib.TrainConfig, env: dm_env.Environment) -> dqn.DQN:
  """The agent of `config` for a dm_env environment."""
  return make_agent(config, env.observation_spec().shape, env.action_spec().num_values)


def make_agent(config: config_lib.TrainConfig, obs_shape: tuple[int, ...], num_actions: int,
               learning_rate: Any = None, adam_eps: Any = None, lipschitz: Any = None,
               dynamic: critic_lib.DynamicMethod | None = None) -> dqn.DQN:
  """The agent of `config`; the keyword values (which may be traced arrays) override the config's.

  With `dynamic`, the method and layer selection are that (possibly traced) value instead of `config.method`'s,
  so runs that differ in them can share one compiled program.
  """
  d, m = config.dqn, config.method
  if learning_rate is not None or adam_eps is not None:
    d = dataclasses.replace(d, learning_rate=d.learning_rate if learning_rate is None else learning_rate,
                            adam_eps=d.adam_eps if adam_eps is None else adam_eps)
  if lipschitz is not None:
    m = dataclasses.replace(m, lipschitz=lipschitz)
  method = m.method if dynamic is None else dynamic
  width = num_actions * (config.c51.num_atoms if config.agent == 'c51' else 1)
  critic = critic_lib.make_critic(config.network, m, obs_shape, width, batch_norm=config.regulariser.batch_norm,
                                  dynamic=dynamic)
  if config.agent == 'c51':
    return c51.make_c51(c51.c51_config(d, config.c51), critic, method, num_actions, config.regulariser)
  return dqn.make_dqn(d, critic, method, num_actions, config.regulariser)


def epsilon_at(config: dqn.DQNConfig, step: int) -> float:
  """The same schedule as `dqn.epsilon_schedule`, in host arithmetic."""
  frac = min(max((step - config.warmup_steps) / config.epsilon_decay_steps, 0.0), 1.0)
  return config.epsilon_start + frac * (config.epsilon_end - config.epsilon_start)


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
  from smoothrl.envs import atari_scores  # pylint: disable=g-import-not-at-top
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
  from_buffer = jax.jit(lambda state, buffer: agent.learner_step(
      state, device_replay.sample(buffer, keys.at(sample_stream, state.updates), batch_size)))

  def update(state: dqn.DQNState, replay: Replay, rng: np.random.Generator):
    if isinstance(replay, device_replay.HostReplay):
      return from_buffer(state, replay.buffer)
    return learner_step(state, replay.sample(rng, batch_size))

  return update


def evaluate(state: dqn.DQNState, env: dm_env.Environment, steps: int, acting: _Acting, stream: jax.Array,
             measure_smoothness, rng: np.random.Generator) -> dict[str, Any]:
  """Runs `steps` steps of `acting` on `stream`; returns completed-episode returns and the on-policy smoothness."""
  returns, episode_return, states, seen = [], 0.0, [], 0
  timestep = env.reset()
  for t in range(steps):
    seen += 1  # reservoir sampling keeps a uniform sample of the visited states
    if len(states) < SMOOTHNESS_STATES:
      states.append(timestep.observation)
    else:
      j = rng.integers(0, seen)
      if j < SMOOTHNESS_STATES:
        states[j] = timestep.observation
    timestep = env.step(acting(state, stream, t, timestep.observation))
    episode_return += float(timestep.reward)
    if timestep.last():
      returns.append(episode_score(env, episode_return))
      episode_return = 0.0
      timestep = env.reset()
  measure = measure_smoothness(dqn.actor_state(state), np.stack(states))
  return eval_record(returns, getattr(env, 'episode_score', episode_return), measure)


def _train_share(configs: list[dict[str, Any]], first: bool, show_progress: bool, resume: bool
                 ) -> list[dict[str, Any]]:
  """One worker's share of `train_many`'s runs, one after another; only the first share shows progress."""
  return [_train_or_stop(config_lib.TrainConfig.from_dict(c), show_progress and first, resume) for c in configs]


def train_many(configs: list[config_lib.TrainConfig], show_progress: bool = True, resume: bool = False,
               workers: int = 1) -> list[dict[str, Any]]:
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
    return checkpoint.read_status(config.out)


def train(config: config_lib.TrainConfig, show_progress: bool = True, resume: bool = False) -> dict[str, Any]:
  """Trains one run, writing `config.json`, `metrics.jsonl`, `status.json`, checkpoints and `summary.json`.

  With `resume`, a run directory that holds a checkpoint continues from it (the metrics after the checkpoint are
  dropped and written again), and a finished run returns its summary without doing anything.
  """
  config_lib.validate(config)
  out = Path(config.out)
  if resume:
    done = finished_summary(config)
    if done is not None:
      return done
  out.mkdir(parents=True, exist_ok=True)
  atomic_write_text(out / CONFIG_FILE, config.to_json())
  saved = checkpoint.load(out) if resume else None
  checkpoint.write_status(out, 'running', 0 if saved is None else saved['step'])
  try:
    summary = _train(config, show_progress, saved)
  except BaseException as e:
    checkpoint.record_failure(out, e)
    raise
  checkpoint.write_status(out, 'done', config.steps)
  return summary


def finished_summary(config: config_lib.TrainConfig) -> dict[str, Any] | None:
  """The summary of a run that already finished in `config.out` with this config, else None."""
  out = Path(config.out)
  if (out / CONFIG_FILE).exists():
    recorded = json.loads((out / CONFIG_FILE).read_text())
    if recorded != json.loads(config.to_json()):
      raise config_lib.ConfigError(f'{out} holds a run with a different config; resume it with its own config '
                                   '(smoothrl train --resume DIR) or choose another --out')
  status = checkpoint.read_status(out)
  if status and status['state'] == 'done' and (out / SUMMARY_FILE).exists():
    return json.loads((out / SUMMARY_FILE).read_text())
  return None


def _train(config: config_lib.TrainConfig, show_progress: bool, saved: dict[str, Any] | None) -> dict[str, Any]:
  keys.unroll_threefry_on_cpu()
  out = Path(config.out)
  env = envs.make(config.env, seed=config.seed, **config.env_kwargs())
  eval_env = envs.make(config.env, seed=config.seed + EVAL_SEED_OFFSET, **config.env_kwargs())
  agent = build_agent(config, env)
  d = config.dqn
  streams = keys.streams(jax.random.PRNGKey(config.seed))
  eval_stream = keys.streams(jax.random.PRNGKey(config.seed + EVAL_SEED_OFFSET)).act
  update = make_update(agent, d.batch_size, streams.sample)
  measure_sigmas = jax.jit(agent.critic.measure)
  acting = _Acting(agent, dqn.epsilon_schedule(d))
  eval_acting = _Acting(agent, lambda t: jnp.float32(config.eval_epsilon))
  measure_smoothness = smoothness_fn(agent)

  if saved is None:
    np_rng = np.random.default_rng(config.seed)
    timestep = env.reset()
    state = agent.init(streams.init, jnp.asarray(timestep.observation))
    replay = make_replay(config, timestep.observation)
    replay.start_episode(timestep.observation)
    first, episode_return, episode_length, episodes, elapsed = 1, 0.0, 0, 0, 0.0
    recent: collections.deque = collections.deque(maxlen=20)
    last_eval: dict[str, Any] | None = None
    checkpoint.truncate_metrics(out / METRICS_FILE, 0)
  else:
    state, replay, env, eval_env, timestep = (saved['state'], saved['replay'], saved['env'], saved['eval_env'],
                                              saved['timestep'])
    checkpoint.check_fits(state, jax.eval_shape(agent.init, streams.init, jnp.asarray(timestep.observation)), out)
    np_rng = saved['np_rng']
    first = saved['step'] + 1
    episode_return, episode_length, episodes = saved['episode_return'], saved['episode_length'], saved['episodes']
    recent, last_eval, elapsed = saved['recent'], saved['last_eval'], saved['elapsed']
    checkpoint.truncate_metrics(out / METRICS_FILE, saved['step'])

  pending: list[dict[str, jax.Array]] = []
  start = time.perf_counter() - elapsed
  with (Progress(config.steps, enabled=show_progress) as progress,
        MetricsWriter(out / METRICS_FILE, out / 'tensorboard' if config.tensorboard else None) as writer):
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
        writer.write({'step': step, 'kind': 'episode', 'return': score, 'length': episode_length, **extra})
        episode_return, episode_length = 0.0, 0
        timestep = env.reset()
        replay.start_episode(timestep.observation)

      if step > d.warmup_steps and step % d.update_period == 0:
        state, metrics = update(state, replay, np_rng)
        pending.append(metrics)

      if step % config.log_period == 0 and pending:
        means = {k: float(v) for k, v in jax.device_get(
            jax.tree.map(lambda *xs: jnp.mean(jnp.stack(xs)), *pending)).items()}
        pending.clear()
        if not math.isfinite(means['loss']):
          raise config_lib.TrainingError(f'non-finite loss {means["loss"]} at step {step}; stopping this run')
        elapsed = time.perf_counter() - start
        writer.write({'step': step, 'kind': 'train', 'epsilon': epsilon_at(d, step - 1),
                      'updates': int(state.updates), 'elapsed': elapsed, 'steps_per_sec': step / elapsed, **means})

      if step % config.sigma_log_period == 0:
        sigmas, spectral_state = measure_sigmas(state.params, state.spectral)
        state = state._replace(spectral=spectral_state)
        writer.write({'step': step, 'kind': 'sigma', 'sigma': {k: float(v) for k, v in sigmas.items()},
                      'selected': list(agent.critic.selected)})

      if step % config.eval_period == 0 or step == config.steps:
        last_eval = evaluate(state, eval_env, config.eval_steps, eval_acting, keys.at(eval_stream, step),
                             measure_smoothness, np_rng)
        last_eval.update(normalised(config.env, last_eval['return_mean']))
        writer.write({'step': step, 'kind': 'eval', 'epsilon': config.eval_epsilon, **last_eval})

      if config.checkpoint_period and step % config.checkpoint_period == 0 and step < config.steps:
        checkpoint.save(out, dict(
            step=step, state=state, replay=replay, env=env, eval_env=eval_env, timestep=timestep, np_rng=np_rng,
            episode_return=episode_return, episode_length=episode_length, episodes=episodes,
            recent=recent, last_eval=last_eval, elapsed=time.perf_counter() - start))

      progress.update(step, force=step == config.steps,
                      ret=float(np.mean(recent)) if recent else None,
                      eval=last_eval['return_mean'] if last_eval else None)

  summary = {'steps': config.steps, 'episodes': episodes, 'updates': int(state.updates),
             'wall_seconds': time.perf_counter() - start, 'final_eval': last_eval, 'runner': 'host'}
  atomic_write_text(out / SUMMARY_FILE, json.dumps(summary, indent=2, sort_keys=True))
  (out / CHECKPOINT_FILE).unlink(missing_ok=True)
  return summary
