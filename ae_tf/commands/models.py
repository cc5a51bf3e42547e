"""`ae-tf models list|show|promote|rollback`: the registry's versions and champion from the command line."""

from __future__ import annotations

import argparse
import json
import sys

from ae_tf.contracts import ModelMetadata


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="list, show, promote or roll back the versions of a model registry")
    verbs = p.add_subparsers(dest="models_command", metavar="VERB", required=True)
    registry_help = "registry directory (local or gs://)"

    v = verbs.add_parser("list", help="every version, oldest first; * marks the champion")
    v.add_argument("--registry", required=True, help=registry_help)
    v.add_argument("--json", action="store_true", help="one JSON document instead of a table")

    v = verbs.add_parser("show", help="one version's metadata and evaluation report, as JSON")
    v.add_argument("--registry", required=True, help=registry_help)
    v.add_argument("version", nargs="?", default=None, help="version name (default: the champion)")

    v = verbs.add_parser("promote", help="make a version the champion (a manual override: no evaluation)")
    v.add_argument("--registry", required=True, help=registry_help)
    v.add_argument("version", help="version name, as `ae-tf models list` shows it")
    v.add_argument("--reason", default="promoted by hand", help="recorded in the pointer")

    v = verbs.add_parser("rollback", help="restore the champion before the current one")
    v.add_argument("--registry", required=True, help=registry_help)
    v.add_argument("--reason", default="rolled back by hand", help="recorded in the pointer")


def _print_json(data) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True, default=str)
    print()


def _version_row(registry, version: str, champion: str | None) -> dict:
    meta = ModelMetadata.from_dict(registry.metadata(version), source=registry.version_dir(version))
    report = registry.read_report(version) or {}
    return {
        "version": version, "champion": version == champion, "created_at": meta.created_at,
        "features": ",".join(meta.feature_spec["columns"]), "code_size": meta.code_size,
        "rows": (meta.data or {}).get("rows"),
        "error": (report.get("challenger") or {}).get("error"), "decision": report.get("decision"),
    }


def run(args: argparse.Namespace) -> int:
    from ae_tf.registry.registry import Registry

    registry = Registry(args.registry)
    state = registry.state()
    if args.models_command == "list":
        rows = [_version_row(registry, v, state.champion) for v in registry.versions()]
        if args.json:
            _print_json({"registry": registry.root, "champion": state.champion, "generation": state.generation,
                         "previous": list(state.previous), "versions": rows})
            return 0
        if not rows:
            print(f"{registry.root}: no versions yet")
            return 0
        print(f"  {'version':<30} {'created':<25} {'features':<16} {'k':>4} {'rows':>10} {'error':>10}  decision")
        for r in rows:
            error = f"{r['error']:.5g}" if r["error"] is not None else "-"
            print(f"{'*' if r['champion'] else ' '} {r['version']:<30} {r['created_at'] or '-':<25} "
                  f"{r['features'][:16]:<16} {r['code_size']:>4} {r['rows'] or '-':>10} {error:>10}  "
                  f"{r['decision'] or '-'}")
        print(f"champion: {state.champion or 'none'} (generation {state.generation}, "
              f"{len(state.previous)} to roll back to)")
        return 0
    if args.models_command == "show":
        version = args.version or state.champion
        if version is None:
            registry.champion_dir()  # raises the "no champion yet" error
        _print_json({"version": version, "path": registry.version_dir(version),
                     "champion": version == state.champion, "metadata": registry.metadata(version),
                     "evaluation": registry.read_report(version)})
        return 0
    if args.models_command == "promote":
        new = registry.promote(args.version, args.reason, expected=state)
        print(f"champion: {new.champion} (generation {new.generation}; was {state.champion or 'none'})")
        return 0
    new = registry.rollback(args.reason, expected=state)
    print(f"champion: {new.champion} (generation {new.generation}; was {state.champion})")
    return 0
