"""The wheel carries what an installed tui-ft needs: the shipped recipes and the sample data."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    return next(out.glob("tui_ft-*.whl"))


def test_wheel_contains_recipes_and_samples(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for recipe in (ROOT / "recipes").glob("*.yaml"):
        assert f"tui_ft/recipes/{recipe.name}" in names
    for sample in ("chat.jsonl", "preferences.jsonl", "corpus.txt"):
        assert f"tui_ft/samples/{sample}" in names
    assert any(n.endswith("entry_points.txt") for n in names)


def test_installed_wheel_finds_its_recipes(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    code = (
        "from tui_ft.recipe import recipes_dir, shipped_recipes\n"
        "print(recipes_dir()); print(len(shipped_recipes()))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout.split()
    assert out[0].startswith(str(target)), out
    assert int(out[1]) == len(list((ROOT / "recipes").glob("*.yaml")))
