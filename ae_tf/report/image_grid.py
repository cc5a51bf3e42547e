"""Pixel-exact image grids: images shown at their own size, never resampled into a fixed-size figure.

The report's reconstruction grid of an image model uses these, so a 256x256 product photo and its
reconstruction are compared pixel for pixel (ae_tf.report.plots draws the fixed-size figures).
"""

from __future__ import annotations

import io
import math

import numpy as np


def full_size_grid(originals: np.ndarray, reconstructions: np.ndarray, max_width: int = 840, gap: int = 4) -> bytes:
    """Images at their own pixel size, never resampled: a row of originals above a row of their reconstructions.

    [n, h, w] or [n, h, w, c] in [0, 1]. As many columns as fit `max_width` (the report page's width), at
    least one and at most eight; a wider gap separates one original/rebuilt pair of rows from the next.
    """
    import matplotlib.image

    def rgb(images: np.ndarray) -> np.ndarray:
        images = np.clip(np.asarray(images, dtype=np.float32), 0.0, 1.0)
        if images.ndim == 3:
            images = images[..., None]
        return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images[..., :3]

    top, bottom = rgb(originals), rgb(reconstructions)
    n, h, w = top.shape[:3]
    cols = max(1, min(8, n, (max_width - gap) // (w + gap)))
    pairs = max(1, math.ceil(n / cols))
    pair_height = 2 * h + 3 * gap
    canvas = np.full((pairs * pair_height + gap, cols * (w + gap) + gap, 3), 0.85, dtype=np.float32)
    for index in range(n):
        pair, col = divmod(index, cols)
        y, x = pair * pair_height + 2 * gap, gap + col * (w + gap)
        canvas[y:y + h, x:x + w] = top[index]
        canvas[y + h + gap:y + 2 * h + gap, x:x + w] = bottom[index]
    buffer = io.BytesIO()
    matplotlib.image.imsave(buffer, canvas, format="png")
    return buffer.getvalue()


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's header."""
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
