"""Atari 2600 games of the Arcade Learning Environment (ale-py) as `dm_env`s.

The preprocessing is the standard one of Mnih et al. (2015), as kept by
Machado et al. (2018) and Dopamine:

* each agent step repeats the action for `frame_skip` = 4 emulator frames and
  sums their rewards;
* the observed frame is the pixel-wise maximum of the last two emulator frames
  of the step (this removes the flicker of sprites drawn on alternate frames;
  if the game ends on the first frames of a step, the last frame alone), in
  ALE's grayscale palette (luminance), resized from 210x160 to 84x84 by
  area interpolation (each output pixel is the area-weighted mean of the input
  pixels it covers, as OpenCV's `INTER_AREA`), rounded to `uint8`;
* observations are stacks of the last 4 frames, `(84, 84, 4)` `uint8`, oldest
  first (`obs[..., -1]` is the newest frame). At the start of an episode the
  frames before the first one are zeros (zero padding, as Dopamine and ale-py's
  vector environment), so the first observation is `[0, 0, 0, f0]`;
* the step's summed reward is clipped to [-1, 1] for learning
  (`timestep.reward`); the raw reward of the last step is
  `env.last_raw_reward` and the raw score of the current game so far is
  `env.episode_score`, which a runner logs when `timestep.last()`;
* an episode is truncated (`dm_env.truncation`, discount 1) after
  `max_episode_frames` = 108,000 emulator frames, i.e. 27,000 agent steps,
  counted from the end of the no-op start (as Dopamine's 27,000 steps and
  ale-py's vector environment).

Two protocols (`protocol=`) set the two usual sources of stochasticity:

* `'noop'` (Mnih et al. 2015, Rainbow, the thesis): each episode starts with a
  uniform random number in {0, ..., 30} (`noop_max`) of NOOP emulator frames
  (single frames, not agent steps), drawn from a generator seeded with `seed`;
  a game that ends during them is reset; deterministic emulator
  (`repeat_action_probability` 0). DQN Zoo and OpenAI Baselines draw from
  {1, ..., 30}; the difference is at most one frame.
* `'sticky'` (Machado et al. 2018, Dopamine): at every emulator frame the
  previous action is repeated with probability 0.25 instead of the chosen one
  (`repeat_action_probability`); no no-op start.

`noop_max` and `repeat_action_probability` override the protocol's values.
Actions index the game's minimal action set by default (as Mnih et al. and
Dopamine; Machado et al. recommend the full set of 18, `full_action_space`).

With `terminal_on_life_loss=True`, a step on which a life is lost (and the game
is not over) has discount 0, so learning does not bootstrap across it, but it
is a `MID` step: the game goes on without a reset and the frame stack is kept.
The dm_env episode, the one whose score a runner logs, ends at game over. (This
differs from Dopamine, which also restarts the frame stack at a life loss.)

Game names are CamelCase versions of ale-py's ROM ids (`Pong`, `Breakout`,
`MontezumaRevenge`, `Pitfall2`, `TicTacToe3D`), as in Gymnasium's `ALE/*-v5`.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import dm_env
import numpy as np
from dm_env import specs

from smoothrl.envs.minatar import validate_action

PROTOCOLS = ('noop', 'sticky')
FRAME_SHAPE = (84, 84)
STACK_SIZE = 4
FRAME_SKIP = 4
NOOP_MAX = 30
STICKY_ACTION_PROB = 0.25
MAX_EPISODE_FRAMES = 108_000

# ROMs that ale-py ships but that have no single-player mode: loading fails.
_MULTIPLAYER_ONLY = frozenset({'combat', 'joust', 'maze_craze', 'warlords'})

_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)


def rom_id_to_name(rom_id: str) -> str:
  """`montezuma_revenge` -> `MontezumaRevenge` (Gymnasium's rule)."""
  return rom_id.title().replace('_', '')


@functools.lru_cache(maxsize=1)
def _rom_ids() -> dict[str, str]:
  """CamelCase game name -> ROM id, read without importing ale_py (slow)."""
  spec = importlib.util.find_spec('ale_py')
  if spec is None or not spec.submodule_search_locations:
    return {}
  md5 = Path(list(spec.submodule_search_locations)[0]) / 'roms' / 'md5.json'
  if not md5.exists():
    return {}
  ids = sorted(Path(rom).stem for rom in json.loads(md5.read_text()))
  return {rom_id_to_name(r): r for r in ids if r not in _MULTIPLAYER_ONLY}


def games() -> tuple[str, ...]:
  """The valid game names (empty if ale-py is not installed)."""
  return tuple(_rom_ids())


def check_game(game: str) -> str:
  """Returns the ROM id of `game`, or raises `ValueError` listing the games."""
  rom_id = _rom_ids().get(game)
  if rom_id is None:
    if not _rom_ids():
      raise ImportError('Atari games need ale-py: pip install ale-py')
    raise ValueError(f'unknown Atari game {game!r}; valid: {", ".join(games())}')
  return rom_id


def _import_ale() -> Any:
  ale_py = importlib.import_module('ale_py')
  ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
  return ale_py


def _protocol_settings(
  protocol: str,
  noop_max: int | None,
  repeat_action_probability: float | None,
) -> tuple[int, float]:
  if protocol not in PROTOCOLS:
    raise ValueError(f'unknown Atari protocol {protocol!r}; valid: {", ".join(PROTOCOLS)}')
  if noop_max is None:
    noop_max = NOOP_MAX if protocol == 'noop' else 0
  if repeat_action_probability is None:
    repeat_action_probability = STICKY_ACTION_PROB if protocol == 'sticky' else 0.0
  if noop_max < 0:
    raise ValueError(f'noop_max must be non-negative, got {noop_max}')
  if not 0.0 <= repeat_action_probability <= 1.0:
    raise ValueError(f'repeat_action_probability must be in [0, 1], got {repeat_action_probability}')
  return noop_max, float(repeat_action_probability)


def _check_common(seed: int, frame_skip: int, stack_size: int, max_episode_frames: int | None) -> None:
  if not 0 <= seed < 2**31:
    raise ValueError(f'seed must be in [0, 2**31), got {seed}')
  if frame_skip < 1:
    raise ValueError(f'frame_skip must be positive, got {frame_skip}')
  if stack_size < 1:
    raise ValueError(f'stack_size must be positive, got {stack_size}')
  if max_episode_frames is not None and max_episode_frames < 1:
    raise ValueError(f'max_episode_frames must be positive, got {max_episode_frames}')


@functools.cache
def _area_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
  """Indices and weights, both (n_out, k): out[i] = sum_k w[i, k] in[idx[i, k]].

  Output cell i covers [i, i + 1) * n_in / n_out of the input axis; each input
  cell [j, j + 1) weighs the length of its overlap with that cover, divided by
  n_in / n_out.
  """
  scale = n_in / n_out
  k = math.ceil(scale) + 1
  idx = np.zeros((n_out, k), np.intp)
  w = np.zeros((n_out, k), np.float32)
  for i in range(n_out):
    lo, hi = i * scale, (i + 1) * scale
    for m, j in enumerate(range(math.floor(lo), min(math.ceil(hi), n_in))):
      idx[i, m] = j
      w[i, m] = (min(hi, j + 1) - max(lo, j)) / scale
  return idx, w


def area_resize(frame: np.ndarray, shape: tuple[int, int] = FRAME_SHAPE) -> np.ndarray:
  """Resizes a 2-D `uint8` frame by area interpolation, rounding to nearest.

  Separable: rows first, then columns, each a weighted sum over the input
  cells an output cell covers (fractional cover at the edges).
  """
  rows, row_w = _area_weights(frame.shape[0], shape[0])
  cols, col_w = _area_weights(frame.shape[1], shape[1])
  tmp = np.einsum('ik,ikj->ij', row_w, frame[rows].astype(np.float32))
  out = np.einsum('jk,ijk->ij', col_w, tmp[:, cols])
  return np.rint(out).astype(np.uint8)


class AtariEnv(dm_env.Environment):
  """One Atari game with the standard preprocessing, as a `dm_env.Environment`.

  See the module docstring for the preprocessing and the protocols.

  Attributes readable after each step, for logging: `last_raw_reward` (the
  unclipped reward of the last step), `episode_score` (the unclipped score of
  the current game), `episode_steps`, `lives`, `life_lost` (whether the last
  step lost a life), `last_noops` (no-op frames at the last reset).

  `get_state()` and `set_state()` save and restore an environment as arrays
  and JSON, without pickle, so runs can be checkpointed and resume exactly:
  the emulator's state with its random state (ale-py's serialised `ALEState`,
  as bytes), the frame stack, the counters and the no-op generator. ALE keeps
  the action that sticky actions repeat outside its state; with sticky
  actions (0 < repeat_action_probability < 1) the episode's start and actions
  are saved too, and `set_state` replays the episode to recover it (see
  `set_state`). Environments also pickle, through the same state.
  """

  def __init__(
    self,
    game: str,
    seed: int = 0,
    protocol: str = 'noop',
    *,
    noop_max: int | None = None,
    repeat_action_probability: float | None = None,
    frame_skip: int = FRAME_SKIP,
    stack_size: int = STACK_SIZE,
    max_episode_frames: int | None = MAX_EPISODE_FRAMES,
    full_action_space: bool = False,
    terminal_on_life_loss: bool = False,
    clip_rewards: bool = True,
  ):
    """Loads and seeds the game.

    Args:
      game: one of `games()`, e.g. `'Pong'`.
      seed: in [0, 2**31); seeds the emulator (`random_seed`, which drives
        sticky actions) and the no-op start generator.
      protocol: `'noop'` or `'sticky'` (see the module docstring).
      noop_max: no-op starts draw from {0, ..., noop_max} frames; `None` takes
        the protocol's value (30 for `'noop'`, 0 for `'sticky'`).
      repeat_action_probability: sticky-action probability; `None` takes the
        protocol's value (0 for `'noop'`, 0.25 for `'sticky'`).
      frame_skip: emulator frames per agent step.
      stack_size: frames per observation.
      max_episode_frames: truncation limit in emulator frames after the no-op
        start (rounded up to whole agent steps); `None` for no limit.
      full_action_space: all 18 actions instead of the game's minimal set.
      terminal_on_life_loss: discount 0 on a step that loses a life, without
        ending the episode.
      clip_rewards: whether `timestep.reward` is clipped to [-1, 1].
    """
    rom_id = check_game(game)
    noop_max, repeat_action_probability = _protocol_settings(protocol, noop_max, repeat_action_probability)
    _check_common(seed, frame_skip, stack_size, max_episode_frames)
    self._game = game
    self._rom_id = rom_id
    self._seed = seed
    self._protocol = protocol
    self._noop_max = noop_max
    self._repeat_action_probability = repeat_action_probability
    self._frame_skip = frame_skip
    self._stack_size = stack_size
    self._max_episode_frames = max_episode_frames
    self._max_episode_steps = None if max_episode_frames is None else -(-max_episode_frames // frame_skip)
    self._full_action_space = full_action_space
    self._terminal_on_life_loss = terminal_on_life_loss
    self._clip_rewards = clip_rewards
    self._noop_rng = np.random.default_rng(seed)
    self._ale = self._load_ale()
    self._action_set = [
      a.value for a in (self._ale.getLegalActionSet() if full_action_space else self._ale.getMinimalActionSet())
    ]
    height, width = self._ale.getScreenDims()
    self._screens = np.zeros((2, height, width), np.uint8)
    self._frames = [np.zeros(FRAME_SHAPE, np.uint8)] * stack_size
    self.last_raw_reward = 0.0
    self.episode_score = 0.0
    self.episode_steps = 0
    self.lives = 0
    self.life_lost = False
    self.last_noops = 0
    self._needs_reset = True
    # ALE keeps the action that sticky actions repeat outside its saved state:
    # with sticky actions, the episode's start (after the no-ops, where that
    # action is NOOP) and ALE actions since, which `set_state` replays.
    self._replays = 0.0 < repeat_action_probability < 1.0
    self._episode_start: bytes | None = None
    self._episode_actions: list[int] = []

  def _load_ale(self) -> Any:
    ale_py = _import_ale()
    ale = ale_py.ALEInterface()
    ale.setInt('random_seed', self._seed)
    ale.setFloat('repeat_action_probability', self._repeat_action_probability)
    ale.loadROM(str(ale_py.roms.get_rom_path(self._rom_id)))
    return ale

  @property
  def game(self) -> str:
    return self._game

  @property
  def protocol(self) -> str:
    return self._protocol

  @property
  def noop_max(self) -> int:
    return self._noop_max

  @property
  def repeat_action_probability(self) -> float:
    return self._repeat_action_probability

  @property
  def frame_skip(self) -> int:
    return self._frame_skip

  @property
  def max_episode_frames(self) -> int | None:
    return self._max_episode_frames

  @property
  def terminal_on_life_loss(self) -> bool:
    return self._terminal_on_life_loss

  @property
  def ale(self) -> Any:
    """The wrapped `ale_py.ALEInterface`."""
    return self._ale

  def action_names(self) -> list[str]:
    """The names of the actions, e.g. `['NOOP', 'FIRE', 'RIGHT', ...]`."""
    return [_import_ale().Action(a).name for a in self._action_set]

  def _push(self, frame: np.ndarray) -> np.ndarray:
    self._frames = self._frames[1:] + [area_resize(frame)]
    return np.stack(self._frames, axis=-1)

  def reset(self) -> dm_env.TimeStep:
    ale = self._ale
    ale.reset_game()
    noops = int(self._noop_rng.integers(0, self._noop_max + 1)) if self._noop_max else 0
    for _ in range(noops):
      ale.act(0)  # NOOP
      if ale.game_over():
        ale.reset_game()
    self.last_noops = noops
    if self._replays:
      self._episode_start = ale.cloneState(include_rng=True).serialize()
      self._episode_actions = []
    ale.getScreenGrayscale(self._screens[0])
    self._frames = [np.zeros(FRAME_SHAPE, np.uint8)] * self._stack_size
    self.last_raw_reward = 0.0
    self.episode_score = 0.0
    self.episode_steps = 0
    self.lives = ale.lives()
    self.life_lost = False
    self._needs_reset = False
    return dm_env.restart(self._push(self._screens[0]))

  def step(self, action: Any) -> dm_env.TimeStep:
    if self._needs_reset:
      return self.reset()
    ale = self._ale
    ale_action = self._action_set[validate_action(action, len(self._action_set))]
    if self._replays:
      self._episode_actions.append(ale_action)
    reward = 0
    grabbed = 0
    game_over = False
    k = 0
    for k in range(self._frame_skip):  # as `_replay`
      reward += ale.act(ale_action)
      game_over = ale.game_over()
      # The last two frames of the step, or the last one if the game ends
      # earlier (its partner would belong to the previous step).
      if game_over or k >= self._frame_skip - 2:
        ale.getScreenGrayscale(self._screens[k % 2])
        grabbed += 1
      if game_over:
        break
    if grabbed == 2:
      frame = np.maximum(self._screens[0], self._screens[1])
    else:
      frame = self._screens[k % 2]
    obs = self._push(frame)

    self.episode_steps += 1
    self.last_raw_reward = float(reward)
    self.episode_score += float(reward)
    lives = ale.lives()
    self.life_lost = lives < self.lives
    self.lives = lives
    clipped = np.float32(max(-1, min(1, reward)) if self._clip_rewards else reward)
    if game_over:
      self._needs_reset = True
      # `dm_env.termination` with the discount typed as in `discount_spec`.
      return dm_env.TimeStep(dm_env.StepType.LAST, clipped, _ZERO, obs)
    discount = _ZERO if self._terminal_on_life_loss and self.life_lost else _ONE
    if self._max_episode_steps is not None and self.episode_steps >= self._max_episode_steps:
      self._needs_reset = True
      return dm_env.TimeStep(dm_env.StepType.LAST, clipped, discount, obs)
    return dm_env.TimeStep(dm_env.StepType.MID, clipped, discount, obs)

  def observation_spec(self) -> specs.BoundedArray:
    return specs.BoundedArray(
      shape=(*FRAME_SHAPE, self._stack_size), dtype=np.uint8, minimum=0, maximum=255, name='observation'
    )

  def action_spec(self) -> specs.DiscreteArray:
    return specs.DiscreteArray(num_values=len(self._action_set), dtype=np.int32, name='action')

  def reward_spec(self) -> specs.Array:
    return specs.Array(shape=(), dtype=np.float32, name='reward')

  def discount_spec(self) -> specs.BoundedArray:
    return specs.BoundedArray(shape=(), dtype=np.float32, minimum=0.0, maximum=1.0, name='discount')

  def close(self) -> None:
    self._ale = None

  def _settings(self) -> dict[str, Any]:
    """The constructor's arguments."""
    return {
      'game': self._game,
      'seed': self._seed,
      'protocol': self._protocol,
      'noop_max': self._noop_max,
      'repeat_action_probability': self._repeat_action_probability,
      'frame_skip': self._frame_skip,
      'stack_size': self._stack_size,
      'max_episode_frames': self._max_episode_frames,
      'full_action_space': self._full_action_space,
      'terminal_on_life_loss': self._terminal_on_life_loss,
      'clip_rewards': self._clip_rewards,
    }

  def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The environment's state as (arrays, JSON-able metadata), for `set_state`.

    Arrays: the emulator's state with its random state
    (`cloneState(include_rng=True).serialize()`, as uint8), the frame stack
    and the last two screens; with sticky actions also the episode's start
    state and its ALE actions. Metadata: the settings, the counters and the
    no-op generator's state.
    """

    def as_array(state: bytes) -> np.ndarray:
      return np.frombuffer(state, np.uint8).copy()

    arrays = {
      'ale': as_array(self._ale.cloneState(include_rng=True).serialize()),
      'frames': np.stack(self._frames),
      'screens': self._screens.copy(),
    }
    if self._replays:
      arrays['episode_actions'] = np.asarray(self._episode_actions, np.int32)
      if self._episode_start is not None:
        arrays['episode_start'] = as_array(self._episode_start)
    meta = {
      'settings': self._settings(),
      'needs_reset': self._needs_reset,
      'noop_rng': self._noop_rng.bit_generator.state,
      'last_raw_reward': self.last_raw_reward,
      'episode_score': self.episode_score,
      'episode_steps': self.episode_steps,
      'lives': self.lives,
      'life_lost': self.life_lost,
      'last_noops': self.last_noops,
    }
    return arrays, meta

  def set_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Restores a state of `get_state` into an environment of the same settings.

    The emulator is restored from its saved state, random state included.
    With sticky actions, ALE's repeated action (the last one it applied, which
    its state omits) is recovered by replaying the episode from its start,
    where it is NOOP, with the same actions (at most `max_episode_frames`
    emulator frames); the replay must end in the saved state exactly.

    Raises:
      ValueError: the state is of an environment of other settings, or the
        replay does not end in the saved emulator state.
    """
    if meta['settings'] != self._settings():
      raise ValueError(f'a saved state of AtariEnv({meta["settings"]}) cannot be restored into {self!r}')
    ale_py = _import_ale()
    saved = arrays['ale'].astype(np.uint8).tobytes()
    if self._replays and 'episode_start' in arrays:
      self._ale.reset_game()  # the repeated action is NOOP, as it was then
      self._ale.restoreState(ale_py.ALEState(arrays['episode_start'].astype(np.uint8).tobytes()))
      for ale_action in arrays['episode_actions'].tolist():
        self._replay(ale_action)
      if self._ale.cloneState(include_rng=True).serialize() != saved:
        raise ValueError(
          'replaying the saved episode did not end in the saved emulator '
          'state: the state was saved by another version of ale-py or of '
          'its ROM'
        )
    self._ale.restoreState(ale_py.ALEState(saved))
    self._frames = list(np.array(arrays['frames'], np.uint8))
    np.copyto(self._screens, arrays['screens'])
    if self._replays:
      self._episode_start = arrays['episode_start'].astype(np.uint8).tobytes() if 'episode_start' in arrays else None
      self._episode_actions = arrays['episode_actions'].tolist()
    self._noop_rng.bit_generator.state = meta['noop_rng']
    self.last_raw_reward = float(meta['last_raw_reward'])
    self.episode_score = float(meta['episode_score'])
    self.episode_steps = int(meta['episode_steps'])
    self.lives = int(meta['lives'])
    self.life_lost = bool(meta['life_lost'])
    self.last_noops = int(meta['last_noops'])
    self._needs_reset = bool(meta['needs_reset'])

  def _replay(self, ale_action: int) -> None:
    """The emulator frames of one `step` with `ale_action`."""
    for _ in range(self._frame_skip):
      self._ale.act(ale_action)
      if self._ale.game_over():
        break

  def __getstate__(self) -> dict[str, Any]:
    arrays, meta = self.get_state()
    return {'arrays': arrays, 'meta': meta}

  def __setstate__(self, state: dict[str, Any]) -> None:
    self.__init__(**state['meta']['settings'])
    self.set_state(state['arrays'], state['meta'])

  def __repr__(self) -> str:
    return (
      f'AtariEnv(game={self._game!r}, seed={self._seed}, '
      f'protocol={self._protocol!r}, noop_max={self._noop_max}, '
      f'repeat_action_probability={self._repeat_action_probability}, '
      f'frame_skip={self._frame_skip}, '
      f'max_episode_frames={self._max_episode_frames}, '
      f'full_action_space={self._full_action_space}, '
      f'terminal_on_life_loss={self._terminal_on_life_loss})'
    )


class AtariVector:
  """`num_envs` copies of a game, stepped together in C++ threads.

  Built on ale-py's `AtariVectorEnv`, with the preprocessing options mapped to
  its arguments so that each copy matches `AtariEnv`: grayscale, the same
  frame skip and max-pool over the last two frames of a step, OpenCV
  `INTER_AREA` resizing to 84x84, zero-padded stacks, no FIRE at reset, no-op
  starts in {0, ..., noop_max} frames, and the frame limit counted after the
  no-op start. Copy i seeds its emulator with `seed + i`, like
  `AtariEnv(seed=seed + i)`; its no-op starts come from a different generator.
  Known differences from `AtariEnv`: resizing may round differently by 1 grey
  level on a few pixels; on a step cut short (game over, or the frame limit
  reached) the pooled frames are the last ones ale-py captured, which can
  include frames of the previous step.

  `reset()` and `step(actions)` return a `dm_env.TimeStep` whose fields are
  arrays with a leading axis of size `num_envs`: `step_type` (int8
  `dm_env.StepType` values), `reward` (float32, clipped as in `AtariEnv`),
  `discount` (float32) and `observation` ((num_envs, 84, 84, 4) uint8).
  Auto-reset: a copy whose last step was `LAST` is reset by the next `step`,
  which ignores its action and returns `FIRST` with reward 0 and discount 1 --
  the same as calling `AtariEnv.step` after a `LAST`. Logging mirrors
  `AtariEnv`: `last_raw_reward`, `episode_score`, `lives` are arrays.
  """

  def __init__(
    self,
    game: str,
    num_envs: int,
    seed: int = 0,
    protocol: str = 'noop',
    *,
    noop_max: int | None = None,
    repeat_action_probability: float | None = None,
    frame_skip: int = FRAME_SKIP,
    stack_size: int = STACK_SIZE,
    max_episode_frames: int | None = MAX_EPISODE_FRAMES,
    full_action_space: bool = False,
    terminal_on_life_loss: bool = False,
    clip_rewards: bool = True,
    num_threads: int = 0,
  ):
    """Builds the copies; the arguments are those of `AtariEnv`.

    Args:
      game: one of `games()`.
      num_envs: number of copies.
      seed: copy i uses `seed + i`.
      protocol: `'noop'` or `'sticky'`.
      noop_max: see `AtariEnv`.
      repeat_action_probability: see `AtariEnv`.
      frame_skip: see `AtariEnv`.
      stack_size: see `AtariEnv`.
      max_episode_frames: see `AtariEnv`.
      full_action_space: see `AtariEnv`.
      terminal_on_life_loss: see `AtariEnv`.
      clip_rewards: see `AtariEnv`.
      num_threads: worker threads; 0 lets ale-py choose.
    """
    rom_id = check_game(game)
    noop_max, repeat_action_probability = _protocol_settings(protocol, noop_max, repeat_action_probability)
    _check_common(seed, frame_skip, stack_size, max_episode_frames)
    if num_envs < 1:
      raise ValueError(f'num_envs must be positive, got {num_envs}')
    if seed + num_envs > 2**31:
      raise ValueError('seed + num_envs must be at most 2**31')
    _import_ale()
    vector_env = importlib.import_module('ale_py.vector_env')
    self._game = game
    self._num_envs = num_envs
    self._seed = seed
    self._protocol = protocol
    self._noop_max = noop_max
    self._terminal_on_life_loss = terminal_on_life_loss
    self._clip_rewards = clip_rewards
    self._stack_size = stack_size
    self._env = vector_env.AtariVectorEnv(
      rom_id,
      num_envs,
      num_threads=num_threads,
      # ale-py draws no-ops from {0, ..., noop_max - 1}.
      noop_max=noop_max + 1 if noop_max else 0,
      repeat_action_probability=repeat_action_probability,
      full_action_space=full_action_space,
      frameskip=frame_skip,
      stack_num=stack_size,
      img_height=FRAME_SHAPE[0],
      img_width=FRAME_SHAPE[1],
      grayscale=True,
      maxpool=True,
      use_fire_reset=False,
      episodic_life=False,
      life_loss_info=False,
      reward_clipping=False,
      max_num_frames_per_episode=(max_episode_frames if max_episode_frames is not None else 2**30),
      autoreset_mode='NextStep',
    )
    self._num_actions = int(self._env.single_action_space.n)
    self.last_raw_reward = np.zeros(num_envs, np.float32)
    self.episode_score = np.zeros(num_envs, np.float64)
    self.lives = np.zeros(num_envs, np.int32)
    self._ended = np.ones(num_envs, bool)
    self._started = False

  @property
  def num_envs(self) -> int:
    return self._num_envs

  @property
  def game(self) -> str:
    return self._game

  def _observation(self, obs: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(obs.transpose(0, 2, 3, 1))

  def reset(self) -> dm_env.TimeStep:
    """Resets every copy (seeding them on the first call only)."""
    seeds = None if self._started else np.arange(self._seed, self._seed + self._num_envs)
    obs, info = self._env.reset(seed=seeds)
    self._started = True
    self._ended[:] = False
    self.last_raw_reward[:] = 0.0
    self.episode_score[:] = 0.0
    self.lives = np.asarray(info['lives'], np.int32)
    n = self._num_envs
    return dm_env.TimeStep(
      np.full(n, dm_env.StepType.FIRST, np.int8),
      np.zeros(n, np.float32),
      np.ones(n, np.float32),
      self._observation(obs),
    )

  def step(self, actions: Any) -> dm_env.TimeStep:
    """Steps every copy (copies that had ended are reset instead)."""
    if not self._started:
      return self.reset()
    actions = np.asarray(actions)
    if (
      actions.shape != (self._num_envs,)
      or actions.dtype.kind not in 'iu'
      or actions.min() < 0
      or actions.max() >= self._num_actions
    ):
      raise ValueError(f'actions must be {self._num_envs} integers in [0, {self._num_actions}), got {actions!r}')
    obs, reward, terminated, truncated, info = self._env.step(actions.astype(np.int32))
    restarted = self._ended.copy()
    raw = np.where(restarted, 0, reward).astype(np.float32)
    lives = np.asarray(info['lives'], np.int32)
    life_lost = (lives < self.lives) & ~restarted
    self.lives = lives
    self.last_raw_reward = raw
    self.episode_score = np.where(restarted, 0.0, self.episode_score + raw)
    terminated = terminated & ~restarted
    truncated = truncated & ~terminated & ~restarted
    step_type = np.where(
      restarted, dm_env.StepType.FIRST, np.where(terminated | truncated, dm_env.StepType.LAST, dm_env.StepType.MID)
    ).astype(np.int8)
    discount = np.ones(self._num_envs, np.float32)
    discount[terminated] = 0.0
    if self._terminal_on_life_loss:
      discount[life_lost] = 0.0
    self._ended = terminated | truncated
    clipped = np.clip(raw, -1.0, 1.0) if self._clip_rewards else raw
    return dm_env.TimeStep(step_type, clipped.astype(np.float32), discount, self._observation(obs))

  def observation_spec(self) -> specs.BoundedArray:
    """The spec of one copy's observation."""
    return specs.BoundedArray(
      shape=(*FRAME_SHAPE, self._stack_size), dtype=np.uint8, minimum=0, maximum=255, name='observation'
    )

  def action_spec(self) -> specs.DiscreteArray:
    """The spec of one copy's action."""
    return specs.DiscreteArray(num_values=self._num_actions, dtype=np.int32, name='action')

  def close(self) -> None:
    self._env.close()

  def __repr__(self) -> str:
    return (
      f'AtariVector(game={self._game!r}, num_envs={self._num_envs}, '
      f'seed={self._seed}, protocol={self._protocol!r}, '
      f'noop_max={self._noop_max})'
    )
