"""The report's dedup examples: for the largest clusters, the kept row next to a few of the rows it replaced.

Rows are shown as pictures when the dedup rows carry the model's input column and the model is an image
model (decoded thumbnails) or takes a square vector (8x8 digits). When the dedup rows lack the image
column (encode kept only ids), the thumbnails are fetched from the encode input by a key column the rows
kept (`id`, or another kept column whose values are unique), named by the encode manifest. Otherwise rows
are shown as their embeddings, one strip each. Members shown are the least similar to their kept row, so the page shows how far a cluster
reaches. Rows are found by position: `cluster_id` is the kept row's row number in the annotated output.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

from ae_tf.errors import InvalidInput
from ae_tf.inputs.features import IMAGE, FeatureSpec

CLUSTERS = 5
MEMBERS = 5
MAX_LOOKUP_FILES = 64  # input files searched by key for thumbnails (each costs a read of the key column)
MAX_SIMILARITY = "max_similarity"


def _read_rows(files: list[str], positions: np.ndarray, columns: list[str]) -> pa.Table:
    """Rows at global positions (in file order) of the annotated output, in the order asked."""
    from ae_tf.report.inputs import _open

    parts, found = [], []
    start = 0
    for path in files:
        reader = _open(path)
        rows = reader.metadata.num_rows
        local = positions[(positions >= start) & (positions < start + rows)]
        if len(local):
            parts.append(reader.read(columns=columns).take(pa.array(local - start)))
            found.append(local)
        start += rows
    table = pa.concat_tables(parts)
    order = np.argsort(np.concatenate(found))
    return table.take(pa.array(order[np.argsort(np.argsort(positions))]))


def _from_encode_input(table: pa.Table, spec: FeatureSpec, manifest) -> tuple[pa.Table, str] | None:
    """The dedup rows with the image column added from the encode input, matched by a kept key column."""
    column = spec.columns[0] if spec.columns else None
    inputs = list(getattr(manifest, "inputs", None) or [])
    if spec.kind != IMAGE or column is None or not inputs or len(inputs) > MAX_LOOKUP_FILES:
        return None
    from ae_tf.report.inputs import rows_by_key

    kept = list(getattr(manifest, "keep_columns", None) or [])
    keys = [k for k in dict.fromkeys(["id", *kept]) if k in table.column_names and k != column]
    for key in keys:
        values = table.column(key).to_pylist()
        if None in values or len(set(values)) != len(values):
            continue
        found = rows_by_key(inputs, key, values, [column])
        if found is not None:
            return table.append_column(column, found.column(column)), f" (fetched from the encode input by `{key}`)"
    return None


def _pictures(table: pa.Table, spec: FeatureSpec) -> tuple[np.ndarray | None, str]:
    """(images [n, h, w(, c)] in their own value range, what they are) or (embeddings [n, k], ...)."""
    column = spec.columns[0] if spec.columns else None
    if column is not None and column in table.column_names:
        if spec.kind == IMAGE:
            import tensorflow as tf

            from ae_tf.inputs.images import decode_images

            data = table.column(column).combine_chunks()
            if pa.types.is_binary(data.type) or pa.types.is_large_binary(data.type):
                images = decode_images(tf.constant(data.to_pylist()), spec.image).numpy()
                return (images[..., 0] if images.shape[-1] == 1 else images), f"`{column}` images"
        else:
            from ae_tf.embeddings import embedding_matrix

            try:
                values = embedding_matrix(table.column(column))
            except (AttributeError, ValueError, pa.ArrowException):
                values = None
            side = math.isqrt(values.shape[1]) if values is not None else 0
            if values is not None and side >= 2 and side * side == values.shape[1]:
                return values.reshape(len(values), side, side), f"`{column}` as {side}x{side} images"
    if "embedding" in table.column_names:
        from ae_tf.embeddings import embedding_matrix

        return embedding_matrix(table.column("embedding")), "embeddings (one strip per row)"
    return None, ""


def draw_examples(cells: list[list[tuple[np.ndarray, str]]]) -> bytes:
    """One figure row per cluster: pictures (2-D or 3-D arrays) or embedding strips (1-D), labelled."""
    from ae_tf.report.plots import FIGURES, new_figure, to_png

    kind = FIGURES["dedup_examples"]
    fig = new_figure(kind)
    cols = max(len(row) for row in cells)
    axes = fig.subplots(len(cells), cols, squeeze=False)
    every = np.concatenate([np.ravel(p) for row in cells for p, _ in row]).astype(np.float64)
    low, high = float(np.nanmin(every)), float(np.nanmax(every))
    for r, row in enumerate(cells):
        for c in range(cols):
            ax = axes[r, c]
            ax.set_axis_off()
            if c >= len(row):
                continue
            picture, label = row[c]
            picture = np.asarray(picture, dtype=np.float64)
            shown = picture[None, :] if picture.ndim == 1 else picture
            ax.imshow(shown, cmap="gray" if shown.ndim == 2 and picture.ndim > 1 else "coolwarm",
                      vmin=low, vmax=high, aspect="auto" if picture.ndim == 1 else "equal", interpolation="nearest")
            ax.set_title(label, fontsize=7, color="#1f77b4" if c == 0 else "black")
    fig.suptitle(kind.title + ": kept row (left) and the members least similar to it", fontsize=10)
    return to_png(fig, kind)


def dedup_examples(dedup, spec: FeatureSpec, manifest=None) -> tuple[bytes, str]:
    """The figure and its caption; raises ValueError with the reason when nothing can be shown.

    `manifest` (the encode run's ae_tf.contracts.EncodeManifest) names the input to fetch thumbnails from.
    """
    from ae_tf.report.inputs import _open

    ids = dedup.cluster_ids()
    if ids is None:
        raise InvalidInput(f"no Parquet rows with cluster_id in {dedup.directory}")
    labels, counts = np.unique(ids, return_counts=True)
    big = np.argsort(-counts, kind="stable")[:CLUSTERS]
    big = big[counts[big] > 1]
    if len(big) == 0:
        raise InvalidInput(f"no duplicate clusters among the {len(ids):,} rows in {dedup.directory}")
    schema = _open(dedup.row_files[0]).schema_arrow
    similarity = None
    if MAX_SIMILARITY in schema.names:
        similarity = np.concatenate([_open(p).read(columns=[MAX_SIMILARITY]).column(MAX_SIMILARITY)
                                     .to_numpy(zero_copy_only=False) for p in dedup.row_files]).astype(np.float64)
    groups = []
    for cluster in labels[big]:
        members = np.flatnonzero(ids == cluster)
        members = members[members != cluster]
        if similarity is not None:
            members = members[np.argsort(np.nan_to_num(similarity[members], nan=2.0), kind="stable")]
        groups.append(np.r_[cluster, members[:MEMBERS]].astype(np.int64))
    positions = np.concatenate(groups)
    if positions.max() >= len(ids):
        raise InvalidInput(f"cluster_id values in {dedup.directory} are not row numbers of its rows")
    kept = list(getattr(manifest, "keep_columns", None) or [])
    wanted = [n for n in dict.fromkeys([*spec.columns, "embedding", "id", *kept]) if n in schema.names]
    table = _read_rows(dedup.row_files, positions, wanted)
    fetched = ""
    if spec.columns and spec.columns[0] not in table.column_names:
        added = _from_encode_input(table, spec, manifest)
        if added is not None:
            table, fetched = added
    pictures, what = _pictures(table, spec)
    what += fetched
    if pictures is None:
        raise InvalidInput(f"the rows in {dedup.directory} carry neither the model's input column nor an embedding")
    names = table.column("id").to_pylist() if "id" in schema.names else positions.tolist()
    sims = similarity[positions] if similarity is not None else np.full(len(positions), np.nan)
    cells, start = [], 0
    for group, cluster in zip(groups, labels[big], strict=True):
        rows = range(start, start + len(group))
        cells.append([(pictures[i], f"{'kept ' if i == start else ''}{names[i]}"
                       + ("" if i == start or np.isnan(sims[i]) else f"\ncos {sims[i]:.3f}")) for i in rows])
        start += len(group)
        del cluster
    sizes = ", ".join(f"{int(c):,}" for c in counts[big])
    return draw_examples(cells), (
        f"The {len(big)} largest clusters in {dedup.directory} (sizes {sizes}): the kept row first, then the "
        f"members least similar to it, with their cosine. Shown: {what}.")
