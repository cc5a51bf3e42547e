"""The layout's rules, checked on the sources (docs/ARCHITECTURE.md says why each holds).

- ae_tf never imports apache_beam, pipelines or the entry module ae_tf_cli: not at the top of a module, not
  inside a function, not through importlib. Importing all of ae_tf loads no Beam.
- No import cycles among the modules of ae_tf, pipelines and ae_tf_cli, counting imports inside functions
  (a lazy import still ties the two modules together). Only `if __name__ == "__main__":` blocks are left
  out: they run when the file is a script, never when the module is imported.
- Pipelines reach the command line only through their own row (pipelines.commands), never ae_tf_cli.
- No module over 400 lines; every package has an __init__.py; the docs name only files that exist.
"""

from __future__ import annotations

import ast
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("ae_tf", "pipelines")
ENTRY = "ae_tf_cli"
MAX_LINES = 400


def module_files() -> dict[str, pathlib.Path]:
    """Dotted module name -> file, for every module of ae_tf, pipelines and the entry module."""
    files = {ENTRY: ROOT / f"{ENTRY}.py"}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def _is_main_guard(node: ast.AST) -> bool:
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__"
            and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in node.test.comparators))


def _walk(tree: ast.AST):
    """ast.walk without the bodies of `if __name__ == "__main__":` blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(c for c in ast.iter_child_nodes(node) if not _is_main_guard(c))


def imported_names(name: str, path: pathlib.Path, modules: set[str] | frozenset[str] = frozenset()) -> set[str]:
    """Every module name this module imports anywhere (absolute; relative imports resolved), and the string
    arguments of importlib.import_module / __import__ calls. `from pkg import x` names `pkg.x` when that is
    one of `modules`, else `pkg`."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found.update(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names)
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id in ("import_module", "__import__")))):
            found.add(node.args[0].value.partition("{")[0].rstrip("."))
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of ours it imports (a name resolves to the longest module prefix it has)."""
    files = module_files()
    graph = {}
    for name, path in files.items():
        edges = set()
        for target in imported_names(name, path, set(files)):
            while target and target not in files:
                target = target.rpartition(".")[0]
            if target and target != name:
                edges.add(target)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_ae_tf_never_imports_beam_the_pipelines_or_the_entry_module():
    offenders = {name: sorted(n for n in imported_names(name, path)
                              if n.split(".")[0] in ("apache_beam", "pipelines", ENTRY))
                 for name, path in module_files().items() if name.split(".")[0] == "ae_tf"}
    assert {name: found for name, found in offenders.items() if found} == {}


def test_ae_tf_sources_do_not_mention_beam():
    pattern = re.compile(r"^\s*(import|from)\s+apache_beam", re.MULTILINE)
    offenders = [str(p) for p in (ROOT / "ae_tf").rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


def test_pipelines_never_go_back_through_the_command_table():
    offenders = [name for name, path in module_files().items()
                 if name.startswith("pipelines") and ENTRY in {n.split(".")[0] for n in imported_names(name, path)}]
    assert offenders == []


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_scan_sees_lazy_and_relative_imports(tmp_path):
    path = tmp_path / "mod.py"
    path.write_text("import os\n\ndef f():\n    from . import sibling\n    import importlib\n"
                    "    importlib.import_module('pipelines.encode')\n\nif __name__ == '__main__':\n"
                    "    import apache_beam\n")
    names = imported_names("ae_tf.model.mod", path, {"ae_tf.model.sibling"})
    assert {"os", "ae_tf.model.sibling", "pipelines.encode"} <= names and "apache_beam" not in names


def test_no_module_over_400_lines():
    files = [*module_files().values(), *(ROOT / "benchmarks").glob("*.py"), *(ROOT / "tests").glob("*.py")]
    long = {str(p.relative_to(ROOT)): n for p in files if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert {k: v for k, v in long.items() if not k.startswith(("tests/", "benchmarks/"))} == {}


def test_every_package_folder_is_a_package():
    for package in PACKAGES:
        for folder in (ROOT / package).rglob("*"):
            if folder.is_dir() and folder.name != "__pycache__" and any(folder.glob("*.py")):
                assert (folder / "__init__.py").exists(), folder


def test_docs_name_only_files_that_exist():
    """Repository paths (a package path ending .py/.md/.sh/.json/.yaml, or an upper-case name ending .md)
    named in the README, docs/, the sources and the tests must exist; a path with an upper-case part is a
    placeholder."""
    path_ref = re.compile(r"\b(?:ae_tf|pipelines|benchmarks|tests|deploy|docs)/[\w./-]*\w\.(?:py|md|sh|json|yaml)\b"
                          r"|\b[A-Z][A-Z_]+\.md\b")
    texts = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), ROOT / f"{ENTRY}.py",
             *(p for d in (*PACKAGES, "tests", "benchmarks", "deploy") for p in (ROOT / d).rglob("*.py"))]
    missing = {}
    for text in texts:
        for ref in set(path_ref.findall(text.read_text())):
            placeholder = "/" in ref and any(part.isupper() for part in re.split(r"[/.]", ref))  # pipelines/NAME.py
            if not placeholder and not (ROOT / ref).exists() and not (ROOT / "docs" / ref).exists():
                missing.setdefault(ref, []).append(str(text.relative_to(ROOT)))
    assert missing == {}


def test_importing_all_of_ae_tf_loads_no_beam():
    names = [n for n in module_files() if n.split(".")[0] == "ae_tf"]
    code = (f"import sys, importlib; [importlib.import_module(n) for n in {names!r}];"
            "print([m for m in sys.modules if m.startswith(('apache_beam', 'pipelines', 'ae_tf_cli'))])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_the_command_table_loads_no_beam():
    code = ("import sys, ae_tf_cli; ae_tf_cli.build_parser();"
            "print(sorted(m for m in sys.modules if m.startswith(('apache_beam', 'pipelines', 'tensorflow'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip().splitlines()[-1] == "['pipelines', 'pipelines.commands']"
