"""Airflow DAG: retrain nightly, then refresh the embeddings store on Dataflow with the champion.

    retrain  `ae-tf retrain` on the newest 7 daily partitions. Exit 3 ("kept": the champion stays) marks
             the task skipped, not failed; any other non-zero exit fails it (see `ae-tf retrain --help`).
    refresh  `ae-tf refresh --model REGISTRY --store ROOT`, encoding on Dataflow: the registry resolves to the
             current champion at launch; only partitions that are new or changed since the last complete
             run are encoded (a new champion re-encodes everything into its own version folder), then
             ROOT/CURRENT is switched. Runs after a promotion or a kept champion (trigger rule
             none_failed), never after a failed retrain. Readers use `ae_tf.read_embeddings(ROOT)`,
             `ae-tf reduce --input ROOT`, `ae-tf dedup --input ROOT`.

The worker needs ae-tf installed (`pip install ae-tf`, or run the trainer image deploy/docker/Dockerfile.train
with KubernetesPodOperator on a GPU node pool, using the same arguments). Edit the constants below.
"""

from __future__ import annotations

import datetime as dt

from airflow import DAG

try:  # Airflow 3
    from airflow.providers.standard.operators.bash import BashOperator
except ImportError:  # Airflow 2
    from airflow.operators.bash import BashOperator

EXIT_KEPT = 3  # ae_tf.commands.retrain.EXIT_KEPT

RETRAIN_COMMAND = (
    "ae-tf retrain --registry gs://my-bucket/ae-tf/registry"
    " --input 'gs://my-bucket/events/dt=*' --latest-partitions 7 --min-improvement 0.01"
)

REFRESH_COMMAND = (
    "ae-tf refresh --model gs://my-bucket/ae-tf/registry"
    " --input 'gs://my-bucket/events/dt=*/*.parquet'"
    " --store gs://my-bucket/ae-tf/store --keep-columns id --keep-versions 2"
    " --runner DataflowRunner --project my-project --region us-central1"
    " --temp_location gs://my-bucket/tmp --staging_location gs://my-bucket/staging"
    " --sdk_container_image us-central1-docker.pkg.dev/my-project/ae-tf/dataflow-worker:0.1.0"
    " --sdk_location container --max_num_workers 20"
    " --job_name ae-tf-refresh-{{ ds_nodash }}"
)

with DAG(
    dag_id="ae_tf_retrain_and_refresh",
    schedule="17 3 * * *",
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": dt.timedelta(minutes=10)},
    tags=["ae-tf"],
) as dag:
    retrain = BashOperator(
        task_id="retrain",
        bash_command=RETRAIN_COMMAND,
        skip_on_exit_code=EXIT_KEPT,
        retries=0,  # a failed retrain leaves the registry unchanged; tomorrow's run tries again
        execution_timeout=dt.timedelta(hours=6),
    )
    refresh = BashOperator(
        task_id="refresh",
        bash_command=REFRESH_COMMAND,
        trigger_rule="none_failed",
        execution_timeout=dt.timedelta(hours=6),
    )
    retrain >> refresh
