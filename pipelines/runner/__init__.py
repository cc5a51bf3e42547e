"""How a pipeline runs: options, runner choice, Dataflow presets, credentials, progress, one-line failures."""

# Every process that runs a pipeline imports this package (the launcher, and each worker of the multi-process
# runner, which inherits the environment): it skips Beam's slow credential look-up when a storage emulator is set.
from pipelines.runner.gcs_auth import skip_credential_lookup as _skip_credential_lookup  # noqa: E402

_skip_credential_lookup()
