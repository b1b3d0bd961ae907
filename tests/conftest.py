"""Test-wide settings, made before jax is imported (subprocesses the tests start inherit them).

One BLAS thread, so numpy's SVDs do not fight XLA for the two cores. A compilation cache for this session only:
many tests build the same programs afresh (a new runner, a new worker process), and each is compiled once.
A `terminal` fixture: a text stream that says it is a terminal, as progress lines see one.
"""

import atexit
import io
import os
import shutil
import tempfile

import pytest

os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  _cache = tempfile.mkdtemp(prefix='smoothrl-test-jax-cache-')
  atexit.register(shutil.rmtree, _cache, ignore_errors=True)
  os.environ.update(
    JAX_COMPILATION_CACHE_DIR=_cache,
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='0',
  )


class _Terminal(io.StringIO):
  def isatty(self):
    return True


@pytest.fixture
def terminal():
  """A text stream that says it is a terminal: progress lines redraw on it with carriage returns."""
  return _Terminal()
