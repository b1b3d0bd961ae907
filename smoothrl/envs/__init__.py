"""Environments, built by name: the one registry.

Names are `<family>/<rest>`: `minatar/<game>` for the MinAtar games (the official package), `jax-minatar/<game>`
for their JAX-native versions (`jax_minatar`, behind dm_env), `atari/<Game>` for the Atari games (e.g.
`atari/Pong`) and `chain/<n>` for the test chain MDP. `make` builds the dm_env environment of a name, `make_jax`
the pure-functional one that the compiled runner scans (`minatar/<game>` and `jax-minatar/<game>` share the
JAX-native game; `chain/<n>` has one too). A new family is added by registering an `EnvFamily` in `ENV_FAMILIES`
(see `register_family`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import dm_env
import jax

from smoothrl import keys
from smoothrl.envs import atari, chain, jax_env, minatar
from smoothrl.envs.atari import AtariEnv
from smoothrl.envs.chain import ChainEnv
from smoothrl.envs.jax_chain import JaxChain
from smoothrl.envs.jax_env import JaxEnv
from smoothrl.envs.minatar import MinAtarEnv


@dataclasses.dataclass(frozen=True)
class EnvFamily:
  """How to check and build the environments of one family.

  Attributes:
    names: the valid names after `<family>/`, as shown to users; a pattern such
      as `<n>` stands for a parameter.
    is_valid: whether a name after `<family>/` is valid; must not build
      anything.
    factory: builds the environment from the name after `<family>/`, a seed
      and keyword arguments.
    jax_factory: builds the JAX-native environment from the name after
      `<family>/` and keyword arguments; None for a family without one.
  """

  names: tuple[str, ...]
  is_valid: Callable[[str], bool]
  factory: Callable[..., dm_env.Environment]
  jax_factory: Callable[..., JaxEnv] | None = None


def _make_minatar(game: str, seed: int, **kwargs: Any) -> dm_env.Environment:
  return MinAtarEnv(game, seed=seed, **kwargs)


def _jax_minatar(game: str, **kwargs: Any) -> JaxEnv:
  # gymnax (the `envs` extra) is imported only when a JAX-native MinAtar game is built.
  from smoothrl.envs import jax_minatar  # pylint: disable=g-import-not-at-top

  return jax_env.NoTruncation(jax_minatar.make(game, **kwargs))


def _make_jax_minatar(game: str, seed: int, **kwargs: Any) -> dm_env.Environment:
  return jax_env.DmEnv(_jax_minatar(game, **kwargs), keys.streams(jax.random.PRNGKey(seed)).env)


def _make_atari(game: str, seed: int, **kwargs: Any) -> dm_env.Environment:
  return AtariEnv(game, seed=seed, **kwargs)


def _is_chain_length(rest: str) -> bool:
  return rest.isascii() and rest.isdigit() and int(rest) >= 1


def _make_chain(rest: str, seed: int, **kwargs: Any) -> dm_env.Environment:
  del seed  # The chain is deterministic.
  return ChainEnv(n=int(rest), **kwargs)


def _jax_chain(rest: str, **kwargs: Any) -> JaxEnv:
  return JaxChain(int(rest), **kwargs)


ENV_FAMILIES: dict[str, EnvFamily] = {
  'minatar': EnvFamily(
    names=minatar.GAMES, is_valid=lambda game: game in minatar.GAMES, factory=_make_minatar, jax_factory=_jax_minatar
  ),
  'jax-minatar': EnvFamily(
    names=minatar.GAMES,
    is_valid=lambda game: game in minatar.GAMES,
    factory=_make_jax_minatar,
    jax_factory=_jax_minatar,
  ),
  # The game list comes from ale-py's ROM index without importing ale-py.
  'atari': EnvFamily(names=atari.games(), is_valid=lambda game: game in atari.games(), factory=_make_atari),
  'chain': EnvFamily(names=('<n>',), is_valid=_is_chain_length, factory=_make_chain, jax_factory=_jax_chain),
}


def register_family(name: str, family: EnvFamily) -> None:
  """Adds a family of environments, e.g. `atari`, to `ENV_FAMILIES`."""
  if '/' in name or not name:
    raise ValueError(f'invalid family name {name!r}')
  if name in ENV_FAMILIES:
    raise ValueError(f'environment family {name!r} is already registered')
  ENV_FAMILIES[name] = family


def list_envs() -> tuple[str, ...]:
  """The valid environment names (`<n>` stands for a positive integer)."""
  return tuple(f'{family}/{rest}' for family, spec in ENV_FAMILIES.items() for rest in spec.names)


def _parse(name: str) -> tuple[EnvFamily, str]:
  family_name, sep, rest = name.partition('/')
  family = ENV_FAMILIES.get(family_name)
  if sep and family is not None and family.is_valid(rest):
    return family, rest
  if sep and family is not None:  # a known family: list its names
    valid = ', '.join(f'{family_name}/{n}' for n in family.names)
  else:
    valid = ', '.join(f'{f}/<{"game" if f != "chain" else "n"}>' for f in ENV_FAMILIES)
    valid += '; minatar and jax-minatar games: ' + ', '.join(ENV_FAMILIES['minatar'].names)
  raise ValueError(f'unknown environment {name!r}; valid: {valid}')


def validate_name(name: str) -> None:
  """Raises `ValueError` listing the valid names if `name` is not one."""
  _parse(name)


def make(name: str, seed: int, **kwargs: Any) -> dm_env.Environment:
  """Builds the environment `name`, e.g. `minatar/breakout` or `chain/5`.

  Args:
    name: `<family>/<rest>`, one of `list_envs()`.
    seed: the environment's seed (ignored by deterministic environments).
    **kwargs: passed to the environment's constructor.

  Returns:
    The environment, not yet reset.
  """
  family, rest = _parse(name)
  return family.factory(rest, seed, **kwargs)


def make_jax(name: str, **kwargs: Any) -> JaxEnv:
  """The JAX-native environment of `name` (a `JaxEnv`); `ValueError` for names without one.

  The same name gives equal environments, which jitted functions may take as a static argument.
  """
  family, rest = _parse(name)
  if family.jax_factory is None:
    native = ', '.join(
      f'{f}/<{"n" if f == "chain" else "game"}>' for f, spec in ENV_FAMILIES.items() if spec.jax_factory is not None
    )
    raise ValueError(f'{name!r} has no JAX-native version; there is one for {native}')
  return family.jax_factory(rest, **kwargs)


__all__ = [
  'AtariEnv',
  'ChainEnv',
  'ENV_FAMILIES',
  'EnvFamily',
  'JaxEnv',
  'MinAtarEnv',
  'atari',
  'chain',
  'list_envs',
  'make',
  'make_jax',
  'minatar',
  'register_family',
  'validate_name',
]
