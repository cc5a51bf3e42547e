"""Beam pipelines over Parquet; they use `ae_tf` only through its public functions."""

# Every process that imports the pipelines (the launcher, and each worker of the multi-process runner,
# which inherits the environment) skips Beam's slow credential look-up when a storage emulator is set.
from pipelines.runner.gcs_auth import skip_credential_lookup as _skip_credential_lookup  # noqa: E402

_skip_credential_lookup()
