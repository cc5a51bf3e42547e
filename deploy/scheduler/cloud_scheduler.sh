#!/usr/bin/env bash
# Cloud Scheduler, without Airflow or Kubernetes:
#   a Cloud Run job runs the trainer image (deploy/docker/Dockerfile.train) every night: `ae-tf retrain`, then
#   (the arguments after `--`) `ae-tf refresh`, which encodes only the partitions that are new or changed since
#   the last complete run (everything, into a new version folder, when the champion changed) and then switches
#   the store's CURRENT. One-off encodes of a fixed prefix can still use the Flex Template with
#   encode-launch-body.json (deploy/dataflow/flex_template.sh).
#
#   export PROJECT=my-project REGION=us-central1 BUCKET=my-bucket SERVICE_ACCOUNT=ae-tf@my-project.iam.gserviceaccount.com
#   deploy/scheduler/cloud_scheduler.sh
set -euo pipefail

: "${PROJECT:?set PROJECT}" "${REGION:?set REGION}" "${BUCKET:?set BUCKET}" "${SERVICE_ACCOUNT:?set SERVICE_ACCOUNT}"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VERSION=${VERSION:-0.1.0}
TRAINER_IMAGE="${REGION}-docker.pkg.dev/${PROJECT}/ae-tf/trainer:${VERSION}"

# Retrain, then refresh: the image's entrypoint is deploy/cron/retrain.sh, so "kept" (exit 3) is a successful run.
gcloud run jobs deploy ae-tf-retrain --project "$PROJECT" --region "$REGION" \
    --image "$TRAINER_IMAGE" --service-account "$SERVICE_ACCOUNT" \
    --cpu 4 --memory 16Gi --task-timeout 6h --max-retries 0 \
    --args="--registry,gs://${BUCKET}/ae-tf/registry,--input,gs://${BUCKET}/events/dt=*,--latest-partitions,7,--,--model,gs://${BUCKET}/ae-tf/registry,--input,gs://${BUCKET}/events/dt=*/*.parquet,--store,gs://${BUCKET}/ae-tf/store"

gcloud scheduler jobs create http ae-tf-retrain-nightly --project "$PROJECT" --location "$REGION" \
    --schedule "17 3 * * *" --time-zone Etc/UTC --http-method POST \
    --uri "https://run.googleapis.com/v2/projects/${PROJECT}/locations/${REGION}/jobs/ae-tf-retrain:run" \
    --oauth-service-account-email "$SERVICE_ACCOUNT"
