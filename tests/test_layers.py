"""The layering of `entropix_s1` (see ARCHITECTURE.md), checked statically on the import graph.

Every module is parsed (no module is imported) and every import statement counts, also those
inside functions and `if TYPE_CHECKING:` blocks: a lazy import is still a dependency. The rules:

* no cycle between modules;
* `core/` imports nothing of the package but `core/` and `errors` (third-party and stdlib are fine);
* a module imports only its own layer and the layers below:
  errors, results, jsonl < core < io < host < research, train, viz < testing, lm_eval < cli (and the
  package `__init__`, the public facade, which nothing inside the package imports). `lm_eval` (the
  lm-evaluation-harness backend) sits above research: it runs methods of research's grammar.

A failure names every offending import as `module:line -> imported module`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "entropix_s1"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

#: Layer rank of each top-level part of the package (a module may import equal or lower ranks).
LAYERS: dict[str, int] = {
    "errors": 0, "results": 0, "jsonl": 0,
    "core": 1,
    "io": 2,
    "host": 3,
    "research": 4, "train": 4, "viz": 4,
    "testing": 5, "lm_eval": 5,
    "cli": 6, "__init__": 6,
}
CORE_MAY_IMPORT = ("core", "errors")


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(root: Path = ROOT) -> dict[str, Path]:
    return {_module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The package module `name` refers to: itself, else its longest prefix that is a module."""
    parts = name.split(".")
    while parts and ".".join(parts) not in modules:
        parts.pop()
    return ".".join(parts) if parts else None


def _imported_names(module: str, path: Path, modules: dict[str, Path]) -> list[tuple[int, str, str]]:
    """(line, dotted name, the module that must exist for it) per package import in `path`."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: list[tuple[int, str, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, `level - 1` packages up
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from pkg import sub` imports the submodule when there is one, else a name of pkg
            out += [(node.lineno, f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base, base)
                    for a in node.names]
    return [r for r in out if r[1] == PACKAGE or r[1].startswith(PACKAGE + ".")]


def _imports(module: str, path: Path, modules: dict[str, Path]) -> list[tuple[int, str]]:
    """(line, package module) for every import of a package module in `path`, in file order."""
    out = {(line, target) for line, name, _ in _imported_names(module, path, modules)
           if (target := _resolve(name, modules)) is not None and target != module}
    return sorted(out)


def _graph(root: Path = ROOT) -> dict[str, list[tuple[int, str]]]:
    """module -> [(line, imported package module)] for every module below `root`."""
    modules = _modules(root)
    return {m: _imports(m, p, modules) for m, p in modules.items()}


def _part(module: str) -> str:
    """The top-level part a module belongs to: `core`, `io`, ..., or `__init__` for the package itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _cycles(graph: dict[str, list[tuple[int, str]]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for _, w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_walker_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    pkg = tmp_path / PACKAGE
    (pkg / "core").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "errors.py").write_text("")
    (pkg / "core" / "__init__.py").write_text("")
    (pkg / "core" / "a.py").write_text("from . import b\ndef f():\n    from entropix_s1.io import x\n")
    (pkg / "core" / "b.py").write_text("import numpy\nfrom ..errors import E\nfrom entropix_s1.core.a import f\n")
    graph = _graph(pkg)
    assert graph["entropix_s1.core.a"] == [(1, "entropix_s1.core.b"), (3, "entropix_s1")]  # io.x is not a module here
    assert graph["entropix_s1.core.b"] == [(2, "entropix_s1.errors"), (3, "entropix_s1.core.a")]
    assert _cycles(graph) == [["entropix_s1.core.a", "entropix_s1.core.b"]]


def test_every_imported_module_exists() -> None:
    modules = _modules()
    missing = [f"{m}:{line} -> {needed}" for m, p in modules.items()
               for line, _, needed in _imported_names(m, p, modules) if needed not in modules]
    assert not missing, "imports of package modules that do not exist:\n" + "\n".join(missing)


def test_every_part_has_a_layer() -> None:
    unknown = sorted({_part(m) for m in _modules()} - set(LAYERS))
    assert not unknown, f"parts of {PACKAGE} with no layer in LAYERS (add them): {unknown}"


def test_no_import_cycles() -> None:
    graph = _graph()
    cycles = _cycles(graph)
    lines = []
    for comp in cycles:
        members = set(comp)
        edges = [f"  {m}:{line} -> {t}" for m in comp for line, t in graph[m] if t in members]
        lines.append(f"cycle between {', '.join(comp)}:\n" + "\n".join(edges))
    assert not cycles, "\n".join(lines)


def test_core_imports_only_core_and_errors() -> None:
    bad = [f"{m}:{line} -> {t}" for m, deps in _graph().items() if _part(m) == "core"
           for line, t in deps if _part(t) not in CORE_MAY_IMPORT]
    assert not bad, "core/ may import only core/ and errors:\n" + "\n".join(bad)


def test_no_lower_layer_imports_a_higher_one() -> None:
    bad = []
    for m, deps in _graph().items():
        rank = LAYERS.get(_part(m))
        for line, t in deps:
            if rank is not None and LAYERS.get(_part(t), -1) > rank:
                bad.append(f"{m}:{line} -> {t} ({_part(m)} is below {_part(t)})")
    assert not bad, "imports of a higher layer:\n" + "\n".join(bad)


@pytest.mark.parametrize("module", ["entropix_s1.io.catalog", "entropix_s1.io.lora"])
def test_catalog_and_lora_do_not_import_each_other(module: str) -> None:
    other = {"entropix_s1.io.catalog": "entropix_s1.io.lora", "entropix_s1.io.lora": "entropix_s1.io.catalog"}[module]
    assert other not in {t for _, t in _graph()[module]}
