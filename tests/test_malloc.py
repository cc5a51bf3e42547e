"""ae_tf.malloc: freed memory is reused instead of faulted in again (measured in fresh subprocesses)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="mallopt thresholds are glibc's")

CHURN = """
import resource, sys
import numpy as np
from ae_tf.malloc import tune_malloc
tuned = tune_malloc() if sys.argv[1] == "tuned" else False
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    arrays = [np.ones(500_000) for _ in range(16)]  # 16 blocks of 4 MB alive at once, then all freed
    del arrays
print(tuned, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def churn(mode: str, **env: str) -> tuple[bool, int]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-c", CHURN, mode], capture_output=True, text=True, check=True,
                         env={**environ, **env}).stdout.split()
    return out[0] == "True", int(out[1])


def test_tuned_process_reuses_freed_blocks_instead_of_faulting_them_in():
    tuned, tuned_faults = churn("tuned")
    plain_tuned, plain_faults = churn("plain")
    assert tuned and not plain_tuned
    # 160 blocks of 4 MB: ~1,000 pages each when every block is a fresh mapping (about 160,000 faults)
    assert plain_faults > 50_000
    assert tuned_faults * 5 < plain_faults


def test_user_malloc_settings_win():
    tuned, faults = churn("tuned", MALLOC_TRIM_THRESHOLD_="131072")
    assert not tuned
    assert faults > 50_000  # nothing was changed: the churn faults as in a plain process
