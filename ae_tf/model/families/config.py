"""Model settings, kept free of TensorFlow so the command line can parse and validate them instantly."""

from __future__ import annotations

import dataclasses

from ae_tf.errors import InvalidInput

FAMILY_NAMES = ("dense", "conv", "denoising", "sparse", "vae")
BASES = ("dense", "conv")
SPARSITY = ("kl", "l1")
DEFAULT_DENOISING_STDDEV = 0.5  # the classic setting (half a standard deviation; half the pixel range)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture settings; defaults are the documented recipe (`ae-tf train --help`).

    family         dense | conv | denoising | sparse | vae
    base           network under denoising/sparse/vae: dense or conv (None: conv for images, else dense)
    noise_stddev   Gaussian noise added to the (prepared) input while training; any family
    mask_fraction  fraction of input values set to zero while training (masking noise); any family
    sparsity       sparse family: "kl" (sigmoid code, KL to `sparsity_target`) or "l1" (ReLU code, L1)
    beta           vae: weight of the KL term
    image_size     (height, width) images are resized to; None: the size of the first image
    channels       1 or 3; None: from the first image
    filters        conv: filters per stride-2 layer (each halves the image side)
    mirror_invariant  images: the embedding is the mean of the codes of the image and its left-right mirror,
                   so a mirrored copy gets the same embedding (dedup finds flips); reconstruction and the
                   anomaly score still use the image's own code
    """

    family: str = "dense"
    code_size: int = 8
    hidden: tuple[int, ...] = (256, 128)
    activation: str = "gelu"
    normalization: str = "auto"
    base: str | None = None
    noise_stddev: float = 0.0
    mask_fraction: float = 0.0
    sparsity: str = "kl"
    sparsity_weight: float = 0.1
    sparsity_target: float = 0.05
    beta: float = 1.0
    image_size: tuple[int, int] | None = None
    channels: int | None = None
    filters: tuple[int, ...] = (32, 64)
    mirror_invariant: bool = False

    def validate(self) -> None:
        if self.family not in FAMILY_NAMES:
            raise InvalidInput(f"--model must be one of {', '.join(FAMILY_NAMES)}, got {self.family!r}")
        if self.code_size < 1:
            raise InvalidInput(f"--code-size must be at least 1, got {self.code_size}")
        if any(h < 1 for h in self.hidden):
            raise InvalidInput(f"--hidden sizes must be positive, got {self.hidden}")
        if self.normalization not in ("auto", "feature", "global", "none"):
            raise InvalidInput(f"--normalization must be auto, feature, global or none, got {self.normalization!r}")
        if self.base is not None and self.base not in BASES:
            raise InvalidInput(f"--base must be dense or conv, got {self.base!r}")
        if self.base is not None and self.family in BASES and self.base != self.family:
            raise InvalidInput(f"--base {self.base} contradicts --model {self.family}")
        if self.noise_stddev < 0:
            raise InvalidInput(f"--noise-stddev must be >= 0, got {self.noise_stddev}")
        if not 0 <= self.mask_fraction < 1:
            raise InvalidInput(f"--mask-fraction must be in [0, 1), got {self.mask_fraction}")
        if self.sparsity not in SPARSITY:
            raise InvalidInput(f"--sparsity must be kl or l1, got {self.sparsity!r}")
        if self.sparsity_weight < 0:
            raise InvalidInput(f"--sparsity-weight must be >= 0, got {self.sparsity_weight}")
        if not 0 < self.sparsity_target < 1:
            raise InvalidInput(f"--sparsity-target must be in (0, 1), got {self.sparsity_target}")
        if self.beta < 0:
            raise InvalidInput(f"--beta must be >= 0, got {self.beta}")
        if self.image_size is not None and (len(self.image_size) != 2 or min(self.image_size) < 1):
            raise InvalidInput(f"--image-size must be positive (height, width), got {self.image_size}")
        if self.channels not in (None, 1, 3):
            raise InvalidInput(f"--channels must be 1 or 3, got {self.channels}")
        if not self.filters or any(f < 1 for f in self.filters):
            raise InvalidInput(f"--filters must be positive numbers, got {self.filters}")

    def resolve_base(self, is_image: bool) -> str:
        """The network this config builds: dense/conv families are their own base."""
        if self.family in BASES:
            return self.family
        return self.base or ("conv" if is_image else "dense")

    def corruption(self) -> tuple[float, float]:
        """(noise stddev, mask fraction) applied while training; denoising defaults to Gaussian noise."""
        if self.family == "denoising" and self.noise_stddev == 0 and self.mask_fraction == 0:
            return DEFAULT_DENOISING_STDDEV, 0.0
        return self.noise_stddev, self.mask_fraction
