"""The run recorder: the one writer of a run directory.

Every training loop, of every run kind, talks to its run directory only through a `Recorder`: the config, the
metrics records (JSON lines, optionally TensorBoard), the non-finite check, checkpoints, the status, the summary,
the final parameters and the failure record. Files are written atomically (`files.atomic_file`), so a crash loses at
most the interval since the last checkpoint, and a resumed run continues from the checkpoint's step with the
records after it dropped (DESIGN principle 4).

    status.json   {'state': 'running' | 'done' | 'failed', 'step': int, 'error'?: str}

'running' carries the step of the last checkpoint (where a resume continues; 0 before the first), 'done' every
step, 'failed' the error that stopped the run and the last step it recorded.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from smoothrl.launch.run import checkpoint
from smoothrl.launch.run.config import ConfigError, TrainingError
from smoothrl.launch.run.files import (
  CONFIG_FILE,
  METRICS_FILE,
  RUN_FILE,
  STATUS_FILE,
  SUMMARY_FILE,
  TENSORBOARD_DIR,
  MetricsWriter,
  atomic_write_text,
  read_metrics,
)


def write_status(run_dir: str | os.PathLike, state: str, step: int, error: str | None = None) -> None:
  """Records a run's state and step (see the module docstring)."""
  record: dict[str, Any] = {'state': state, 'step': step}
  if error is not None:
    record['error'] = error
  atomic_write_text(Path(run_dir) / STATUS_FILE, json.dumps(record, indent=2, sort_keys=True))


def read_status(run_dir: str | os.PathLike) -> dict[str, Any] | None:
  """The run's status record, or None for a run that never started."""
  path = Path(run_dir) / STATUS_FILE
  if not path.exists():
    return None
  return json.loads(path.read_text())


def last_recorded_step(run_dir: str | os.PathLike) -> int:
  """The largest step in the run's metrics file (0 without one): how far a stopped run got."""
  path = Path(run_dir) / METRICS_FILE
  return max((r['step'] for r in read_metrics(path)), default=0) if path.exists() else 0


def record_failure(run_dir: str | os.PathLike, error: BaseException | str) -> dict[str, Any]:
  """Marks the run failed with `error` (an exception, or the text to record) at the last step it recorded, in a
  directory made for it if it failed before it started; returns the status written."""
  Path(run_dir).mkdir(parents=True, exist_ok=True)
  if isinstance(error, BaseException):
    error = f'{type(error).__name__}: {error}' if str(error) else type(error).__name__
  step = last_recorded_step(run_dir)
  write_status(run_dir, 'failed', step, error)
  return {'state': 'failed', 'step': step, 'error': error}


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


def check_directory(path: str | os.PathLike, what: str) -> None:
  """Raises `ConfigError` (its message starting with `what`) unless `path` is a directory this process may write
  in, or one it may create: the nearest existing one of it and its parents must be a writable directory."""
  text = os.fspath(path)
  if not text.strip() or '\0' in text:
    raise ConfigError(f'{what}: expected a directory path, got {text!r}')
  path = Path(text)
  place = next((p for p in (path, *path.parents) if os.path.lexists(p)), path)
  if not place.is_dir():
    kind = 'a file, not a directory' if place.is_file() else 'not a directory'
    raise ConfigError(f'{what}: {place} is {kind}')
  if not os.access(place, os.W_OK | os.X_OK):
    raise ConfigError(f'{what}: cannot write in {place}')


def finished_summary(run_dir: str | os.PathLike, config_json: str) -> dict[str, Any] | None:
  """The summary of a run that already finished in `run_dir` with this config, else None.

  Raises:
    ConfigError: `run_dir` holds a run of another config.
  """
  out = Path(run_dir)
  if (out / CONFIG_FILE).exists():
    if json.loads((out / CONFIG_FILE).read_text()) != json.loads(config_json):
      raise ConfigError(
        f'{out} holds a run with a different config; resume it with its own config '
        '(smoothrl train --resume DIR) or choose another --out'
      )
  status = read_status(out)
  if status and status['state'] == 'done' and (out / SUMMARY_FILE).exists():
    return json.loads((out / SUMMARY_FILE).read_text())
  return None


class Recorder:
  """Owns one run directory from start to summary; a context manager that closes the metrics file on any exit.

  `kind` names the run kind (`launch.kinds`), recorded in `run.json` for the tools that read runs.

  `start` prepares the directory for a run from the beginning or from the checkpoint `saved_checkpoint` returns;
  the loop then calls `write` for every record, `check_loss` where it reads a loss, `checkpoint` at its checkpoint
  period, and `finish` (or `fail`) at the end.
  """

  def __init__(self, run_dir: str | os.PathLike, config_json: str, tensorboard: bool = False, kind: str = 'rl'):
    self.out = Path(run_dir)
    self.config_json = config_json
    self.kind = kind
    self.tensorboard = tensorboard
    self.writer: MetricsWriter | None = None
    self.failure: dict[str, Any] | None = None

  def saved_checkpoint(self) -> checkpoint.Saved | None:
    """The run's last checkpoint (`checkpoint.load`), or None without one."""
    return checkpoint.load(self.out)

  def start(self, saved: checkpoint.Saved | None = None) -> None:
    """Writes the config and the status 'running', truncates the metrics (and TensorBoard's events) to the step
    of `saved`, the checkpoint the run continues from, or to nothing, and opens the metrics file."""
    self.out.mkdir(parents=True, exist_ok=True)
    step = 0 if saved is None else saved.step
    atomic_write_text(self.out / CONFIG_FILE, self.config_json)
    atomic_write_text(self.out / RUN_FILE, json.dumps({'kind': self.kind}))
    write_status(self.out, 'running', step)
    truncate_metrics(self.out / METRICS_FILE, step)
    board = self.out / TENSORBOARD_DIR
    if board.exists() and step == 0:
      shutil.rmtree(board)  # a fresh start: no events of an earlier attempt
    self.writer = MetricsWriter(
      self.out / METRICS_FILE, board if self.tensorboard else None, purge_step=step + 1 if step else None
    )

  def write(self, record: Mapping[str, Any]) -> None:
    """Appends one metrics record (with `step` and `kind`)."""
    if self.writer is None:
      raise RuntimeError(f'the recorder of {self.out} is not started, or already closed')
    self.writer.write(dict(record))

  @staticmethod
  def check_loss(loss: float, step: int) -> None:
    """Raises TrainingError for a non-finite loss: the run stops with that reason."""
    if not math.isfinite(loss):
      raise TrainingError(f'non-finite loss {loss} at step {step}; stopping this run')

  def checkpoint(self, step: int, trees: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
    """Saves the pytrees `trees` and the JSON-able `meta` as the run's checkpoint at `step` (`checkpoint.save`),
    then records the run as running from `step`."""
    checkpoint.save(self.out, step, trees, meta)
    write_status(self.out, 'running', step)

  def finish(self, summary: Mapping[str, Any], step: int, model: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Writes the final parameters (`model`: arrays and the JSON-able description needed to rebuild the network),
    the summary and the status 'done' at `step`, and removes the checkpoint; returns the summary."""
    self.close()
    if model is not None:
      checkpoint.save_model(self.out, model)
    atomic_write_text(self.out / SUMMARY_FILE, json.dumps(dict(summary), indent=2, sort_keys=True))
    write_status(self.out, 'done', step)
    checkpoint.remove(self.out)
    return dict(summary)

  def fail(self, error: BaseException | str) -> dict[str, Any]:
    """Closes the metrics file and records the run as failed with `error`; returns the failure record."""
    self.close()
    self.failure = record_failure(self.out, error)
    return self.failure

  def close(self) -> None:
    """Closes the metrics file (and TensorBoard's); closing again does nothing."""
    if self.writer is not None:
      self.writer.close()
      self.writer = None

  def __enter__(self) -> Recorder:
    return self

  def __exit__(self, *exc) -> None:
    self.close()
