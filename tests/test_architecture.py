"""The layers written down in pyproject.toml ([tool.importlinter]) hold, and each rule catches its break."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

PACKAGES = ("pipeline", "webhook", "workers", "training")


def lint_imports(root: Path, *contracts: str) -> subprocess.CompletedProcess:
    """Run import-linter (all contracts, or those with the given ids) on the tree at `root`."""
    exe = Path(sys.executable).with_name("lint-imports")
    only = [arg for c in contracts for arg in ("--contract", c)]
    return subprocess.run([str(exe), "--config", str(root / "pyproject.toml"), "--no-cache", *only], cwd=root,
                          env={"PATH": str(exe.parent), "PYTHONPATH": str(root)}, capture_output=True, text=True,
                          timeout=300)


def test_the_import_contracts_are_kept():
    # When import-linter checks the project / Then every contract is kept, none broken
    out = lint_imports(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert " 0 broken" in out.stdout and "BROKEN" not in out.stdout


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory) -> Path:
    """A copy of the project's Python sources and pyproject.toml, to break on purpose."""
    root = tmp_path_factory.mktemp("tree")
    shutil.copy(ROOT / "pyproject.toml", root)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__", "*.zip",
                                                                                    "templates", "*.mako"))
    return root


@pytest.mark.parametrize("module, line, contract", [
    ("pipeline/images/ingest.py", "import workers.tasks", "layers"),  # the core imports a service
    ("pipeline/store/jobs.py", "from pipeline.tools import cli", "layers"),  # the core imports the tooling
    ("pipeline/images/preprocess.py", "from pipeline.store import jobs", "layers"),  # a core layer imports upwards
    ("webhook/api.py", "from workers import runtime", "services-apart"),
    ("workers/tasks.py", "import training.train", "training-from-tools-only"),
    ("webhook/health.py", "import torch", "no-ml-runtime-in-web"),
    ("pipeline/store/reports.py", "import onnxruntime", "no-ml-runtime-in-web"),
])
def test_each_rule_catches_its_break(tree_copy, module, line, contract):
    # Given one import that breaks a rule, added to a copy of the tree
    path = tree_copy / module
    original = path.read_text()
    path.write_text(original + f"\n{line}  # a break, on purpose\n")
    try:
        # When import-linter checks the copy
        out = lint_imports(tree_copy)
    finally:
        path.write_text(original)
    # Then that rule is broken, and the report names the offending import
    assert out.returncode != 0 and "BROKEN" in out.stdout, out.stdout
    assert module.removesuffix(".py").replace("/", ".") in out.stdout


def test_no_code_names_a_model_outside_its_manifest():
    # Several models, one interface: in the serving code only the default setting and the migration of old rows
    # name a model; every other difference between models comes from their manifests (no `if model == "photo"`).
    # (The tooling's `train --model` picks a training script: that is training, not serving.)
    import re

    allowed = {ROOT / "pipeline/settings.py", ROOT / "pipeline/store/migrations/versions/0011_job_model.py"}
    named = re.compile(r"""(["'])(photo|fmnist)\1""")
    offenders = [f"{path.relative_to(ROOT)}:{n}" for package in ("pipeline", "webhook", "workers")
                 for path in sorted((ROOT / package).rglob("*.py"))
                 if path not in allowed and ROOT / "pipeline/tools" not in path.parents
                 for n, line in enumerate(path.read_text().splitlines(), 1)
                 if named.search(line) and not line.lstrip().startswith("#")]
    assert offenders == []
