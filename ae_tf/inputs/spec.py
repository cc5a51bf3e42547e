"""What a model's input is: the feature kinds, FeatureSpec (with its ImageSpec), the user's image request,
and the per-row verdict type. Plain data classes, the lowest module of ae_tf.inputs: features, images and
image_validity all build on it, and none of them on each other in a circle.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ae_tf.errors import InvalidInput

VECTOR = "vector"
SCALARS = "scalars"
IMAGE = "image"  # one column of encoded image bytes or pixel arrays; see ae_tf.inputs.images


class FeatureError(InvalidInput):
    """Input data that cannot become model features; the message names the column (and row)."""


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """Which columns feed the model and how: one list column of `width` numbers, or `width` scalar columns,
    or one image column (`image` says its geometry and storage; `width` is then height*width*channels)."""

    kind: str
    columns: tuple[str, ...]
    width: int
    image: ImageSpec | None = None

    def to_dict(self) -> dict:
        data = {"kind": self.kind, "columns": list(self.columns), "width": self.width}
        if self.image is not None:
            data["image"] = self.image.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> FeatureSpec:
        image = None
        if data.get("image"):
            image = ImageSpec.from_dict(data["image"])
        return cls(kind=data["kind"], columns=tuple(data["columns"]), width=int(data["width"]), image=image)


BYTES = "bytes"
ARRAY = "array"


@dataclasses.dataclass(frozen=True)
class ImageSpec:
    """Geometry of the images a model sees, and how they are stored in the input column."""

    height: int
    width: int
    channels: int
    encoding: str = BYTES
    source_shape: tuple[int, int, int] | None = None  # array encoding: (h, w, c) of each stored row
    value_max: float = 255.0  # array encoding: the stored value that means full intensity

    def __post_init__(self) -> None:
        if self.height < 1 or self.width < 1:
            raise FeatureError(f"image size must be positive, got {self.height}x{self.width}")
        if self.channels not in (1, 3):
            raise FeatureError(f"images must have 1 (grey) or 3 (RGB) channels, got {self.channels}")
        if self.encoding not in (BYTES, ARRAY):
            raise FeatureError(f"image encoding must be {BYTES!r} or {ARRAY!r}, got {self.encoding!r}")
        if self.encoding == ARRAY and (self.source_shape is None or len(self.source_shape) != 3):
            raise FeatureError("array-encoded images need source_shape (height, width, channels)")
        if self.value_max <= 0:
            raise FeatureError(f"value_max must be positive, got {self.value_max}")

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.channels)

    @property
    def size(self) -> int:
        return self.height * self.width * self.channels

    @property
    def input_width(self) -> int:
        """Numbers per row in the stored column (array encoding only)."""
        return int(np.prod(self.source_shape)) if self.source_shape else 0

    def to_dict(self) -> dict:
        data = {"height": self.height, "width": self.width, "channels": self.channels, "encoding": self.encoding}
        if self.encoding == ARRAY:
            data.update(source_shape=list(self.source_shape), value_max=self.value_max)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> ImageSpec:
        source = data.get("source_shape")
        return cls(int(data["height"]), int(data["width"]), int(data["channels"]), data.get("encoding", BYTES),
                   tuple(int(s) for s in source) if source else None, float(data.get("value_max", 255.0)))


@dataclasses.dataclass(frozen=True)
class ImageRequest:
    """What the user asked for (`--image-size`, `--channels`); None means: take it from the data."""

    size: tuple[int, int] | None = None
    channels: int | None = None
    multiple_of: int = 1  # a conv model halves the size once per layer: the size must divide evenly

    def __post_init__(self) -> None:
        if self.size is not None and min(self.size) < 1:
            raise FeatureError(f"--image-size must be positive, got {self.size}")
        if self.channels not in (None, 1, 3):
            raise FeatureError(f"--channels must be 1 or 3, got {self.channels}")


@dataclasses.dataclass
class RowCheck:
    """Per-row verdict for one batch: `valid` mask and, for invalid rows, a short reason."""

    valid: np.ndarray
    reasons: np.ndarray  # object array, None where valid

    @property
    def all_valid(self) -> bool:
        return bool(self.valid.all())
