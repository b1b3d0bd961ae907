"""Test-wide settings: one BLAS thread, so numpy's SVDs do not fight XLA for the two cores."""

import os

os.environ.setdefault('OPENBLAS_NUM_THREADS', '1')
