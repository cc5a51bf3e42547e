"""Running the pipelines on Google Cloud Dataflow: the GPU preset and the Flex Template argument bridge.

GPU preset: `--gpu [TYPE[:COUNT]]` on a pipeline adds these Beam options (any you pass yourself win):
    --dataflow_service_options=worker_accelerator=type:TYPE;count:COUNT;install-nvidia-driver
    --machine_type=<a machine type that can carry TYPE, e.g. n1-standard-4 for nvidia-tesla-t4>
    --experiments=no_use_multiple_sdk_containers
and it requires `--sdk_container_image` on Dataflow: the stock Beam image has no CUDA libraries, the worker
image from deploy/dataflow/Dockerfile does.

Why `no_use_multiple_sdk_containers` (and not `--number_of_worker_harness_threads`): Runner v2 starts one
SDK process, in its own container, per vCPU. Every process would import TensorFlow, create a CUDA context
and load its own copy of the model, and TensorFlow's allocator grabs most of the GPU's memory for whichever
process comes first, so the others fail or crawl. With this experiment a worker runs ONE SDK process with
many threads; the threads share the single model that RunInference loads once per process (through
`apache_beam.utils.shared`), so each GPU holds one model copy. `--number_of_worker_harness_threads` only
bounds the threads inside each process, not the number of processes, so it would not stop the fight.

Flex Template bridge: a template launcher passes every parameter as `--name=value`, and parameter names
are identifiers. `flex_template_argv` turns `--keep_columns=id` into `--keep-columns=id` and
`--overwrite=true` into `--overwrite` for the pipeline's own argparse flags, and leaves Beam's alone.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence

from apache_beam.options.pipeline_options import (
    DebugOptions,
    GoogleCloudOptions,
    PipelineOptions,
    WorkerOptions,
)

from ae_tf.errors import InvalidInput

DEFAULT_GPU = "nvidia-tesla-t4"
ONE_PROCESS_PER_WORKER = "no_use_multiple_sdk_containers"
# The smallest machine type that can carry one GPU of each kind (Compute Engine's GPU platforms).
GPU_MACHINE_TYPES = {
    "nvidia-tesla-t4": "n1-standard-4",
    "nvidia-tesla-p4": "n1-standard-4",
    "nvidia-tesla-v100": "n1-standard-8",
    "nvidia-tesla-p100": "n1-standard-8",
    "nvidia-l4": "g2-standard-4",
    "nvidia-tesla-a100": "a2-highgpu-1g",
    "nvidia-a100-80gb": "a2-ultragpu-1g",
}
TRUE_WORDS = ("true", "1", "yes", "y", "on")
FALSE_WORDS = ("false", "0", "no", "n", "off", "")


class DataflowOptionError(InvalidInput):
    """Dataflow options that cannot work together; the message says which flag to add or change."""


@dataclasses.dataclass(frozen=True)
class GpuPreset:
    """One GPU type and count per worker, and the machine type that carries them."""

    accelerator: str = DEFAULT_GPU
    count: int = 1
    machine_type: str | None = None

    @classmethod
    def parse(cls, text: str) -> GpuPreset:
        """`nvidia-l4`, `nvidia-l4:2` or empty (the default, nvidia-tesla-t4)."""
        name, _, count = (text or DEFAULT_GPU).partition(":")
        try:
            number = int(count or 1)
        except ValueError:
            number = 0
        if number < 1:
            raise DataflowOptionError(f"--gpu {text}: expected TYPE or TYPE:COUNT with COUNT >= 1")
        return cls(name.strip().lower(), number)

    def service_option(self) -> str:
        return f"worker_accelerator=type:{self.accelerator};count:{self.count};install-nvidia-driver"

    def default_machine_type(self) -> str:
        if self.machine_type:
            return self.machine_type
        try:
            return GPU_MACHINE_TYPES[self.accelerator]
        except KeyError:
            raise DataflowOptionError(
                f"--gpu {self.accelerator}: no default machine type for this GPU; pass --machine_type "
                f"(known: {', '.join(sorted(GPU_MACHINE_TYPES))})") from None


def with_gpu_preset(beam_args: Sequence[str], gpu: str) -> list[str]:
    """`beam_args` plus the GPU preset's options that the user did not set; checks the worker image."""
    preset = GpuPreset.parse(gpu)
    options = PipelineOptions(list(beam_args))
    added: list[str] = []
    services = options.view_as(GoogleCloudOptions).dataflow_service_options or []
    if not any(s.startswith("worker_accelerator=") for s in services):
        added.append(f"--dataflow_service_options={preset.service_option()}")
    if not options.view_as(WorkerOptions).machine_type:
        added.append(f"--machine_type={preset.default_machine_type()}")
    experiments = options.view_as(DebugOptions).experiments or []
    if ONE_PROCESS_PER_WORKER not in experiments:
        added.append(f"--experiments={ONE_PROCESS_PER_WORKER}")
    runner = str(options.get_all_options().get("runner") or "")
    if "Dataflow" in runner and not options.view_as(WorkerOptions).sdk_container_image:
        raise DataflowOptionError(
            "--gpu on Dataflow needs --sdk_container_image: the default Beam image has no CUDA libraries; "
            "build deploy/dataflow/Dockerfile and pass its image")
    return [*beam_args, *added]


def gpu_beam_args(gpu: str = DEFAULT_GPU) -> list[str]:
    """The preset on its own, as documented Beam flags (for READMEs, DAGs and Flex Template parameters)."""
    return with_gpu_preset([], gpu)


def _option_actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in parser._actions for s in a.option_strings if s.startswith("--")}


def flex_template_argv(argv: Sequence[str], parser: argparse.ArgumentParser) -> list[str]:
    """Flex-Template-style `--name=value` arguments -> what `parser` (and Beam) accept.

    For the parser's own flags: underscores become hyphens, boolean switches take true/false values.
    Everything else (Beam's options, which the launcher also passes) is left exactly as it is.
    """
    actions = _option_actions(parser)
    out: list[str] = []
    for token in argv:
        name, eq, value = token.partition("=")
        flag = name.replace("_", "-")
        action = actions.get(flag) if name.startswith("--") else None
        if action is None:
            out.append(token)
        elif action.nargs == 0:  # store_true and friends
            word = value.strip().lower()
            if not eq or word in TRUE_WORDS:
                out.append(flag)
            elif word not in FALSE_WORDS:
                raise DataflowOptionError(f"{name}={value}: expected true or false")
        else:
            out.append(f"{flag}={value}" if eq else flag)
    return out
