"""Dependency rules of issue 11 that import-linter cannot express.

import-linter sees an external package only at its top level (``aiohttp``, ``sqlalchemy``), so
it cannot say "``aiohttp.web`` only in the HTTP modules" while the outbound client
(``aiohttp.ClientSession``) may live in a slice, nor "SQLAlchemy only in ``db/`` and the
stores". This test parses every module of the production packages (the ``root_packages`` of
``[tool.importlinter]``, so a new package is covered as soon as the contracts know it) and
checks three rules:

* the aiohttp server API (``aiohttp.web``, ``aiohttp.web_*``) only in ``httpkit/``, the
  composition root ``hotline/``, and the slices' HTTP adapters, known by their names;
* SQLAlchemy only in ``db/`` and the stores (by name, or listed below with the reason);
* no production module imports the test suite (``tests``, ``conftest``).

Each allowance says why. Run ``python -m tests.test_architecture`` (or pytest with ``-s``) to
print which modules use which allowance.
"""

from __future__ import annotations

import ast
import fnmatch
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def production_packages(repo: Path = REPO) -> tuple[str, ...]:
    """The packages import-linter checks: the production code."""
    with open(repo / "pyproject.toml", "rb") as f:
        packages: list[str] = tomllib.load(f)["tool"]["importlinter"]["root_packages"]
    return tuple(packages)


def iter_modules(root: Path, packages: tuple[str, ...]) -> Iterator[tuple[str, Path]]:
    """(dotted name, path) of every ``.py`` file under the packages."""
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield ".".join(parts), path


def imported_names(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every dotted name the module imports or reaches through an imported module.

    ``from a import b`` gives ``a`` and ``a.b`` (``b`` may be a submodule); ``import a`` then
    ``a.b.c`` gives ``a.b`` and ``a.b.c`` as well, since ``import aiohttp`` followed by
    ``aiohttp.web.Response`` uses the server API as surely as ``from aiohttp import web``;
    ``importlib.import_module("a.b")`` with a literal counts too; ``a.b`` counts as ``a`` as
    well (importing it imports its parent). Imports inside functions and
    ``if TYPE_CHECKING:`` count (an annotation still ties the module to the library).
    """
    tree = ast.parse(source)
    names: set[str] = set()
    bound: dict[str, str] = {}  # local name -> module it is bound to by `import x[.y] [as z]`
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                names.add(alias.name)
                if alias.asname:
                    bound[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    bound[top] = top
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and _dotted(node.func) in {"importlib.import_module", "import_module",
                                          "__import__"}):
            names.add(node.args[0].value)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain = _dotted(node)
            if chain is not None:
                head, _, rest = chain.partition(".")
                if head in bound:
                    parts = [*bound[head].split("."), *rest.split(".")]
                    names.add(".".join(parts))
    # Importing a.b.c imports a and a.b first.
    return {".".join(parts[:i]) for name in names if name
            for parts in [name.split(".")] for i in range(1, len(parts) + 1)}


def _dotted(node: ast.expr) -> str | None:
    """``a.b.c`` for a chain of attributes on a name, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return None if inner is None else f"{inner}.{node.attr}"
    return None


@dataclass(frozen=True)
class Allowance:
    """Modules a rule lets import what it forbids, and why.

    ``modules``: fnmatch patterns on the dotted module name. ``only``: when set, the imported
    names this allowance covers (the rest stays forbidden). ``explicit``: named modules rather
    than a naming convention; such an entry must still match an existing module that uses it,
    so the list cannot go stale.
    """

    modules: tuple[str, ...]
    reason: str
    only: frozenset[str] | None = None
    explicit: bool = False

    def covers(self, module: str, name: str) -> bool:
        return (any(fnmatch.fnmatchcase(module, p) for p in self.modules)
                and (self.only is None or name in self.only))


@dataclass(frozen=True)
class Rule:
    """Imported names a rule restricts, and the allowances."""

    title: str
    forbids: Callable[[str], bool]
    allowances: tuple[Allowance, ...]


def _under(prefix: str) -> Callable[[str], bool]:
    return lambda name: name == prefix or name.startswith(prefix + ".")


WEB = Rule(
    title="aiohttp.web only in httpkit/, hotline/ and the slices' HTTP modules",
    forbids=lambda name: _under("aiohttp.web")(name) or name.startswith("aiohttp.web_"),
    allowances=(
        Allowance(("httpkit", "httpkit.*"), "the one HTTP toolkit (app keys, errors, "
                  "responses, bodies, auth, the server)"),
        Allowance(("hotline", "hotline.*"), "the composition root builds the web.Application "
                  "and serves the ops endpoints (healthz, readyz, metrics, reload, OpenAPI)"),
        Allowance(("*.http", "*.http_*", "*_http", "*.web", "*.web_*", "*_api"),
                  "a slice's HTTP adapter, named as one: <slice>/http.py, http_*.py, *_http.py, "
                  "web.py, web_*.py, *_api.py"),
    ),
)

SQL_SURFACE = frozenset({"sqlalchemy", "sqlalchemy.exc", "sqlalchemy.exc.SQLAlchemyError",
                         "sqlalchemy.ext", "sqlalchemy.ext.asyncio",
                         "sqlalchemy.ext.asyncio.AsyncEngine"})
"""What wiring code may name of SQLAlchemy: the engine it passes on and the error it catches;
no query, table or session."""

SQL = Rule(
    title="SQLAlchemy only in db/ and the stores",
    forbids=_under("sqlalchemy"),
    allowances=(
        Allowance(("db", "db.*"), "the engine, column types, tables and migrations"),
        Allowance(("*store", "*store_*", "*_store*", "*.store"),
                  "a slice's store, named as one: store.py, *_store.py"),
        Allowance(("router.outbox",), "the ticket_outbox store in fact (claims due rows "
                  "FOR UPDATE SKIP LOCKED, records outcomes) beside its relay loop; a name "
                  "such as outbox_store.py would say so", explicit=True),
        Allowance(("asr.sink",), "holds CallTranscripts, the call_transcripts store, beside "
                  "the Redis publisher; to split into a store module later", explicit=True),
        Allowance(("hotline", "hotline.*"), "the composition root opens the engine, hands "
                  "it to the stores and reports a database that does not answer at start-up",
                  only=SQL_SURFACE),
        Allowance(("telephony.writer",), "the call store's background writer retries on "
                  "SQLAlchemyError; to fix later: the store could raise its own error",
                  only=SQL_SURFACE, explicit=True),
    ),
)

TESTS = Rule(
    title="production code never imports the test suite",
    forbids=lambda name: _under("tests")(name) or _under("conftest")(name),
    allowances=(),
)
# The PBX simulator (telephony.simulator) is covered by import-linter's forbidden contract.

RULES = (WEB, SQL, TESTS)


@dataclass(frozen=True)
class Finding:
    """One forbidden name imported by one module, and the allowance covering it if any."""

    rule: Rule
    module: str
    name: str
    allowance: Allowance | None


def scan(root: Path, packages: tuple[str, ...],
         rules: tuple[Rule, ...] = RULES) -> list[Finding]:
    """Every import of a restricted name in the packages, allowed or not."""
    findings = []
    for module, path in iter_modules(root, packages):
        names = imported_names(path.read_text(encoding="utf-8"), module,
                               is_package=path.name == "__init__.py")
        for rule in rules:
            for name in sorted(filter(rule.forbids, names)):
                allowance = next((a for a in rule.allowances if a.covers(module, name)), None)
                findings.append(Finding(rule, module, name, allowance))
    return findings


def report(findings: list[Finding]) -> str:
    """The allow-list in use, per rule and allowance, then the violations."""
    lines = []
    for rule in RULES:
        lines.append(f"== {rule.title}")
        for allowance in rule.allowances:
            used = sorted({f.module for f in findings if f.allowance is allowance})
            lines.append(f"  allowed {', '.join(allowance.modules)}: {allowance.reason}")
            lines.extend(f"    {m}" for m in used)
        bad = [f for f in findings if f.rule is rule and f.allowance is None]
        lines.extend(f"  VIOLATION {f.module} imports {f.name}" for f in bad)
    return "\n".join(lines)


def test_production_imports_follow_the_rules() -> None:
    findings = scan(REPO, production_packages())
    print(report(findings))
    bad: dict[tuple[str, str], list[str]] = {}
    for f in findings:
        if f.allowance is None:
            bad.setdefault((f.rule.title, f.module), []).append(f.name)
    violations = [f"{module} imports {', '.join(names)} ({title})"
                  for (title, module), names in bad.items()]
    assert violations == [], "\n".join(violations)


def test_explicit_allowances_are_in_use() -> None:
    """A module allowed by name that no longer needs it (moved, renamed, fixed) leaves the
    list, so an exception never outlives its reason."""
    findings = scan(REPO, production_packages())
    stale = [(rule.title, a.modules) for rule in RULES for a in rule.allowances
             if a.explicit and not any(f.allowance is a for f in findings)]
    assert stale == []


def test_the_scan_covers_the_packages_it_names() -> None:
    modules = dict(iter_modules(REPO, production_packages()))
    assert {"httpkit.server", "db.engine", "hotline.app", "telephony.simulator.server"} <= set(
        modules)


# The checker itself, on small packages written for the purpose: each form of import is seen.
FORMS = {
    "from aiohttp import web": "aiohttp.web",
    "import aiohttp.web": "aiohttp.web",
    "import aiohttp.web_request as wr": "aiohttp.web_request",
    "from aiohttp.web_protocol import RequestHandler": "aiohttp.web_protocol",
    "import aiohttp\nx = aiohttp.web.Response": "aiohttp.web",
    "import aiohttp as a\nx = a.web_response.Response": "aiohttp.web_response",
    "def f() -> None:\n    from sqlalchemy import select": "sqlalchemy",
    "import importlib\nm = importlib.import_module('sqlalchemy.orm')": "sqlalchemy.orm",
    "from tests.support import x": "tests",
    "import conftest": "conftest",
}


@pytest.mark.parametrize("source", FORMS, ids=list(FORMS.values()))
def test_a_new_violation_fails(tmp_path: Path, source: str) -> None:
    (tmp_path / "slice").mkdir()
    (tmp_path / "slice" / "__init__.py").write_text("")
    (tmp_path / "slice" / "logic.py").write_text(source + "\n")
    findings = scan(tmp_path, ("slice",))
    assert [(f.module, f.allowance) for f in findings if f.name == FORMS[source]] == [
        ("slice.logic", None)]


def test_the_client_and_the_allowed_modules_pass(tmp_path: Path) -> None:
    files = {
        "slice/__init__.py": "",
        "slice/outbound.py": "import aiohttp\ns = aiohttp.ClientSession\nt = aiohttp.ClientTimeout",
        "slice/http.py": "from aiohttp import web",
        "slice/ticket_http.py": "from aiohttp import web",
        "slice/ticket_store.py": "from sqlalchemy import select",
        "hotline/__init__.py": "",
        "hotline/app.py": "from sqlalchemy.exc import SQLAlchemyError",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text + "\n")
    findings = scan(tmp_path, ("slice", "hotline"))
    assert sorted({(f.module, f.allowance is not None) for f in findings}) == [
        ("hotline.app", True), ("slice.http", True), ("slice.ticket_http", True),
        ("slice.ticket_store", True)]


def test_the_composition_root_may_not_query(tmp_path: Path) -> None:
    (tmp_path / "hotline").mkdir()
    (tmp_path / "hotline" / "__init__.py").write_text("")
    (tmp_path / "hotline" / "app.py").write_text("from sqlalchemy import select\n")
    violations = {f.name for f in scan(tmp_path, ("hotline",)) if f.allowance is None}
    assert violations == {"sqlalchemy.select"}


def test_relative_imports_resolve(tmp_path: Path) -> None:
    assert "pkg.sub.x" in imported_names("from .sub import x", "pkg.mod")
    assert "pkg.x" in imported_names("from . import x", "pkg", is_package=True)
    assert "a.y" in imported_names("from ..y import z", "a.b.c")


if __name__ == "__main__":
    print(report(scan(REPO, production_packages())))
