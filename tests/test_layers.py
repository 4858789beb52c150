"""The import graph of `service/`, read with `ast`: every import (module-level, inside functions, under
TYPE_CHECKING) points down the layers or across one, and no two packages import each other, even through
others. A new folder or top-level module must be given a layer here."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "service"

# Low to high. A unit is a package under service/ or a top-level module; it may import units of its own
# layer (without a cycle) and of the layers below, never above.
LAYERS: list[set[str]] = [
    {"domain", "errors", "settings", "logs", "scratch", "languages", "metrics"},
    {"workpool"},
    {"providers", "db", "storage", "audio"},
    {"engines"},
    {"stages"},
    {"queue", "supervisor", "retention", "retention_schedule", "integrations"},
    {"routes", "web"},
    {"wiring", "app", "server", "cli", "demo", "doctor", "client", "sample"},
]
LAYER_OF = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit_of(module: str) -> str | None:
    """`service.db.jobs` -> `db`; `service.app` -> `app`; the package `service` itself -> None."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "service" else None


def imported(path: Path) -> Iterator[str]:
    """Every module `path` imports from service/, absolute or relative; `from service import x` names `service.x`."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def unit_edges() -> dict[str, dict[str, set[str]]]:
    """unit -> unit it imports -> the modules that import it (for the failure message)."""
    edges: dict[str, dict[str, set[str]]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        source = unit_of(module_name(path))
        if source is None:
            continue
        edges.setdefault(source, {})
        for name in imported(path):
            target = unit_of(name)
            if target is not None and target != source:
                edges[source].setdefault(target, set()).add(module_name(path))
    return edges


def cycles(edges: dict[str, dict[str, set[str]]]) -> list[list[str]]:
    """The strongly connected components of more than one unit (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(unit: str) -> None:
        index[unit] = low[unit] = len(index)
        stack.append(unit)
        for target in edges.get(unit, {}):
            if target not in index:
                visit(target)
                low[unit] = min(low[unit], low[target])
            elif target in stack:
                low[unit] = min(low[unit], index[target])
        if low[unit] == index[unit]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == unit:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for unit in sorted(edges):
        if unit not in index:
            visit(unit)
    return found


def test_every_unit_has_a_layer() -> None:
    units = {unit_of(module_name(p)) for p in ROOT.rglob("*.py")} - {None}
    assert units - set(LAYER_OF) == set(), "give these a layer in LAYERS"
    assert set(LAYER_OF) - units == set(), "these no longer exist: drop them from LAYERS"


def test_no_import_points_up_a_layer() -> None:
    upward = [f"{module} (layer {LAYER_OF[source]}) imports {target} (layer {LAYER_OF[target]})"
              for source, targets in unit_edges().items() for target, modules in targets.items()
              for module in sorted(modules) if LAYER_OF[target] > LAYER_OF[source]]
    assert upward == []


def test_no_cycles_between_packages() -> None:
    assert cycles(unit_edges()) == []
