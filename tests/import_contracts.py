"""The import rules of docs/architecture.md, checked from the source: `python -m tests.import_contracts`.

Every module of `quant/` and `hubtui/` is parsed with `ast`; every import counts, at module level or inside
a function (and the targets of a package's `_LAZY` map, which it imports on first use). A rule names the
modules it covers and the packages they must never import. Cycles are looked for among the imports that
run when a module is imported (module level, outside `if TYPE_CHECKING:`), the ones that can leave a
module half-initialised.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("quant", "hubtui")


@dataclass(frozen=True)
class Rule:
    """Modules under `covers` (minus `exempt`) never import anything under `forbidden`."""

    text: str
    covers: tuple[str, ...]
    forbidden: tuple[str, ...]
    exempt: tuple[str, ...] = ()


# One rule per row of the import-rules table in docs/architecture.md.
RULES = (
    Rule(
        "quant never imports textual, rich, hubtui or llama_cpp",
        ("quant",),
        ("textual", "rich", "hubtui", "llama_cpp"),
    ),
    Rule(
        "hubtui.hub, hubtui.runner and hubtui.demo never import textual, hubtui.app or hubtui.commands",
        ("hubtui.hub", "hubtui.runner", "hubtui.demo"),
        ("textual", "hubtui.app", "hubtui.commands", "hubtui.cli"),
    ),
    Rule("hubtui.app never imports hubtui.commands", ("hubtui.app",), ("hubtui.commands", "hubtui.cli")),
    Rule(
        "only hubtui.commands and hubtui.cli import hubtui.commands",
        PACKAGES,
        ("hubtui.commands",),
        exempt=("hubtui.commands", "hubtui.cli", "hubtui.__main__"),
    ),
)


@dataclass(frozen=True)
class Import:
    source: str
    target: str
    path: Path
    line: int
    at_import: bool  # runs when the source module is imported


def _under(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def modules(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under the packages."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, at_import: bool) -> Iterable[tuple[ast.AST, bool]]:
    """Every node with whether it runs at import (not in a function, not under `if TYPE_CHECKING:`)."""
    for child in ast.iter_child_nodes(node):
        inside = at_import and not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for sub in child.body:
                yield sub, False
                yield from _walk(sub, False)
            for sub in child.orelse:
                yield sub, at_import
                yield from _walk(sub, at_import)
            continue
        yield child, inside
        yield from _walk(child, inside)


def imports(name: str, path: Path, known: dict[str, Path]) -> list[Import]:
    """What the module `name` imports, with `from P import m` resolved to the submodule P.m when it is one."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node, at_import in _walk(tree, True):
        if isinstance(node, ast.Import):
            found += [Import(name, a.name, path, node.lineno, at_import) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = parts[: len(parts) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                target = sub if sub in known else base
                found.append(Import(name, target, path, node.lineno, at_import))
        elif (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "_LAZY" for t in node.targets)
            and isinstance(node.value, ast.Dict)
        ):
            found += [
                Import(name, v.value, path, node.lineno, False)
                for v in node.value.values
                if isinstance(v, ast.Constant) and isinstance(v.value, str)
            ]
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def check(root: Path = ROOT, packages: Iterable[str] = PACKAGES, rules: Iterable[Rule] = RULES) -> list[str]:
    """Every broken rule (sorted) and then the first import cycle found, one line each; empty when kept."""
    known = modules(root, packages)
    problems = []
    graph: dict[str, set[str]] = {m: set() for m in known}
    for name, path in known.items():
        for imp in imports(name, path, known):
            where = f"{imp.path.relative_to(root)}:{imp.line}"
            for rule in rules:
                if (
                    _under(name, rule.covers)
                    and not _under(name, rule.exempt)
                    and _under(imp.target, rule.forbidden)
                ):
                    problems.append(f"{where}: {name} imports {imp.target} ({rule.text})")
            if imp.at_import and imp.target in known and imp.target != name:
                graph[name].add(imp.target)
    problems.sort()
    cycle = find_cycle(graph)
    if cycle:
        problems.append("import cycle at import time: " + " -> ".join(cycle))
    return problems


def main() -> int:
    problems = check()
    for line in problems:
        print(line)
    if not problems:
        n = len(modules(ROOT, PACKAGES))
        print(f"import contracts kept: {len(RULES)} rules, no import cycles, {n} modules")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
