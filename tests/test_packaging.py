"""Set-up contract: pins agree, the README gives the two commands, CI runs the test command."""

from __future__ import annotations

import re
import tomllib

from musicrecall.config import REPO_ROOT


def _pins_pyproject() -> dict[str, str]:
    meta = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    reqs = meta["dependencies"] + [r for extra in meta["optional-dependencies"].values() for r in extra]
    pins = {}
    for req in reqs:
        name, sep, version = req.partition("==")
        assert sep, f"pyproject.toml: {req!r} is not pinned with =="
        pins[name.lower()] = version
    return pins


def _pins_environment() -> dict[str, str]:
    text = (REPO_ROOT / "environment.yml").read_text()
    return {m.group(1).lower(): m.group(2) for m in re.finditer(r"^\s+-\s+([A-Za-z0-9_.-]+)==(\S+)\s*$", text, re.M)}


def test_environment_yml_and_pyproject_pin_the_same_versions():
    assert _pins_environment() == _pins_pyproject()


def test_torch_stays_on_the_local_cpu_wheel():
    assert _pins_pyproject()["torch"] == "2.13.0"


def test_readme_and_ci_give_the_two_commands():
    readme = (REPO_ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    assert "make test" in (REPO_ROOT / ".ci" / "run").read_text()


def test_notebooks_are_committed_without_outputs_and_have_parameters():
    import nbformat

    paths = sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert paths, "no notebooks found"
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), f"{path.name} has outputs"
        assert any("parameters" in c.metadata.get("tags", []) for c in code), f"{path.name}: no parameters cell"
        # ~30 lines a cell; the parameters cell is one assignment per line by papermill's design (every parameter
        # a user can override must be its own line of that one cell), so it may hold a few more
        longest = {id(c): 40 if "parameters" in c.metadata.get("tags", []) else 30 for c in code}
        assert all(len(c.source.splitlines()) <= longest[id(c)] for c in code), f"{path.name}: a cell is too long"
        assert "record_metrics" in code[-1].source, f"{path.name}: last cell must record metrics"


def test_papermill_reads_every_parameter_of_every_notebook():
    """``papermill --help-notebook`` (and anything that inspects a notebook) lists every assignment of the
    parameters cell: a comment papermill cannot parse silently drops that parameter from its listing."""
    import ast

    import nbformat
    import papermill

    for path in sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        cell = next(c for c in nbformat.read(path, as_version=4).cells if "parameters" in c.metadata.get("tags", []))
        names = [t.id for node in ast.parse(cell.source).body if isinstance(node, ast.Assign | ast.AnnAssign)
                 for t in (node.targets if isinstance(node, ast.Assign) else [node.target]) if isinstance(t, ast.Name)]
        assert sorted(papermill.inspect_notebook(str(path))) == sorted(names), path.name


def test_code_and_notebooks_are_ruff_clean():
    """``make lint``'s check, notebooks included (ruff reads their code cells), so CI keeps it clean."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format", "concise", "lib", "tests", "bench",
                          "notebooks"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
