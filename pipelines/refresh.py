"""Keep an embeddings store current: encode only the input files that are new or changed.

    ae-tf refresh --model MODEL_DIR|REGISTRY --input GLOB --store ROOT [--embedding-dtype float32|float16|int8]
                  [--keep-versions 2] [Beam options]

One run, under the store's refresh lock (ae_tf.registry.store_lock):
  1. resolve the model (a registry -> its champion) and its folder ROOT/versions/<model_version>[-dtype];
  2. describe every input file (size, mtime or generation, rows, footer fingerprint) and compare with the
     manifest the folder builds on (CURRENT's when it points there): new or changed files are encoded,
     unchanged ones keep their shards, deleted ones leave the view;
  3. encode those files with the encode pipeline into the folder's _temporary/<run>/, then move each file's
     shards in under names of their own, write the manifest (_manifests/<run>.json and _SUCCESS);
  4. swap CURRENT by compare-and-swap (the registry's, ae_tf.registry.pointer); only then remove shards no longer
     referenced and prune version folders beyond --keep-versions.
A run killed anywhere before 4 leaves CURRENT on the last complete version; the next run clears its leftovers.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import Sequence

import ae_tf
from ae_tf import storage
from ae_tf.contracts import EncodeManifest, ModelMetadata
from ae_tf.defaults import BATCH_ROWS, MAX_ROWS_PER_SPLIT
from ae_tf.model.export import check_model_dir
from ae_tf.registry.pointer import PointerConflict
from ae_tf.registry.registry import resolve_model_dir
from ae_tf.registry.store import (
    FORMAT,
    MANIFESTS,
    SUCCESS,
    VERSIONS,
    Current,
    InputFile,
    StoredFile,
    base_manifest,
    describe_input,
    folder_name,
    plan_refresh,
    pointer,
    prune,
    read_current,
    remove_unreferenced,
    stored_files,
    version_dir,
)
from ae_tf.registry.store_lock import DEFAULT_TTL_S, StoreBusy, refresh_lock
from ae_tf.vectors.codes import Codec
from pipelines.encode import EncodePlan, build_pipeline, plan_encode
from pipelines.io.compact_output import add_embedding_dtype_flag
from pipelines.io.parquet import TEMP_DIR, InputError, ParquetSplit, match_files, utc_now
from pipelines.runner.launch import execute, main_with_summary, pipeline_arg_parser, prepare_launch
from pipelines.runner.options import add_gpu_flag, add_model_batch_flags, add_progress_flag, split_args

log = logging.getLogger(__name__)


def refresh_arg_parser():
    parser = pipeline_arg_parser("ae-tf refresh", "Bring an embeddings store up to date with the input and the "
                                 "model: encode only new or changed files, then switch ROOT/CURRENT (Beam pipeline).")
    parser.add_argument("--model", required=True, help="model directory, or a model registry (its champion)")
    parser.add_argument("--input", required=True, help="Parquet files: a glob or a directory (local or gs://)")
    parser.add_argument("--store", required=True, help="store root (local or gs://): CURRENT and versions/")
    add_embedding_dtype_flag(parser)
    parser.add_argument("--keep-versions", type=int, default=2,
                        help="complete version folders kept, the current one included (default: %(default)s)")
    parser.add_argument("--keep-columns", default=None,
                        help="comma-separated columns copied to the output (default: every non-feature column)")
    parser.add_argument("--batch-rows", type=int, default=BATCH_ROWS, help="rows per Arrow batch (default: %(default)s)")
    parser.add_argument("--max-rows-per-split", type=int, default=MAX_ROWS_PER_SPLIT,
                        help="large files are split at row groups into units of about this many rows")
    parser.add_argument("--compression", default="zstd", help="Parquet codec of the shards (default: %(default)s)")
    parser.add_argument("--max-rejected-fraction", type=float, default=0.01,
                        help="fail, changing nothing, when more rows than this fraction cannot be encoded")
    parser.add_argument("--lock-ttl", type=float, default=DEFAULT_TTL_S,
                        help="gs:// only: seconds after which the lock of a run that died is taken over")
    add_model_batch_flags(parser)
    add_progress_flag(parser)
    add_gpu_flag(parser)
    return parser


@dataclasses.dataclass(frozen=True)
class RefreshRun:
    """One run's fixed facts."""

    root: str
    model_dir: str
    model_version: str
    code_size: int
    dtype: str
    folder: str
    run_id: str
    started_at: str

    @property
    def directory(self) -> str:
        return version_dir(self.root, self.folder)

    @property
    def staging(self) -> str:
        return storage.join(self.directory, TEMP_DIR, self.run_id)


def _move(source: str, target: str) -> None:
    if storage.is_local(source) and storage.is_local(target):
        os.replace(source, target)
    else:
        storage.copy_file(source, target)
        storage.remove(source)


def _encode_plan(run: RefreshRun, args, todo: Sequence[InputFile], codec: Codec | None) -> EncodePlan:
    """The encode pipeline's plan, narrowed to the files this run must encode."""
    keep = [c.strip() for c in args.keep_columns.split(",") if c.strip()] if args.keep_columns else None
    plan = plan_encode(run.model_dir, args.input, run.staging, keep, args.batch_rows, args.max_rows_per_split,
                       args.compression, max_rejected_fraction=args.max_rejected_fraction,
                       model_batch_rows=args.model_batch_rows, model_memory_mb=args.model_memory_mb,
                       embedding_dtype=run.dtype, codec=codec)
    wanted = {f.path for f in todo}
    missing = wanted - set(plan.inputs)
    if missing:
        raise InputError(f"{sorted(missing)[0]}: disappeared from --input while the refresh was planned")
    splits = [s for s in plan.splits if s.path in wanted]
    splits = tuple(ParquetSplit(i, s.path, s.num_rows, s.row_groups) for i, s in enumerate(splits))
    return dataclasses.replace(plan, inputs=tuple(p for p in plan.inputs if p in wanted), splits=splits,
                               run_id=run.run_id)


def encode_files(run: RefreshRun, args, beam_args, todo: Sequence[InputFile], codec: Codec | None
                 ) -> tuple[list[StoredFile], Codec | None]:
    """Run the encode pipeline over `todo` and move each file's shards into the version folder."""
    plan = _encode_plan(run, args, todo, codec)
    manifest = execute(prepare_launch(beam_args), lambda p: build_pipeline(p, plan), run.staging,
                       f"refresh-{run.run_id}", "refresh", args.progress_interval)
    if manifest is None:
        raise InputError("refresh needs the pipeline to finish before it returns: run it with a runner that "
                         "waits (the local one, or DataflowRunner without --dry_run)")
    manifest = EncodeManifest.from_dict(manifest, source=run.staging)
    shards_of: dict[str, list[tuple[str, int]]] = {f.path: [] for f in todo}
    for shard in manifest.shards:  # shard i is split i (pipelines.io.parquet.shard_name)
        index = int(shard["file"].split("-")[1])
        shards_of[plan.splits[index].path].append((shard["file"], int(shard["rows"])))
    stored = []
    for item in todo:
        names = []
        for j, (name, rows) in enumerate(shards_of[item.path]):
            final = f"part-{item.key}-{j:03d}.parquet"
            _move(storage.join(run.staging, name), storage.join(run.directory, final))
            names.append((final, rows))
        rows_out = sum(r for _, r in names)
        stored.append(StoredFile(item, tuple(names), rows_out, item.rows - rows_out, run.run_id))
    storage.rmtree(storage.join(run.directory, TEMP_DIR))
    return stored, Codec.from_dict(manifest.embedding_codec)


def build_manifest(run: RefreshRun, files: list[StoredFile], encoded: list[StoredFile], dropped, codec) -> dict:
    """The version folder's manifest: the encode contract's fields plus every input file's entry."""
    files = sorted(files, key=lambda f: f.input.path)
    return {
        "format": FORMAT, "model_dir": run.model_dir, "model_version": run.model_version, "folder": run.folder,
        "code_size": run.code_size, "embedding_dtype": run.dtype, "embedding_codec": (codec or Codec()).to_dict(),
        "rows_in": sum(f.input.rows for f in files), "rows_out": sum(f.rows_out for f in files),
        "rows_rejected": sum(f.rows_rejected for f in files), "inputs": [f.input.path for f in files],
        "shards": [{"file": name, "rows": rows} for f in files for name, rows in f.shards],
        "files": [f.to_dict() for f in files],
        "run": {"run_id": run.run_id, "rows_encoded": sum(f.input.rows for f in encoded),
                "files_encoded": [f.input.path for f in encoded], "files_reused": len(files) - len(encoded),
                "files_dropped": [f.input.path for f in dropped]},
        "started_at": run.started_at, "finished_at": utc_now(), "ae_tf_version": ae_tf.__version__,
    }


def refresh(args, beam_args) -> dict:
    """One refresh (see the module docstring); returns the manifest of the version CURRENT points to."""
    if args.keep_versions < 1:
        raise InputError(f"--keep-versions must be at least 1, got {args.keep_versions}")
    root = args.store.rstrip("/")
    model_dir = resolve_model_dir(args.model)  # a registry -> its champion, fixed for this run
    metadata = ModelMetadata.from_dict(check_model_dir(model_dir), source=model_dir)
    version = metadata.model_version
    run = RefreshRun(root, model_dir, version, int(metadata.code_size), args.embedding_dtype,
                     folder_name(version, args.embedding_dtype),
                     f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}", utc_now())
    with refresh_lock(root, run.run_id, args.lock_ttl):
        current, snapshot = read_current(root)
        inputs = [describe_input(path) for path in match_files(args.input)]
        base = base_manifest(root, current, run.folder)
        base_files = stored_files(base) if base else []
        plan = plan_refresh(inputs, base_files)
        # What a killed run left in this folder: shards no base references, its _temporary.
        remove_unreferenced(run.directory, {name for f in base_files for name, _ in f.shards})
        storage.rmtree(storage.join(run.directory, TEMP_DIR))
        if current is not None and current.name == run.folder and not plan.changes_anything:
            log.info("%s is up to date with %s (model %s)", root, args.input, version)
            pruned = prune(root, list(dict.fromkeys([current.name, *current.history]))[:args.keep_versions])
            return {**base, "pruned": pruned, "run": {"run_id": run.run_id, "rows_encoded": 0, "files_encoded": [],
                                    "files_reused": len(base_files), "files_dropped": []}}
        log.info("refresh %s: %d new or changed file(s) (%d rows) to encode, %d reused, %d dropped; model %s",
                 root, len(plan.todo), plan.rows_to_encode, len(plan.reuse), len(plan.dropped), version)
        codec = Codec.from_dict(base.get("embedding_codec")) if base and run.dtype != "float32" else None
        encoded: list[StoredFile] = []
        if plan.todo:
            encoded, codec = encode_files(run, args, beam_args, plan.todo, codec)
        manifest = build_manifest(run, [*plan.reuse, *encoded], encoded, plan.dropped, codec)
        relative = f"{VERSIONS}/{run.folder}"
        manifest_name = f"{relative}/{MANIFESTS}/{run.run_id}.json"
        text = json.dumps(manifest, indent=2, sort_keys=True)
        storage.write_bytes(storage.join(root, *manifest_name.split("/")), text, "application/json")
        storage.write_bytes(storage.join(run.directory, SUCCESS), text, "application/json")
        history = [run.folder, *[h for h in ((current.name,) + current.history if current else ()) if h != run.folder]]
        history = list(dict.fromkeys(history))[:args.keep_versions]
        new = Current(version, relative, manifest_name, manifest["rows_out"],
                      tuple(f"{relative}/{s['file']}" for s in manifest["shards"]), run.dtype, tuple(history),
                      run.run_id, utc_now())
        try:
            pointer(root).swap(snapshot, new.to_dict())
        except PointerConflict as err:
            raise StoreBusy(f"{root}: CURRENT changed while this refresh ran ({err}); nothing switched") from None
        # After the switch: drop what the new view no longer references, then old versions.
        remove_unreferenced(run.directory, {s["file"] for s in manifest["shards"]})
        for name in storage.listdir(storage.join(run.directory, MANIFESTS)):
            if name != f"{run.run_id}.json":
                storage.remove(storage.join(run.directory, MANIFESTS, name))
        pruned = prune(root, history)
        return {**manifest, "pruned": pruned}


def run(argv: Sequence[str] | None = None) -> dict:
    args, beam_args = split_args(refresh_arg_parser(), argv)
    return refresh(args, beam_args)


def summarize(manifest: dict, seconds: float) -> str:
    stats = manifest["run"]
    return "\n".join([
        f"encoded    {stats['rows_encoded']:,} rows from {len(stats['files_encoded'])} new or changed file(s); "
        f"reused {stats['files_reused']} file(s); dropped {len(stats['files_dropped'])}",
        f"current    {manifest['rows_out']:,} rows in {len(manifest['files'])} input file(s), model "
        f"{manifest['model_version']}, stored as {manifest['embedding_dtype']}",
        f"folder     versions/{manifest['folder']}/ ({len(manifest['shards'])} shard(s) and _SUCCESS)"
        + (f"; pruned {', '.join(manifest['pruned'])}" if manifest.get("pruned") else ""),
        f"time       {seconds:.1f}s",
    ])


def main(argv: Sequence[str] | None = None) -> int:
    """`ae-tf refresh` / `python -m pipelines.refresh`."""
    return main_with_summary(run, summarize, argv)


if __name__ == "__main__":
    from ae_tf.commands.main import run_alone
    from pipelines.commands import REFRESH

    sys.exit(run_alone(REFRESH))  # this pipeline's own row: flags checked, one-line errors, no CLI table
