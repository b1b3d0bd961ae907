"""Run-directory files: atomic writes, JSON-lines metrics and the evaluation record both runners write."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

# The files of a run directory (README, "A run directory").
CONFIG_FILE = 'config.json'
RUN_FILE = 'run.json'  # {'kind': the run kind (launch.kinds)}
METRICS_FILE = 'metrics.jsonl'  # one JSON object per line, each with "step" and "kind"
STATUS_FILE = 'status.json'  # {'state': 'running' | 'done' | 'failed', 'step', 'error'?}, see launch.run.recorder
SUMMARY_FILE = 'summary.json'  # written once the run has ended
CHECKPOINT_DIR = 'checkpoint'  # the last checkpoint (launch.run.checkpoint), removed once the run is done
MODEL_DIR = 'final'  # the final parameters and what rebuilds the network, written when the run is done
TENSORBOARD_DIR = 'tensorboard'
LEGACY_CHECKPOINT_FILE = 'checkpoint.pkl'  # the pickle checkpoints of earlier versions, refused


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = 'w') -> Iterator[IO[Any]]:
  """Opens a temporary file beside `path` that replaces `path` only when the block completes.

  Readers see the old file or the new one, never a partial one; a failing block leaves `path` as it was. The file
  is readable by everyone who can read the directory, as files written in place are.
  """
  path = Path(path)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
  try:
    with os.fdopen(fd, mode) as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
  """Writes `text` to `path` atomically (see `atomic_file`)."""
  with atomic_file(path) as f:
    f.write(text)


def _jsonable(value: Any) -> Any:
  if isinstance(value, dict):
    return {str(k): _jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  if hasattr(value, 'item') and getattr(value, 'ndim', 0) == 0:
    value = value.item()
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)
  return value


class MetricsWriter:
  """Appends one JSON object per line; each line is flushed, so a crash loses at most the line being written.

  With `tensorboard_dir`, every numeric field is also a TensorBoard scalar named `<kind>/<field>` (nested fields:
  `sigma/<layer>`) at the record's step; events from `purge_step` on (those a resumed run writes again) are dropped.
  """

  def __init__(
    self, path: str | os.PathLike, tensorboard_dir: str | os.PathLike | None = None, purge_step: int | None = None
  ):
    self.path = Path(path)
    self._file = open(self.path, 'a', encoding='utf-8')
    self._board = None
    if tensorboard_dir is not None:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top

      # tensorboardX names event files by the second they open in: a resume within the same second would reopen,
      # and overwrite, the stopped attempt's file without a suffix of its own.
      suffix = f'.{time.time_ns()}'
      self._board = SummaryWriter(str(tensorboard_dir), purge_step=purge_step or None, filename_suffix=suffix)

  def write(self, record: dict[str, Any]) -> None:
    if 'step' not in record:
      raise ValueError('every metrics record needs a step')
    record = _jsonable(record)
    self._file.write(json.dumps(record, sort_keys=True) + '\n')
    self._file.flush()
    if self._board is not None:
      for name, value in _scalars(record.get('kind', 'metrics'), record):
        self._board.add_scalar(name, value, record['step'])

  def close(self) -> None:
    """Closes the file (and the TensorBoard writer); closing again does nothing."""
    if self._file.closed:
      return
    self._file.close()
    if self._board is not None:
      self._board.close()

  def __enter__(self) -> MetricsWriter:
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def _scalars(prefix: str, record: dict[str, Any]) -> Iterator[tuple[str, float]]:
  for key, value in record.items():
    if key in ('step', 'kind'):
      continue
    if isinstance(value, dict):
      yield from _scalars(key, value)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
      yield f'{prefix}/{key}', float(value)


def eval_record(returns: Sequence[float], running_return: float, smoothness: float) -> dict[str, Any]:
  """An evaluation's metrics: the completed episodes' returns summarised, or, when none ended, the running
  episode's return marked `incomplete`, so the entry is never empty."""
  record: dict[str, Any] = {'episodes': len(returns), 'smoothness': float(smoothness)}
  if len(returns):
    returns = np.asarray(returns, dtype=np.float64)
    record.update(
      return_mean=float(returns.mean()),
      return_std=float(returns.std()),
      return_min=float(returns.min()),
      return_max=float(returns.max()),
    )
  else:
    record.update(return_mean=float(running_return), incomplete=True)
  return record


def read_metrics(path: str | os.PathLike, kind: str | None = None) -> Iterator[dict[str, Any]]:
  """Yields the records of a metrics file (optionally of one kind), skipping a torn last line."""
  with open(path, encoding='utf-8') as f:
    for line in f:
      try:
        record = json.loads(line)
      except json.JSONDecodeError:
        continue
      if kind is None or record.get('kind') == kind:
        yield record
