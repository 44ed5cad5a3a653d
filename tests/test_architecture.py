"""Self-test of the package picture (docs/architecture.md): imports point one way, and no module imports itself back.

Every import of the kit counts, those inside functions too: a late import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KIT = ROOT / "contract_tests"

# The small bottom modules every role may use: the version, errors and exit codes, where the data files live.
BASE = {"contract_tests", "contract_tests.errors", "contract_tests.datafiles"}
# Each role (a package of contract_tests, or the CLI) and the roles it may import besides itself and BASE.
# Read top to bottom: the CLI, the outputs, the clause checks, the judging core, the report model, the emulated
# Elixir side, the worker driver, and at the bottom the contract (clauses, releases) and the protocol. Of the
# outputs, bench sits above e2e: `bench --e2e` runs in the live E2E tier's image and container.
ALLOWED: dict[str, set[str]] = {
    "cli": {"bench", "e2e", "clauses", "judging", "report", "elixir", "driver", "contract", "protocol"},
    "bench": {"e2e", "judging", "report", "elixir", "driver", "contract", "protocol"},
    "e2e": {"judging", "report", "elixir", "driver", "contract", "protocol"},
    "clauses": {"judging", "report", "elixir", "driver", "contract", "protocol"},
    "judging": {"report", "elixir", "driver", "contract", "protocol"},
    "report": {"contract"},
    "elixir": {"driver", "contract", "protocol"},
    "driver": {"contract", "protocol"},
    "contract": set(),
    "protocol": set(),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def kit_modules() -> dict[str, Path]:
    """Every module of the kit but the generated gRPC stubs."""
    return {module_name(p): p for p in sorted(KIT.rglob("*.py")) if "proto" not in p.relative_to(KIT).parts}


def role(module: str) -> str | None:
    """The role a module plays, or None for a base module."""
    if module in BASE:
        return None
    if module == "contract_tests.cli":
        return "cli"
    return module.split(".")[1]


def imports(path: Path, known: set[str]) -> set[str]:
    """The kit modules a file imports; `from package import module` names the module, not the package."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "contract_tests"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "contract_tests":
            assert node.level == 0, f"{path}: relative import (the kit imports absolutely)"
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in known else node.module)
    return found


def dependency_graph() -> dict[str, set[str]]:
    modules = kit_modules()
    return {name: imports(path, set(modules)) - {name} for name, path in modules.items()}


def test_every_module_has_a_role() -> None:
    """Ensure a new module lands in a package of the picture (or is added to BASE on purpose), not beside them."""
    roles = {role(name) for name in kit_modules()} - {None}
    assert roles <= set(ALLOWED), roles - set(ALLOWED)


def test_imports_point_down() -> None:
    """Ensure no role imports one above it or beside it (the driver never knows the judge, the contract no one)."""
    forbidden = []
    for name, targets in dependency_graph().items():
        mine = role(name)
        for target in sorted(targets):
            theirs = role(target)
            if theirs is not None and mine is not None and theirs != mine and theirs not in ALLOWED[mine]:
                forbidden.append(f"{name} ({mine}) imports {target} ({theirs})")
            if mine is None and theirs is not None:
                forbidden.append(f"{name} (base) imports {target} ({theirs})")
    assert not forbidden, "\n".join(forbidden)


def test_no_import_cycles() -> None:
    """Ensure no module reaches itself through its imports, however long the way round."""
    graph = dependency_graph()
    cycles: list[list[str]] = []
    state: dict[str, str] = {}  # "open" while on the path being walked, "done" after

    def walk(name: str, path: list[str]) -> None:
        state[name] = "open"
        for target in sorted(graph.get(name, ())):
            if state.get(target) == "open":
                cycles.append([*path[path.index(target):], target])
            elif target not in state:
                walk(target, [*path, target])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            walk(name, [name])
    assert not cycles, "\n".join(" -> ".join(cycle) for cycle in cycles)
