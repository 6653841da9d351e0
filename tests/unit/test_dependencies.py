"""The agent's runtime dependencies are exactly what it imports; developer tools' needs are extras.

The imports are read from the source (ast), so an import added without its distribution in
pyproject.toml, or a dependency the agent no longer uses, fails here.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "log_capturer"
PYPROJECT = PACKAGE.parents[1] / "pyproject.toml"
#: The developer tools (local Kafka, certificates, load generator, bench): not the agent.
DEVTOOLS = PACKAGE / "devtools"


def normalized(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(specs: list[str]) -> set[str]:
    names = set()
    for spec in specs:
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
        assert m is not None, spec
        names.add(normalized(m.group(1)))
    return names


def third_party_imports(files: list[Path], root: Path = PACKAGE) -> dict[str, set[Path]]:
    """The modules imported (absolute imports) by ``files`` that are neither the standard library
    nor the agent itself, with the files that import them."""
    found: dict[str, set[Path]] = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.partition(".")[0]
                if top not in sys.stdlib_module_names and top != "log_capturer":
                    found.setdefault(name, set()).add(path.relative_to(root))
    return found


def distributions(imports: dict[str, set[Path]]) -> dict[str, set[Path]]:
    """The installed distribution of each imported name (``yaml`` -> ``pyyaml``)."""
    of = importlib.metadata.packages_distributions()
    out: dict[str, set[Path]] = {}
    for name, files in imports.items():
        dists = of.get(name.partition(".")[0])
        assert dists, f"{name} (imported by {sorted(map(str, files))}) is not an installed distribution"
        for dist in shipping(name, dists):
            out.setdefault(normalized(dist), set()).update(files)
    return out


def shipping(module: str, dists: list[str]) -> list[str]:
    """The distributions among ``dists`` that ship ``module``: a namespace package (``google``,
    ``opentelemetry``) is shared by several, and only the one with the module is needed."""
    if len(dists) == 1:
        return dists
    rel = module.replace(".", "/")
    found = [
        d
        for d in dists
        if any(
            f.as_posix() == rel + ".py" or f.as_posix().startswith(rel + "/")
            for f in importlib.metadata.distribution(d).files or []
        )
    ]
    return found or dists


class Project:
    """The dependency lists of pyproject.toml's [project] table."""

    def __init__(self) -> None:
        with PYPROJECT.open("rb") as f:
            table = tomllib.load(f)["project"]
        self.runtime = requirement_names(table["dependencies"])
        self.extras = {
            name: requirement_names(specs) for name, specs in table["optional-dependencies"].items()
        }


@pytest.fixture(scope="module")
def project() -> Project:
    return Project()


def test_runtime_dependencies_are_exactly_what_the_agent_imports(project: Project) -> None:
    agent = [p for p in PACKAGE.rglob("*.py") if DEVTOOLS not in p.parents]
    imported = distributions(third_party_imports(agent))
    declared = project.runtime
    missing = {d: sorted(map(str, f)) for d, f in imported.items() if d not in declared}
    assert not missing, f"imported by the agent but not in [project] dependencies: {missing}"
    unused = declared - imported.keys()
    assert not unused, f"in [project] dependencies but not imported outside devtools/: {sorted(unused)}"


def test_devtools_imports_are_runtime_dependencies_or_extras(project: Project) -> None:
    covered = set(project.runtime)
    for names in project.extras.values():
        covered |= names
    imported = distributions(third_party_imports(sorted(DEVTOOLS.rglob("*.py"))))
    missing = {d: sorted(map(str, f)) for d, f in imported.items() if d not in covered}
    assert not missing, f"imported by devtools/ but in no dependency list of pyproject.toml: {missing}"


def test_certificates_are_an_extra_not_a_runtime_dependency(project: Project) -> None:
    assert "cryptography" in project.extras["devtools"]
    assert "cryptography" not in project.runtime


def test_the_scan_finds_third_party_imports_and_skips_the_rest(tmp_path: Path) -> None:
    mod = tmp_path / "probe.py"
    mod.write_text(
        "import os, yaml\nfrom orjson import dumps\nfrom . import record\nimport log_capturer.cli\n"
    )
    found = third_party_imports([mod], tmp_path)
    assert found == {"yaml": {Path("probe.py")}, "orjson": {Path("probe.py")}}
    assert set(distributions(found)) == {"pyyaml", "orjson"}
    # A namespace package shared by several distributions: the one that ships the module.
    assert set(distributions({"google.protobuf.message": {Path("probe.py")}})) == {"protobuf"}
