"""Pick where training runs: every visible GPU (mirrored), one GPU, or the CPU, and say which."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def describe_devices() -> str:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "CPU (no GPU visible to TensorFlow)"
    return f"{len(gpus)} GPU(s): " + ", ".join(g.name for g in gpus)


def choose_strategy(mixed_precision: bool = False):
    """MirroredStrategy on several GPUs, the default strategy otherwise; mixed precision only on a GPU."""
    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if mixed_precision and gpus:
        keras.mixed_precision.set_global_policy("mixed_float16")
        log.info("mixed precision: float16 compute, float32 variables")
    elif mixed_precision:
        log.warning("--mixed-precision ignored: no GPU visible, training in float32 on the CPU")
    if len(gpus) > 1:
        strategy = tf.distribute.MirroredStrategy()
    else:
        strategy = tf.distribute.get_strategy()
    log.info("training on %s", describe_devices())
    return strategy
