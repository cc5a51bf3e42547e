#!/usr/bin/env bash
# Scheduled retrain: runs `ae-tf retrain "$@"` and reports "kept" (exit 3) as success, so cron, systemd
# and Kubernetes count only real failures. Used by the crontab line, the systemd service, the CronJob and
# the trainer image's entrypoint.
#
#   deploy/cron/retrain.sh --registry /srv/ae-tf/registry --input '/srv/ae-tf/data/dt=*' --latest-partitions 7
#
# AE_TF names the ae-tf executable (default: ae-tf on PATH, e.g. /opt/ae-tf/.venv/bin/ae-tf).
# Exit: 0 promoted or kept; 1 failed; 2 bad arguments or input; 4 promoted but --then-encode failed.
set -uo pipefail

AE_TF=${AE_TF:-ae-tf}
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
"$AE_TF" retrain "$@"
status=$?
case "$status" in
    0) echo "[$started] retrain: promoted a new champion" ;;
    3) echo "[$started] retrain: champion kept (challenger not better)"; status=0 ;;
    *) echo "[$started] retrain: FAILED with exit code $status" >&2 ;;
esac
exit "$status"
