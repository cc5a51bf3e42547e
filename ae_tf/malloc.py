"""Keep freed memory for reuse instead of handing it back to the kernel (glibc only; a no-op elsewhere).

The pipelines move large numpy arrays and byte strings (Arrow batches, pickled row blocks, the local
runner's shuffle buffers) through one process again and again. glibc's defaults give a block above a
moving threshold (128 KB up to 32 MB) its own mapping and trim free memory off the heap top early, so a
new block is often fresh memory that the kernel faults in page by page; on the virtual machines these
jobs run on that costs microseconds a page. Measured in one session on the 2-core machine:
`benchmarks/dedup.py` on 1M sparse rows went from 2.4M page faults and 64-72 s to 1.2-1.7M faults and
53-62 s, and `benchmarks/encode_throughput.py` (2M rows) from 0.98x to 1.21x of the hand loop.

Blocks below 32 MB come from the heap, and the heap top keeps up to 256 MB free. Any `MALLOC_*_` or
`GLIBC_TUNABLES` variable in the environment means the user chose: then nothing is changed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's own upper bound for its moving threshold
TRIM_THRESHOLD = 256 << 20  # free space at the heap top beyond this goes back to the kernel
TOP_PAD = 256 << 20
_USER_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES")
_done = False


def tune_malloc() -> bool:
    """Set the thresholds above once per process; True when they were set here."""
    global _done
    if _done or not sys.platform.startswith("linux") or any(v in os.environ for v in _USER_VARIABLES):
        return False
    _done = True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries: nothing to tune
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = all(mallopt(option, value) == 1 for option, value in (
        (M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD)))
    log.debug("malloc thresholds %s", "set" if ok else "not set")
    return ok
