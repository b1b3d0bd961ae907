"""Checkpoints and run status, written atomically into the run directory.

A checkpoint holds everything a run needs to continue as if it had not stopped: the agent state (parameters,
target parameters, optimiser and spectral state), the replay buffer, the environments, every random state and
the counters. Device arrays are stored as numpy arrays.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

import jax
import numpy as np

from smoothrl.launch.io import atomic_file, atomic_write_text

CHECKPOINT = 'checkpoint.pkl'
STATUS = 'status.json'


def save(run_dir: str | os.PathLike, payload: dict[str, Any]) -> Path:
  """Pickles `payload` (device arrays fetched to the host) to `run_dir/checkpoint.pkl` atomically."""
  path = Path(run_dir) / CHECKPOINT
  host = jax.tree.map(lambda x: np.asarray(x) if isinstance(x, jax.Array) else x, payload)
  with atomic_file(path, 'wb') as f:
    pickle.dump(host, f, protocol=pickle.HIGHEST_PROTOCOL)
  return path


def load(run_dir: str | os.PathLike) -> dict[str, Any] | None:
  """The run's last checkpoint, or None if it has none."""
  path = Path(run_dir) / CHECKPOINT
  if not path.exists():
    return None
  with open(path, 'rb') as f:
    return pickle.load(f)


def write_status(run_dir: str | os.PathLike, state: str, step: int, error: str | None = None) -> None:
  """Records a run's state: 'running', 'done' or 'failed' (with the error that stopped it)."""
  record: dict[str, Any] = {'state': state, 'step': step}
  if error is not None:
    record['error'] = error
  atomic_write_text(Path(run_dir) / STATUS, json.dumps(record, indent=2, sort_keys=True))


def read_status(run_dir: str | os.PathLike) -> dict[str, Any] | None:
  path = Path(run_dir) / STATUS
  if not path.exists():
    return None
  return json.loads(path.read_text())


def truncate_metrics(path: str | os.PathLike, step: int) -> None:
  """Drops the records after `step`, which a resumed run writes again, so the file stays continuous."""
  path = Path(path)
  if not path.exists():
    return
  kept = []
  with open(path, encoding='utf-8') as f:
    for line in f:
      try:
        if json.loads(line)['step'] <= step:
          kept.append(line if line.endswith('\n') else line + '\n')
      except (json.JSONDecodeError, KeyError):
        continue  # a line torn by the stop
  atomic_write_text(path, ''.join(kept))
