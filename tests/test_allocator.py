"""The runner's allocator setting (`keep_freed_memory`): applied with glibc, left alone when the user set
glibc's own malloc variables or asked for the defaults. Each case runs in a fresh process (mallopt
changes the process for good)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CODE = "from tui_ft.engine.allocator import keep_freed_memory; print(keep_freed_memory())"


def _applied(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    clean.pop("TUI_FT_MALLOC", None)
    out = subprocess.run(
        [sys.executable, "-c", CODE], env={**clean, **env}, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc: Linux only")
def test_applied_on_glibc_unless_the_user_chose():
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    assert _applied() == "True"
    assert _applied(MALLOC_MMAP_THRESHOLD_="131072") == "False"
    assert _applied(GLIBC_TUNABLES="glibc.malloc.trim_threshold=0") == "False"
    assert _applied(TUI_FT_MALLOC="default") == "False"
