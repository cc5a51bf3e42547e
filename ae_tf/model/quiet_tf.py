"""TensorFlow without its start-up noise: the C++ lines every `import tensorflow` prints.

TF_CPP_MIN_LOG_LEVEL=2 (set before the first import) hides TensorFlow's own info and warning lines, but a
few are written before its logging is set up ("All log messages before absl::InitializeLog() ...",
"Could not find cuda drivers ...") and a machine without a GPU gets "failed call to cuInit ... (303)" at
the first device query. `import_tensorflow()` does the import and that first query with the process's
stderr (file descriptor 2) captured, drops those known lines and passes every other line through, so a
real error still shows. The dropped lines are logged at debug level (`ae-tf --verbose`).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile

log = logging.getLogger(__name__)

STARTUP_NOISE = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called"
    r"|cudart_stub\.cc.*Could not find cuda drivers"
    r"|failed call to cuInit"
    r"|cpu_feature_guard\.cc"
    r"|To enable the following instructions: .*rebuild TensorFlow"
    r"|Unable to register cu(DNN|FFT|BLAS) factory"
    r"|computation placer already registered"
)


def quiet_environment() -> None:
    """Before the first TensorFlow import: no C++ info or warning lines (errors still show)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def filter_startup_lines(text: str) -> tuple[str, list[str]]:
    """(text without TensorFlow's start-up noise, the lines dropped)."""
    kept, dropped = [], []
    for line in text.splitlines(keepends=True):
        (dropped if STARTUP_NOISE.search(line) else kept).append(line)
    return "".join(kept), [line.rstrip("\n") for line in dropped]


def import_tensorflow():
    """`import tensorflow` plus the first device query, with the start-up lines filtered out of stderr."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    quiet_environment()
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (AttributeError, OSError):  # no stderr to filter (closed, or replaced by an object without one)
        import tensorflow as tf

        return tf
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")  # the cuInit line comes from here, not from the import
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept, dropped = filter_startup_lines(captured.read().decode("utf-8", errors="replace"))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()
            for line in dropped:
                log.debug("TensorFlow start-up: %s", line)
    return tf
