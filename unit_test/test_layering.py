"""The direction of dependencies (DESIGN section 1), checked on the source text.

The pure core (engine, workflows, protocol) does no I/O and reads no clock, so it
imports no broker, database or logging library and nothing of the shell. Worker
and client SDKs run in images without the database or the engine, so nothing
they import, directly or through other Segue modules, may pull those in.
Sources are parsed with ``ast``, never imported.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

IO_LIBRARIES = frozenset(
    {
        "aio_pika",
        "aiormq",
        "pamqp",
        "asyncpg",
        "sqlalchemy",
        "alembic",
        "psycopg2",
        "structlog",
        "logging",
        "prometheus_client",
        "asyncio",
        "socket",
        "subprocess",
        "http",
        "urllib",
        "time",
        "random",
        "secrets",
    }
)
SHELL_PACKAGES = frozenset(
    {
        "segue.store",
        "segue.service",
        "segue.broker",
        "segue.worker",
        "segue.client",
        "segue.cli",
        "segue.cli_views",
        "segue.settings",
        "segue.logs",
        "segue.demo",
        "segue.web",
        "segue.cli_listing",
    }
)
CLOCK_READS = frozenset({"now", "utcnow", "today", "uuid1", "uuid4"})

SDK_FORBIDDEN = frozenset(
    {
        "segue.store",
        "segue.service",
        "segue.engine",
        "sqlalchemy",
        "asyncpg",
        "alembic",
        "psycopg2",
    }
)


def module_of(path: Path) -> str:
    """``src/segue/engine/machine.py`` -> ``segue.engine.machine``."""
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def file_of(module: str) -> Path | None:
    """The source file of a Segue module, or None (not a module, e.g. a class)."""
    base = SRC.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_names(path: Path) -> set[str]:
    """Every module name ``path`` imports (``from a import b`` gives ``a`` and ``a.b``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module_of(path) if path.name == "__init__.py" else module_of(path).rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def is_within(name: str, roots: frozenset[str]) -> bool:
    return any(name == root or name.startswith(f"{root}.") for root in roots)


def sources(package: str) -> list[Path]:
    return sorted((SRC / package.replace(".", "/")).rglob("*.py"))


def reachable(package: str) -> Iterator[tuple[str, str]]:
    """(module, imported name) for every import of the package's modules and of every
    Segue module they load, directly or not (including the packages above each)."""
    queue = [module_of(path) for path in sources(package)]
    seen: set[str] = set()
    while queue:
        module = queue.pop()
        if module in seen:
            continue
        seen.add(module)
        path = file_of(module)
        if path is None:
            continue
        parts = module.split(".")
        queue.extend(".".join(parts[:n]) for n in range(1, len(parts)))
        for name in imported_names(path):
            yield module, name
            if name.split(".")[0] == "segue":
                queue.append(name)


def test_the_checker_sees_imports_of_every_form() -> None:
    names = imported_names(SRC / "segue" / "service" / "applier.py")
    assert {"structlog", "segue.engine.machine", "segue.engine.machine.decide"} <= names
    assert any(module == "segue.broker.publisher" for module, _ in reachable("segue.worker"))


@pytest.mark.parametrize("package", ["segue.engine", "segue.workflows", "segue.protocol"])
def test_the_pure_core_imports_no_io_library_and_nothing_of_the_shell(package: str) -> None:
    files = sources(package)
    assert files, f"no sources under {package}"
    violations = sorted(
        f"{module_of(path)} imports {name}"
        for path in files
        for name in imported_names(path)
        if is_within(name, IO_LIBRARIES) or is_within(name, SHELL_PACKAGES)
    )
    assert violations == []


@pytest.mark.parametrize("package", ["segue.engine", "segue.workflows", "segue.protocol"])
def test_the_pure_core_reads_no_clock_and_draws_no_random_ids(package: str) -> None:
    violations = []
    for path in sources(package):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name in CLOCK_READS:
                    violations.append(f"{module_of(path)}:{node.lineno} calls {name}()")
    assert violations == []


@pytest.mark.parametrize("package", ["segue.worker", "segue.client"])
def test_the_sdks_load_neither_the_database_nor_the_engine(package: str) -> None:
    violations = sorted(
        {
            f"{module} imports {name}"
            for module, name in reachable(package)
            if is_within(name, SDK_FORBIDDEN)
        }
    )
    assert violations == []
