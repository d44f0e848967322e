"""The import graph keeps its shape: no circles, the product never imports the research bench (bookqa.lab),
and the summarizer never imports bookqa. Read with ast: nothing is imported or run, and lazy imports inside
functions count like the others."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bookqa", "summarizer", "ui")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


def _edges(modules: dict[str, Path]) -> dict[str, dict[str, int]]:
    """module -> {imported module: line of the first import}; only modules of this repository."""
    graph: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        found: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package[:len(package) - node.level + 1] if node.level else []
                mod = ".".join(base + ([node.module] if node.module else []))
                targets = [f"{mod}.{a.name}" for a in node.names] + [mod]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                # a package's own children and parents are not a dependency of one layer on another
                if target and target != name and not name.startswith(target + ".") \
                        and not target.startswith(name + "."):
                    found.setdefault(target, node.lineno)
        graph[name] = found
    return graph


def _where(modules, graph, src, dst) -> str:
    return f"{modules[src].relative_to(ROOT)}:{graph[src][dst]} imports {dst}"


def _is_lab(name: str) -> bool:
    return name == "bookqa.lab" or name.startswith("bookqa.lab.")


def _is_product(name: str) -> bool:
    return name.startswith("bookqa") and not _is_lab(name) and not name.startswith("bookqa.cli")


def test_the_product_never_imports_the_research_bench():
    modules = _modules()
    graph = _edges(modules)
    bad = [_where(modules, graph, m, t) for m in graph if _is_product(m) for t in graph[m] if _is_lab(t)]
    assert not bad, "the product imports the research bench: " + "; ".join(bad)


def test_the_summarizer_knows_nothing_of_bookqa():
    modules = _modules()
    graph = _edges(modules)
    bad = [_where(modules, graph, m, t) for m in graph if m.startswith("summarizer")
           for t in graph[m] if t.startswith("bookqa")]
    assert not bad, "summarizer imports bookqa: " + "; ".join(bad)


def test_no_import_circles():
    modules = _modules()
    graph = _edges(modules)
    circles = []
    state: dict[str, int] = {}  # 1 on the current path, 2 finished
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for t in graph[m]:
            if state.get(t) == 1:
                loop = path[path.index(t):] + [t]
                circles.append(" -> ".join(_where(modules, graph, a, b) for a, b in zip(loop, loop[1:])))
            elif t not in state:
                visit(t)
        path.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not circles, "import circles: " + " | ".join(circles)


def test_the_checks_name_the_offending_import(tmp_path, monkeypatch):
    """A planted product -> lab import and a planted circle are reported with file, line and target."""
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "bookqa" / "lab").mkdir()
    (tmp_path / "bookqa" / "lab" / "__init__.py").write_text("")
    (tmp_path / "bookqa" / "lab" / "bench.py").write_text("")
    (tmp_path / "bookqa" / "a.py").write_text("import os\n\ndef f():\n    from .lab import bench\n    from . import b\n")
    (tmp_path / "bookqa" / "b.py").write_text("from .a import f\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    import pytest

    with pytest.raises(AssertionError, match=r"bookqa/a\.py:4 imports bookqa\.lab\.bench"):
        test_the_product_never_imports_the_research_bench()
    with pytest.raises(AssertionError, match=r"bookqa/a\.py:5 imports bookqa\.b -> bookqa/b\.py:1 imports bookqa\.a"):
        test_no_import_circles()
