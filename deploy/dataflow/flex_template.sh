#!/usr/bin/env bash
# Build, register and run the ae-tf encode Flex Template (gcloud and docker must be installed and logged in).
#
#   export PROJECT=my-project REGION=us-central1 BUCKET=my-bucket
#   deploy/dataflow/flex_template.sh build
#   deploy/dataflow/flex_template.sh run model=gs://my-bucket/ae-tf/registry \
#       input='gs://my-bucket/events/dt=2026-06-01/*.parquet' output=gs://my-bucket/embeddings/dt=2026-06-01 \
#       keep_columns=id,label overwrite=true [gpu=nvidia-tesla-t4]
#
# `build` pushes two images to Artifact Registry (the worker image and the launcher image built on it) and
# writes the template spec to gs://$BUCKET/templates/. `run` launches one job; its NAME=VALUE arguments are
# the parameters in deploy/dataflow/metadata.json.
set -euo pipefail

: "${PROJECT:?set PROJECT}" "${REGION:?set REGION}" "${BUCKET:?set BUCKET}"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VERSION=${VERSION:-$(cd "$ROOT" && python3 setup.py --version 2>/dev/null | tail -n 1)}
REPOSITORY=${REPOSITORY:-ae-tf}
REGISTRY_HOST="${REGION}-docker.pkg.dev"
WORKER_IMAGE="${REGISTRY_HOST}/${PROJECT}/${REPOSITORY}/dataflow-worker:${VERSION}"
LAUNCHER_IMAGE="${REGISTRY_HOST}/${PROJECT}/${REPOSITORY}/dataflow-launcher:${VERSION}"
TEMPLATE="gs://${BUCKET}/templates/ae-tf-encode-${VERSION}.json"

build() {
    gcloud artifacts repositories describe "$REPOSITORY" --project "$PROJECT" --location "$REGION" >/dev/null 2>&1 ||
        gcloud artifacts repositories create "$REPOSITORY" --project "$PROJECT" --location "$REGION" \
            --repository-format docker
    gcloud auth configure-docker "$REGISTRY_HOST" --quiet
    docker build -f "$ROOT/deploy/dataflow/Dockerfile" -t "$WORKER_IMAGE" "$ROOT"
    docker push "$WORKER_IMAGE"
    docker build -f "$ROOT/deploy/dataflow/launcher/Dockerfile" --build-arg "WORKER_IMAGE=$WORKER_IMAGE" \
        -t "$LAUNCHER_IMAGE" "$ROOT"
    docker push "$LAUNCHER_IMAGE"
    gcloud dataflow flex-template build "$TEMPLATE" --project "$PROJECT" \
        --image "$LAUNCHER_IMAGE" --sdk-language PYTHON --metadata-file "$ROOT/deploy/dataflow/metadata.json"
    echo "template: $TEMPLATE"
}

run() {
    [ "$#" -gt 0 ] || { echo "usage: $0 run model=... input=... output=... [name=value ...]" >&2; exit 2; }
    # gcloud's ^~^ prefix makes ~ the separator, so values may contain commas (keep_columns=id,label).
    local parameters="^~^sdk_container_image=${WORKER_IMAGE}"
    for pair in "$@"; do
        parameters+="~${pair}"
    done
    gcloud dataflow flex-template run "ae-tf-encode-$(date -u +%Y%m%d-%H%M%S)" \
        --project "$PROJECT" --region "$REGION" --template-file-gcs-location "$TEMPLATE" \
        --staging-location "gs://${BUCKET}/staging" --temp-location "gs://${BUCKET}/tmp" \
        --parameters "$parameters"
}

command=${1:-}
shift || true
case "$command" in
    build) build ;;
    run) run "$@" ;;
    *) echo "usage: $0 build | run NAME=VALUE..." >&2; exit 2 ;;
esac
