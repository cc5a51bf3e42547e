"""No credential look-up when there is nothing to authenticate against: a storage emulator, or --no_auth.

Beam's GCS filesystem asks `google.auth.default()` for credentials once per process, and retries a failed
look-up with exponential back-off (apache_beam/internal/gcp/auth.py, `_get_credentials_with_retrys`:
about 15 s on a machine without credentials) before it connects anonymously anyway. Against
`STORAGE_EMULATOR_HOST`, or when the user said `--no_auth`, that wait buys nothing: we record "no
credentials" up front, so Beam's `create_storage_client` makes its anonymous client at once (which the
client library points at the emulator). Real runs with credentials are untouched.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def skip_credential_lookup(no_auth: bool = False) -> bool:
    """Tell Beam's credential cache there are none, if an emulator is set or `no_auth`; returns whether it did."""
    if not (os.environ.get("STORAGE_EMULATOR_HOST") or no_auth):
        return False
    try:
        from apache_beam.internal.gcp import auth
    except ImportError:  # pragma: no cover - Beam without the gcp extra has no GCS filesystem either
        return False
    credentials = auth._Credentials  # Beam's process-wide, lock-protected credential cache
    with credentials._credentials_lock:
        if not credentials._credentials_init:
            credentials._credentials = None
            credentials._credentials_init = True
            log.debug("GCS: no credential look-up (%s)", "emulator" if not no_auth else "--no_auth")
    return True


def skip_for_options(options) -> bool:
    """The same, reading `--no_auth` from Beam pipeline options."""
    from apache_beam.options.pipeline_options import GoogleCloudOptions

    return skip_credential_lookup(bool(options.view_as(GoogleCloudOptions).no_auth))
