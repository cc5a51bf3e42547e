"""How long a training run is: `--epochs N` passes over the training rows, and the optional step floor.

An epoch is one pass over the training rows, and whole passes only. Small datasets of small rows (tabular
features, thumbnails such as 8x8 digits) need more optimiser steps than N passes give them, so a floor of
`--min-steps` total steps may make each epoch several whole passes (validation, early stopping and
backups still run once per epoch, so their cost and patience do not change). The floor is explicit:
logged, printed by `ae-tf train`, and written to the model's metadata (`training.schedule`). Its default
is sized by the row: rows of at most SMALL_ROW_VALUES values get 100 steps per epoch (the digits quality
recipe), larger images none, so an image dataset is never multiplied. `--min-steps 0`: one pass per epoch.
"""

from __future__ import annotations

import dataclasses
import math

STEPS_PER_EPOCH_FLOOR = 100  # the default floor per requested epoch, for small rows only
SMALL_ROW_VALUES = 1024  # values per row (tabular width, or h*w*c of an image) up to which the floor applies


@dataclasses.dataclass(frozen=True)
class Schedule:
    """The resolved length of one run: what was asked for and what will run."""

    epochs: int
    rows: int
    batch_size: int
    steps_per_pass: int
    passes_per_epoch: int  # 1 unless the step floor raised it
    min_steps: int
    min_steps_origin: str  # "--min-steps" when given, else why the default is what it is

    @property
    def raised(self) -> bool:
        return self.passes_per_epoch > 1

    @property
    def steps_per_epoch(self) -> int:
        return self.passes_per_epoch * self.steps_per_pass

    @property
    def passes(self) -> int:
        return self.epochs * self.passes_per_epoch

    @property
    def steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def describe(self) -> str:
        """One log line: passes, steps, and whether (and why) the floor raised the pass count."""
        base = (f"schedule: {self.epochs} epoch(s) over {self.rows:,} training rows, {self.steps_per_pass} step(s) "
                f"of {self.batch_size} per pass")
        if self.raised:
            return (f"{base}; --min-steps {self.min_steps:,} ({self.min_steps_origin}) makes each epoch "
                    f"{self.passes_per_epoch} passes ({self.passes:,} passes, {self.steps:,} steps at most). "
                    f"--min-steps 0 gives one pass per epoch")
        floor = f"--min-steps {self.min_steps:,} ({self.min_steps_origin})" if self.min_steps else \
            f"no step floor ({self.min_steps_origin})"
        return f"{base}: one pass per epoch, {self.steps:,} steps at most; {floor}"

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "raised": self.raised, "passes": self.passes, "steps": self.steps}


def default_min_steps(epochs: int, row_values: int) -> tuple[int, str]:
    """The floor used when --min-steps is not given, and a phrase saying why."""
    if row_values <= SMALL_ROW_VALUES:
        return (STEPS_PER_EPOCH_FLOOR * epochs,
                f"default for rows of <= {SMALL_ROW_VALUES:,} values: {STEPS_PER_EPOCH_FLOOR} per epoch")
    return 0, f"default for rows of more than {SMALL_ROW_VALUES:,} values"


def plan_schedule(epochs: int, rows: int, batch_size: int, row_values: int, min_steps: int | None = None) -> Schedule:
    """Passes per epoch for `rows` training rows; `min_steps` None means the default floor."""
    if min_steps is None:
        min_steps, origin = default_min_steps(epochs, row_values)
    else:
        origin = "--min-steps"
    steps_per_pass = max(1, math.ceil(rows / batch_size))
    passes_per_epoch = max(1, math.ceil(min_steps / (epochs * steps_per_pass)))
    return Schedule(epochs=epochs, rows=rows, batch_size=batch_size, steps_per_pass=steps_per_pass,
                    passes_per_epoch=passes_per_epoch, min_steps=min_steps, min_steps_origin=origin)
