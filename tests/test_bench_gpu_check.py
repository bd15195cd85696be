"""bench/gpu_check.py, the script a GPU machine runs: without a GPU it refuses clearly; its CPU
self-test runs the same code (model build, LoRA SFT and DPO through the engine, peak vs estimate)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "gpu_check.py"


def test_without_a_gpu_it_says_so_and_exits_2():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    proc = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "no CUDA GPU" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_cpu_self_test_trains_both_and_reports_peak_and_estimate(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--allow-cpu",
            "--size",
            "tiny",
            "--steps",
            "2",
            "--skip-trl",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "TUI_FT_SYSTEM_INTERVAL": "0.1"},  # a two-step training lasts about a second
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    figures = json.loads((tmp_path / "gpu_check.json").read_text())["trainings"]
    assert [f["recipe"] for f in figures] == ["sft-lora", "dpo-lora"]
    for f in figures:
        assert f["state"] == "completed" and f["peak_bytes"] >= 0 and f["estimate_bytes"] > 0
        assert f["tokens_per_s"] and f["system_samples"] >= 1
    assert "gpu_check: OK" in proc.stdout
