#!/usr/bin/env bash
# Scheduled retrain, then refresh: runs `ae-tf retrain ARGS` and reports "kept" (exit 3) as success, so cron,
# systemd and Kubernetes count only real failures. Arguments after `--` are `ae-tf refresh` arguments: when
# given, the embeddings store is brought up to date after a promoted or a kept champion (only new or changed
# input files are encoded; a new champion re-encodes everything into its own version and then switches CURRENT).
# Used by the crontab line, the systemd service, the CronJob, the Cloud Run job and the trainer image's entrypoint.
#
#   deploy/cron/retrain.sh --registry /srv/ae-tf/registry --input '/srv/ae-tf/data/dt=*' --latest-partitions 7 \
#       -- --model /srv/ae-tf/registry --input '/srv/ae-tf/data/dt=*/*.parquet' --store /srv/ae-tf/store
#
# AE_TF names the ae-tf executable (default: ae-tf on PATH, e.g. /opt/ae-tf/.venv/bin/ae-tf).
# Exit: 0 promoted or kept (and refreshed); 1 failed; 2 bad arguments or input; 4 promoted but --then-encode
# failed; 5 retrain fine but the refresh failed (or another refresh held the store).
set -uo pipefail

AE_TF=${AE_TF:-ae-tf}
retrain_args=()
refresh_args=()
seen_separator=0
for arg in "$@"; do
    if [[ $seen_separator == 0 && $arg == "--" ]]; then
        seen_separator=1
    elif [[ $seen_separator == 0 ]]; then
        retrain_args+=("$arg")
    else
        refresh_args+=("$arg")
    fi
done

started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
"$AE_TF" retrain "${retrain_args[@]}"
status=$?
case "$status" in
    0) echo "[$started] retrain: promoted a new champion" ;;
    3) echo "[$started] retrain: champion kept (challenger not better)"; status=0 ;;
    *) echo "[$started] retrain: FAILED with exit code $status" >&2 ;;
esac
if [[ $status == 0 && ${#refresh_args[@]} -gt 0 ]]; then
    if "$AE_TF" refresh "${refresh_args[@]}"; then
        echo "[$started] refresh: store is current"
    else
        echo "[$started] refresh: FAILED with exit code $?" >&2
        status=5
    fi
fi
exit "$status"
