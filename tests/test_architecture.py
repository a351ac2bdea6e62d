"""The shape ARCHITECTURE.md describes, checked from the package's own source: every module in
one layer, imports only into its own layer or lower ones, no import cycle, and rooms small
enough to read (modules at most 400 lines, classes at most 300)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "nowramp_auth"
MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 300

# Lowest first. A module belongs to the first layer one of whose prefixes it starts with.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "core",
        tuple(
            f"nowramp_auth.{m}"
            for m in (
                "_keys",
                "_limits",
                "_models",
                "_budgets",
                "_key_fields",
                "_errors",
                "_scopes",
                "_client_ip",
                "_decision",
                "_clock",
                "_durations",
                "_credentials",
                "_route_scopes",
                "_version",
            )
        ),
    ),
    ("stores", ("nowramp_auth.stores",)),
    (
        "authenticator",
        tuple(
            f"nowramp_auth.{m}"
            for m in (
                "_audit",
                "_request_counts",
                "_fast_path",
                "_metrics_source",
                "_outcomes",
                "_flow_driver",
                "_key_flows",
                "_session_flows",
                "_charging",
                "_authenticator",
                "_manager",
                "_budget_usage",
                "_context",
                "_accounts",
                "_http",
                "_guards",
            )
        ),
    ),
    (
        "adapters",
        tuple(
            f"nowramp_auth.{m}"
            for m in (
                "_asgi_io",
                "_openapi",
                "_fastapi_scheme",
                "starlette",
                "wsgi",
                "fastapi",
                "litestar",
                "quart",
                "django",
                "metrics",
                "testing",
            )
        ),
    ),
    (
        "apps",
        ("nowramp_auth.dashboard", "nowramp_auth.cli", "nowramp_auth.demo", "nowramp_auth.leaks"),
    ),
    ("package", ("nowramp_auth.__main__", "nowramp_auth")),
]


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def layer_of(module: str) -> int:
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS and ARCHITECTURE.md")


def imports_of(module: str) -> set[str]:
    """Every module of the package that ``module`` imports, at any depth of its code
    (functions, ``TYPE_CHECKING`` blocks included)."""
    path = MODULES[module]
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                if not is_package:
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join([*base, *([node.module] if node.module else [])])
            else:
                stem = node.module or ""
            names = [
                f"{stem}.{alias.name}" if f"{stem}.{alias.name}" in MODULES else stem
                for alias in node.names
            ]
        else:
            continue
        found |= {name for name in names if name in MODULES and name != module}
    return found


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down_the_layers(module: str):
    mine = layer_of(module)
    upward = {other for other in imports_of(module) if layer_of(other) > mine}
    assert not upward, f"{module} ({LAYERS[mine][0]}) imports a higher layer: {sorted(upward)}"


def test_no_import_cycle():
    graph = {module: imports_of(module) for module in MODULES}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for other in sorted(graph[module]):
            if state.get(other) == 1:
                cycle = [*path[path.index(other) :], other]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if other not in state:
                visit(other)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_the_checks_can_fail():
    # The checker sees what it must: a known edge, and the top layer above the bottom one.
    assert "nowramp_auth._keys" in imports_of("nowramp_auth._models")
    assert layer_of("nowramp_auth.cli") > layer_of("nowramp_auth._authenticator")
    assert layer_of("nowramp_auth.stores.redis") < layer_of("nowramp_auth._authenticator")


@pytest.mark.parametrize("module", sorted(MODULES))
def test_rooms_are_small(module: str):
    source = MODULES[module].read_text()
    assert len(source.splitlines()) <= MAX_MODULE_LINES, f"{module} is over {MAX_MODULE_LINES}"
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef):
            size = (node.end_lineno or node.lineno) - node.lineno + 1
            assert size <= MAX_CLASS_LINES, f"{module}.{node.name}: {size} lines"
