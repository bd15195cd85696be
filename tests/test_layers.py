"""The layers hold: `lint-imports` checks the contracts in pyproject.toml ([tool.importlinter]) on the
package. Run it yourself with `lint-imports` from the checkout to see the import direction."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def lint_imports() -> list[str]:
    local = Path(sys.executable).parent / "lint-imports"
    if local.exists():
        return [str(local)]
    if shutil.which("lint-imports"):
        return ["lint-imports"]
    pytest.skip("import-linter is not installed (pip install -e '.[dev]')")


def test_import_contracts_are_kept():
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.run([*lint_imports(), "--no-cache"], cwd=ROOT, env=env, capture_output=True, text=True)
    print(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " 0 broken" in proc.stdout
