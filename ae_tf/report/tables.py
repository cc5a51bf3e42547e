"""The report's tables: the model, the encode manifest and the dedup summary, as rows of text."""

from __future__ import annotations

from ae_tf.model.anomaly import describe_score
from ae_tf.report.data import ReportData
from ae_tf.report.html import Table


def _num(value, digits: int = 5) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def model_table(data: ReportData) -> Table:
    m = data.metadata
    spec = data.spec
    training = m.training or {}
    threshold = m.anomaly_threshold or {}
    features = f"{spec.kind}: {', '.join(spec.columns)} (width {spec.width})"
    if spec.image is not None:
        features += f", images {spec.image.height}x{spec.image.width}x{spec.image.channels} ({spec.image.encoding})"
    network = (m.extra.get("model") or {}).get("network")
    rows = [
        ("model", data.config.model),
        ("version", m.model_version),
        ("created", m.created_at or "-"),
        ("family", m.family + (f" ({network} network)" if network else "")),
        ("code size", _num(m.code_size)),
        ("features", features),
        ("training rows", f"{_num(training.get('rows_train'))} train, {_num(training.get('rows_validation'))} validation"),
        ("epochs", f"{_num(training.get('epochs_run'))} run, best {_num(training.get('best_epoch'))}, "
                   f"{_num(training.get('seconds'))}s on {training.get('device', '-')}"),
        ("loss", f"train {_num(training.get('train_loss'))}, validation {_num(training.get('validation_loss'))}"),
        ("anomaly threshold", f"{_num(threshold.get('value'))} (quantile {_num(threshold.get('quantile'))} of "
                              f"validation {describe_score(m)})" if threshold else "-"),
        ("versions", ", ".join(f"{k} {v}" for k, v in (m.versions or {}).items())),
    ]
    return Table("Model", rows)


def manifest_table(data: ReportData) -> Table:
    man = data.manifest
    if not man:
        return Table("Embeddings", [("embeddings", data.config.embeddings)] if data.config.embeddings else [])
    error = man.reconstruction_error or {}
    rows = [
        ("output", man.output_dir if man.output_dir is not None else data.config.embeddings),
        ("rows", f"in {_num(man.rows_in)}, out {_num(man.rows_out)}, rejected {_num(man.rows_rejected)}"),
        ("reconstruction error", f"mean {_num(error.get('mean'))}, max {_num(error.get('max'))}"),
        ("shards", _num(len(man.shards))),
        ("encoded with", f"{man.model_dir or '-'} (version {man.model_version or '-'})"),
        ("finished", man.finished_at or "-"),
    ]
    if man.anomalies:
        a = man.anomalies
        rows.append(("anomalies", f"{_num(a.get('rows_flagged'))} rows above {_num(a.get('threshold'))} "
                                  f"({a.get('rule', '-')})"))
    return Table("Embeddings (encode manifest)", rows)


def dedup_table(data: ReportData) -> Table:
    if data.dedup is None or data.dedup.summary is None:
        return Table("Duplicates", [])
    s = data.dedup.summary
    keys = ("rows", "threshold", "pairs", "clusters", "rows_in_clusters", "rows_removed", "rows_kept", "keep_policy")
    rows = [(k.replace("_", " "), _num(s[k])) for k in keys if k in s]
    exact = s.get("exact_duplicates") or {}
    if exact:
        rows.append(("identical rows removed", _num(exact.get("rows_removed"))))
    checks = s.get("checks") or {}
    if checks:
        residual = checks.get("residual_duplicates") or {}
        rows.append(("removed rows below the threshold", _num(checks.get("removed_below_threshold"))))
        rows.append(("kept rows with a kept duplicate", f"{_num(residual.get('with_kept_duplicate'))} of "
                                                        f"{_num(residual.get('sample_kept_rows'))} sampled"))
    return Table(f"Duplicates ({data.dedup.summary_path})", rows)


def page_warnings(data: ReportData) -> list[str]:
    notes = []
    if data.manifest and data.manifest.model_version not in (None, data.metadata.model_version):
        notes.append(f"The embeddings were made by model version {data.manifest.model_version}, not this "
                     f"model's {data.metadata.model_version}: its threshold may not fit them.")
    if "manifest" in data.notes:
        notes.append(data.notes["manifest"])
    return notes
