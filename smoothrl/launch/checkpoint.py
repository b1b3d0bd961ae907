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

from smoothrl.launch import config as config_lib
from smoothrl.launch.io import CHECKPOINT_FILE, METRICS_FILE, STATUS_FILE, atomic_file, atomic_write_text, read_metrics


def save(run_dir: str | os.PathLike, payload: dict[str, Any]) -> Path:
  """Pickles `payload` (device arrays fetched to the host) to `run_dir/checkpoint.pkl` atomically, after its step
  (which `saved_step` reads alone), then records the run as running from `payload['step']`, where a resume would
  continue."""
  path = Path(run_dir) / CHECKPOINT_FILE
  host = jax.tree.map(lambda x: np.asarray(x) if isinstance(x, jax.Array) else x, payload)
  with atomic_file(path, 'wb') as f:
    pickle.dump(int(payload['step']), f, protocol=pickle.HIGHEST_PROTOCOL)
    pickle.dump(host, f, protocol=pickle.HIGHEST_PROTOCOL)
  write_status(run_dir, 'running', int(payload['step']))
  return path


def load(run_dir: str | os.PathLike) -> dict[str, Any] | None:
  """The run's last checkpoint, or None if it has none."""
  return _read(run_dir, whole=True)


def saved_step(run_dir: str | os.PathLike) -> int | None:
  """The step of the run's last checkpoint, read without its arrays, or None if it has none."""
  saved = _read(run_dir, whole=False)
  return None if saved is None else int(saved['step'])


def _read(run_dir: str | os.PathLike, whole: bool) -> dict[str, Any] | None:
  """The checkpoint's payload, or with `whole` False only its step (as {'step': step}); None without one."""
  path = Path(run_dir) / CHECKPOINT_FILE
  if not path.exists():
    return None
  with open(path, 'rb') as f:
    first = pickle.load(f)
    if isinstance(first, dict):  # earlier versions wrote the payload alone
      return first
    return pickle.load(f) if whole else {'step': first}


def check_fits(saved: Any, wanted: Any, run_dir: str | os.PathLike) -> None:
  """Checks that `saved`, a tree loaded from `run_dir`'s checkpoint, has the structure, shapes and dtypes of
  `wanted` (arrays or `jax.ShapeDtypeStruct`s) before a run resumes from it.

  Raises:
    ConfigError: it does not, as a checkpoint written by another version of smoothrl may not; says which array.
  """
  where = f'the checkpoint in {run_dir} does not fit this run'
  fix = f'remove {Path(run_dir) / CHECKPOINT_FILE} to start the run afresh'
  if jax.tree.structure(saved) != jax.tree.structure(wanted):
    raise config_lib.ConfigError(f'{where}: its state has another structure; {fix}')
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(saved), jax.tree.leaves(wanted)):
    x = np.asarray(x)
    if (x.shape, x.dtype) != (tuple(y.shape), y.dtype):
      raise config_lib.ConfigError(f'{where}: {jax.tree_util.keystr(path).lstrip(".")} is {x.dtype}{list(x.shape)}, '
                                   f'the run needs {y.dtype}{list(y.shape)}; {fix}')


def write_status(run_dir: str | os.PathLike, state: str, step: int, error: str | None = None) -> None:
  """Records a run's state and step: 'running' from its last checkpoint (0 before the first), 'done' with all its
  steps, or 'failed' with the error that stopped it and the last step it recorded."""
  record: dict[str, Any] = {'state': state, 'step': step}
  if error is not None:
    record['error'] = error
  atomic_write_text(Path(run_dir) / STATUS_FILE, json.dumps(record, indent=2, sort_keys=True))


def record_failure(run_dir: str | os.PathLike, error: BaseException | str) -> dict[str, Any]:
  """Marks the run failed with `error` (an exception, or the text to record) at the last step it recorded, in a
  directory made for it if it failed before it started; returns the status written."""
  Path(run_dir).mkdir(parents=True, exist_ok=True)
  if isinstance(error, BaseException):
    error = f'{type(error).__name__}: {error}' if str(error) else type(error).__name__
  step = last_recorded_step(run_dir)
  write_status(run_dir, 'failed', step, error)
  return {'state': 'failed', 'step': step, 'error': error}


def read_status(run_dir: str | os.PathLike) -> dict[str, Any] | None:
  path = Path(run_dir) / STATUS_FILE
  if not path.exists():
    return None
  return json.loads(path.read_text())


def last_recorded_step(run_dir: str | os.PathLike) -> int:
  """The largest step in the run's metrics file (0 without one): how far a stopped run got."""
  path = Path(run_dir) / METRICS_FILE
  return max((r['step'] for r in read_metrics(path)), default=0) if path.exists() else 0


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
