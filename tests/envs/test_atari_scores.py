"""Human-normalised scores: the reference table and the arithmetic."""

import numpy as np
import pytest

from smoothrl.envs import atari
from smoothrl.envs import atari_scores as scores


def test_the_57_games_are_present_and_human_beats_random():
  assert len(scores.ATARI_57) == len(set(scores.ATARI_57)) == 57
  for game, (random, human) in scores.REFERENCE_SCORES.items():
    assert human > random, game
  # Spot checks against the published table.
  assert scores.reference_scores('Pong') == (-20.7, 14.6)
  assert scores.reference_scores('Breakout') == (1.7, 30.5)
  assert scores.reference_scores('MontezumaRevenge') == (0.0, 4753.3)
  assert scores.reference_scores('Skiing') == (-17098.1, -4336.9)


def test_every_game_is_an_environment_name():
  pytest.importorskip('ale_py')
  assert set(scores.ATARI_57) <= set(atari.games())


def test_hns_arithmetic():
  # Breakout: random 1.7, human 30.5.
  assert scores.human_normalised_score('Breakout', 30.5) == pytest.approx(100.0)
  assert scores.human_normalised_score('Breakout', 1.7) == pytest.approx(0.0)
  assert scores.human_normalised_score('Breakout', 400.0) == pytest.approx(100 * (400 - 1.7) / (30.5 - 1.7))
  # Negative scores: Pong, random -20.7, human 14.6; Skiing, random -17098.1, human -4336.9.
  assert scores.human_normalised_score('atari/Pong', 0.0) == pytest.approx(100 * 20.7 / 35.3)
  assert scores.human_normalised_score('Skiing', -10000.0) == pytest.approx(100 * 7098.1 / 12761.2)
  assert scores.human_normalised_score('Pong', -21.0) < 0
  arr = scores.human_normalised_score('Pong', np.array([-20.7, 14.6]))
  np.testing.assert_allclose(arr, [0.0, 100.0])


def test_mean_and_median():
  raw = {'Breakout': 30.5, 'Pong': -20.7, 'Alien': 227.8 + 2 * (7127.7 - 227.8), 'Freeway': 14.8}
  summary = scores.summarise_hns(raw)
  assert summary.per_game == pytest.approx({'Breakout': 100.0, 'Pong': 0.0, 'Alien': 200.0, 'Freeway': 50.0})
  assert summary.mean == pytest.approx(87.5)
  assert summary.median == pytest.approx(75.0)


def test_games_without_reference_scores_are_refused():
  with pytest.raises(ValueError, match='no reference scores') as e:
    scores.human_normalised_score('Adventure', 0.0)
  assert 'Pong' in str(e.value) and 'MontezumaRevenge' in str(e.value)
  with pytest.raises(ValueError, match='no reference scores'):
    scores.summarise_hns({'Pong': 0.0, 'Tetris': 10.0})
  with pytest.raises(ValueError, match='no scores'):
    scores.summarise_hns({})
