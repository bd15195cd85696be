"""mypy holds for the package, with the settings in pyproject.toml ([tool.mypy])."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def mypy() -> list[str]:
    local = Path(sys.executable).parent / "mypy"
    if local.exists():
        return [str(local)]
    if shutil.which("mypy"):
        return ["mypy"]
    pytest.skip("mypy is not installed (pip install -e '.[dev]')")


def test_mypy_is_clean():
    # The checkout's tui_ft first, so that an installed copy is not checked in its place.
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.run(mypy(), cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
