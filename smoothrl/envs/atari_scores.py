"""Random and human reference scores on Atari-57, and human-normalised scores.

HNS(game, score) = 100 (score - random) / (human - random): 0 is the random
agent, 100 the professional human game tester.

Source: the "Random" and "Human" columns of the Atari-57 score table of
Badia et al. (2020), "Agent57: Outperforming the Atari Human Benchmark"
(ICML), the values also used by Hessel et al. (2018, Rainbow) and DQN Zoo
(Quan & Ostrovski, 2020). For the 49 games of Mnih et al. (2015, Nature,
Extended Data Table 2) the random scores are theirs; the human scores are
those of the later 57-game tables (e.g. Wang et al., 2016), which differ from
Mnih et al.'s for some games (Pong 14.6 here, 9.3 there). They were measured
with no-op starts (up to 30 no-ops) and episodes capped at 108,000 frames,
i.e. the `'noop'` protocol of `smoothrl.envs.atari`. Video Pinball's human
score is barely above random, so its HNS is very sensitive to the score.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

# Game (the name in `atari/<Game>`) -> (random, human).
REFERENCE_SCORES: dict[str, tuple[float, float]] = {
  'Alien': (227.8, 7127.7),
  'Amidar': (5.8, 1719.5),
  'Assault': (222.4, 742.0),
  'Asterix': (210.0, 8503.3),
  'Asteroids': (719.1, 47388.7),
  'Atlantis': (12850.0, 29028.1),
  'BankHeist': (14.2, 753.1),
  'BattleZone': (2360.0, 37187.5),
  'BeamRider': (363.9, 16926.5),
  'Berzerk': (123.7, 2630.4),
  'Bowling': (23.1, 160.7),
  'Boxing': (0.1, 12.1),
  'Breakout': (1.7, 30.5),
  'Centipede': (2090.9, 12017.0),
  'ChopperCommand': (811.0, 7387.8),
  'CrazyClimber': (10780.5, 35829.4),
  'Defender': (2874.5, 18688.9),
  'DemonAttack': (152.1, 1971.0),
  'DoubleDunk': (-18.6, -16.4),
  'Enduro': (0.0, 860.5),
  'FishingDerby': (-91.7, -38.7),
  'Freeway': (0.0, 29.6),
  'Frostbite': (65.2, 4334.7),
  'Gopher': (257.6, 2412.5),
  'Gravitar': (173.0, 3351.4),
  'Hero': (1027.0, 30826.4),
  'IceHockey': (-11.2, 0.9),
  'Jamesbond': (29.0, 302.8),
  'Kangaroo': (52.0, 3035.0),
  'Krull': (1598.0, 2665.5),
  'KungFuMaster': (258.5, 22736.3),
  'MontezumaRevenge': (0.0, 4753.3),
  'MsPacman': (307.3, 6951.6),
  'NameThisGame': (2292.3, 8049.0),
  'Phoenix': (761.4, 7242.6),
  'Pitfall': (-229.4, 6463.7),
  'Pong': (-20.7, 14.6),
  'PrivateEye': (24.9, 69571.3),
  'Qbert': (163.9, 13455.0),
  'Riverraid': (1338.5, 17118.0),
  'RoadRunner': (11.5, 7845.0),
  'Robotank': (2.2, 11.9),
  'Seaquest': (68.4, 42054.7),
  'Skiing': (-17098.1, -4336.9),
  'Solaris': (1236.3, 12326.7),
  'SpaceInvaders': (148.0, 1668.7),
  'StarGunner': (664.0, 10250.0),
  'Surround': (-10.0, 6.5),
  'Tennis': (-23.8, -8.3),
  'TimePilot': (3568.0, 5229.2),
  'Tutankham': (11.4, 167.6),
  'UpNDown': (533.4, 11693.2),
  'Venture': (0.0, 1187.5),
  'VideoPinball': (16256.9, 17667.9),
  'WizardOfWor': (563.5, 4756.5),
  'YarsRevenge': (3092.9, 54576.9),
  'Zaxxon': (32.5, 9173.3),
}

ATARI_57: tuple[str, ...] = tuple(REFERENCE_SCORES)


class HNSSummary(NamedTuple):
  """Human-normalised scores over a set of games, in percent."""

  mean: float
  median: float
  per_game: dict[str, float]


def _game(game: str) -> str:
  """Accepts `Pong` or `atari/Pong`."""
  name = game.removeprefix('atari/')
  if name not in REFERENCE_SCORES:
    raise ValueError(f'no reference scores for Atari game {game!r}; the Atari-57 games are: {", ".join(ATARI_57)}')
  return name


def reference_scores(game: str) -> tuple[float, float]:
  """(random, human) scores of `game` (`Pong` or `atari/Pong`)."""
  return REFERENCE_SCORES[_game(game)]


def human_normalised_score(game: str, score: float | np.ndarray) -> float | np.ndarray:
  """100 (score - random) / (human - random), for a score or an array of them.

  Raises:
    ValueError: `game` is not one of the Atari-57 games.
  """
  random, human = reference_scores(game)
  if isinstance(score, np.ndarray):
    return 100.0 * (score - random) / (human - random)
  return 100.0 * (float(score) - random) / (human - random)


def summarise_hns(scores: Mapping[str, float]) -> HNSSummary:
  """Mean and median HNS over games, from a mapping game -> raw score.

  Each game's raw score is typically its mean evaluation return.

  Raises:
    ValueError: `scores` is empty or holds a game without reference scores.
  """
  if not scores:
    raise ValueError('no scores to summarise')
  per_game = {game: human_normalised_score(game, score) for game, score in scores.items()}
  values = np.array(list(per_game.values()), np.float64)
  return HNSSummary(float(values.mean()), float(np.median(values)), per_game)
