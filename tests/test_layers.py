"""The package's layering (docs/architecture.md): imports point down, and no import circle.

Every ``import`` statement counts, also those inside functions: an import deferred to call
time to dodge a circle is still a circle.
"""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "fasterseg"

#: docs/architecture.md's layers: a module may import from its own layer and those below.
LAYERS = [
    {"errors", "io", "registry", "arch", "genotype", "config"},
    {"distributed", "progress", "data", "losses", "metrics", "nn"},
    {"space", "decode", "models"},
    {"latency", "profile"},
    {"engine", "export", "reference"},
    {"pipeline", "report", "study", "cli", "__main__", "__init__"},
]


def _module(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _imports() -> dict[str, set[str]]:
    """fasterseg module -> the fasterseg modules it imports (any import statement)."""
    modules = {_module(p): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    mod = ".".join([*base, node.module] if node.module else base)
                else:
                    mod = node.module or ""
                # ``from pkg import mod`` names the module, ``from mod import name`` the module
                candidates = [
                    f"{mod}.{a.name}" if f"{mod}.{a.name}" in modules else mod for a in node.names
                ]
            elif isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            else:
                continue
            for c in candidates:
                # the deepest fasterseg module the import names
                while c and c not in modules:
                    c = c.rpartition(".")[0]
                if c and c != name and c.startswith("fasterseg"):
                    targets.add(c)
        graph[name] = targets
    return graph


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"{module} is in no layer of docs/architecture.md")


def test_every_import_points_down_or_sideways():
    graph = _imports()
    up = sorted(
        f"{a} (layer {_layer(a)}) imports {b} (layer {_layer(b)})"
        for a, targets in graph.items()
        for b in targets
        if _layer(b) > _layer(a) and not (a == "fasterseg" or a == "fasterseg.__main__")
    )
    assert up == []


def test_no_import_circle():
    graph = _imports()
    state: dict[str, int] = {}
    circles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                circles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert circles == []


def test_the_checker_sees_a_deferred_import():
    graph = _imports()
    # cli imports every command's library function inside its handler
    assert "fasterseg.engine.search" in graph["fasterseg.cli"]


def test_training_never_imports_the_search_space():
    # design rule: search hands training a Genotype file, nothing else
    graph = _imports()
    seen, todo = set(), ["fasterseg.engine.train"]
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph.get(node, ()))
    assert not {m for m in seen if m.startswith("fasterseg.space")}
