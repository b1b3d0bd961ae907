"""Run files: atomic writes, JSON lines, TensorBoard scalars; the progress line."""

import io
import os
import struct

import pytest
from tensorboardX.proto import event_pb2

from smoothrl.launch.run import progress as progress_lib
from smoothrl.launch.run.files import MetricsWriter, atomic_file, atomic_write_text, eval_record, read_metrics
from smoothrl.launch.run.progress import Progress


def test_a_failed_atomic_write_leaves_the_old_file(tmp_path):
  path = tmp_path / 'config.json'
  atomic_write_text(path, 'old')
  with pytest.raises(RuntimeError):
    with atomic_file(path) as f:
      f.write('half of the new')
      raise RuntimeError('crash')
  assert path.read_text() == 'old'
  assert os.listdir(tmp_path) == ['config.json']  # no temporary file left behind


def test_metrics_lines_and_a_torn_last_line(tmp_path):
  path = tmp_path / 'metrics.jsonl'
  with MetricsWriter(path) as writer:
    writer.write({'step': 1, 'kind': 'train', 'loss': 0.5})
    writer.write({'step': 2, 'kind': 'eval', 'return_mean': 3.0})
    with pytest.raises(ValueError, match='step'):
      writer.write({'kind': 'train'})
  with open(path, 'a') as f:
    f.write('{"step": 3, "ki')  # a line cut by a crash
  assert [r['step'] for r in read_metrics(path)] == [1, 2]
  assert list(read_metrics(path, 'eval')) == [{'step': 2, 'kind': 'eval', 'return_mean': 3.0}]


def _events(directory):
  """Scalars (tag, step, value) from TensorBoard event files (TFRecord framing: length, crc, data, crc)."""
  scalars = []
  for name in sorted(os.listdir(directory)):
    data = (directory / name).read_bytes()
    offset = 0
    while offset < len(data):
      (length,) = struct.unpack('<Q', data[offset : offset + 8])
      event = event_pb2.Event.FromString(data[offset + 12 : offset + 12 + length])
      offset += 12 + length + 4
      for value in event.summary.value:
        scalars.append((value.tag, event.step, round(value.simple_value, 6)))
  return scalars


def test_an_evaluation_record_summarises_its_episodes_or_reports_the_running_one():
  record = eval_record([1.0, 2.0, 6.0], running_return=9.0, smoothness=0.5)
  assert record == {
    'episodes': 3,
    'smoothness': 0.5,
    'return_mean': 3.0,
    'return_std': pytest.approx((14 / 3) ** 0.5),
    'return_min': 1.0,
    'return_max': 6.0,
  }
  assert eval_record([], running_return=9.0, smoothness=0.5) == {
    'episodes': 0,
    'smoothness': 0.5,
    'return_mean': 9.0,
    'incomplete': True,
  }


def test_tensorboard_scalars_mirror_the_numeric_fields(tmp_path):
  with MetricsWriter(tmp_path / 'metrics.jsonl', tmp_path / 'tb') as writer:
    writer.write({'step': 10, 'kind': 'train', 'loss': 0.25, 'updates': 3})
    writer.write({'step': 20, 'kind': 'sigma', 'sigma': {'hidden': 1.5, 'out': 0.75}, 'selected': ['hidden']})
    writer.write({'step': 30, 'kind': 'eval', 'return_mean': 4.0, 'incomplete': True})
  assert sorted(_events(tmp_path / 'tb')) == [
    ('eval/return_mean', 30, 4.0),
    ('sigma/hidden', 20, 1.5),
    ('sigma/out', 20, 0.75),
    ('train/loss', 10, 0.25),
    ('train/updates', 10, 3.0),
  ]


def test_the_progress_line_ends_when_the_run_stops(terminal):
  with pytest.raises(RuntimeError):
    with Progress(10, stream=terminal) as progress:
      progress.update(3, force=True)
      raise RuntimeError('stopped')
  assert terminal.getvalue().startswith('\r[#######') and terminal.getvalue().endswith('\x1b[K\n')


def test_the_eta_leaves_out_the_time_before_the_first_update(monkeypatch):
  now = [0.0]
  monkeypatch.setattr(progress_lib.time, 'perf_counter', lambda: now[0])
  stream = io.StringIO()
  line = Progress(1_000, stream=stream, interval_s=0.0)
  now[0] = 60.0  # a minute compiling before the first step is reported
  line.update(10)
  now[0] = 61.0
  line.update(110)  # then 100 steps/s
  assert 'ETA 00:08' in stream.getvalue().splitlines()[-1]  # (1000 - 110) / 100 s, not (1000 - 110) / (110 / 61) s


def test_a_writer_reopened_within_the_same_second_keeps_the_earlier_events(tmp_path):
  """tensorboardX names event files by the second: a resume right after a stop must not overwrite them."""
  for step, purge in ((1, None), (2, 2)):
    writer = MetricsWriter(tmp_path / 'metrics.jsonl', tmp_path / 'tb', purge_step=purge)
    writer.write({'step': step, 'kind': 'train', 'loss': 1.0})
    writer.close()
  files = sorted((tmp_path / 'tb').iterdir())
  assert len(files) == 2 and all(f.stat().st_size > 0 for f in files)
