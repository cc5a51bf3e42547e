#!/usr/bin/env bash
# Cloud Scheduler, without Airflow or Kubernetes:
#   1. a Cloud Run job runs the trainer image (deploy/docker/Dockerfile.train) every night, and
#   2. a second schedule launches the encode Flex Template (deploy/dataflow/flex_template.sh build) an hour
#      later with the body in encode-launch-body.json; its model is the registry, so the job encodes with
#      whatever the champion is at launch.
# Cloud Scheduler bodies are static: encode a fixed landing prefix, or use the Airflow DAG for dated runs.
#
#   export PROJECT=my-project REGION=us-central1 BUCKET=my-bucket SERVICE_ACCOUNT=ae-tf@my-project.iam.gserviceaccount.com
#   deploy/scheduler/cloud_scheduler.sh
set -euo pipefail

: "${PROJECT:?set PROJECT}" "${REGION:?set REGION}" "${BUCKET:?set BUCKET}" "${SERVICE_ACCOUNT:?set SERVICE_ACCOUNT}"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VERSION=${VERSION:-0.1.0}
TRAINER_IMAGE="${REGION}-docker.pkg.dev/${PROJECT}/ae-tf/trainer:${VERSION}"

# 1. Retrain: the image's entrypoint is deploy/cron/retrain.sh, so "kept" (exit 3) is a successful run.
gcloud run jobs deploy ae-tf-retrain --project "$PROJECT" --region "$REGION" \
    --image "$TRAINER_IMAGE" --service-account "$SERVICE_ACCOUNT" \
    --cpu 4 --memory 16Gi --task-timeout 6h --max-retries 0 \
    --args="--registry,gs://${BUCKET}/ae-tf/registry,--input,gs://${BUCKET}/events/dt=*,--latest-partitions,7"

gcloud scheduler jobs create http ae-tf-retrain-nightly --project "$PROJECT" --location "$REGION" \
    --schedule "17 3 * * *" --time-zone Etc/UTC --http-method POST \
    --uri "https://run.googleapis.com/v2/projects/${PROJECT}/locations/${REGION}/jobs/ae-tf-retrain:run" \
    --oauth-service-account-email "$SERVICE_ACCOUNT"

# 2. Encode with the champion: the Dataflow Flex Template launch API.
sed -e "s|my-bucket|${BUCKET}|g" -e "s|my-project|${PROJECT}|g" -e "s|us-central1|${REGION}|g" \
    "$HERE/encode-launch-body.json" > /tmp/ae-tf-encode-launch-body.json
gcloud scheduler jobs create http ae-tf-encode-nightly --project "$PROJECT" --location "$REGION" \
    --schedule "17 4 * * *" --time-zone Etc/UTC --http-method POST \
    --uri "https://dataflow.googleapis.com/v1b3/projects/${PROJECT}/locations/${REGION}/flexTemplates:launch" \
    --headers "Content-Type=application/json" --message-body-from-file /tmp/ae-tf-encode-launch-body.json \
    --oauth-service-account-email "$SERVICE_ACCOUNT"
