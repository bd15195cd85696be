"""Slurm runs (`launcher.type: slurm`): the sbatch script tui-ft writes (a snapshot of a 2-node, 8-GPU
recipe, parsed by the real bash), the shared-storage check, and the refusal where Slurm is missing.

A real submitted job needs a Slurm controller and node daemon; this suite does not start them (see
docs/multinode.md), so the job's submission, squeue/sacct and scancel are exercised only on a cluster."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import run_tui_ft
from tui_ft.recipe import load_recipe
from tui_ft.runs.slurm import filesystem_of, sbatch_script, shared_storage_note

SNAPSHOT = Path(__file__).parent / "fixtures" / "slurm" / "two-nodes-8-gpus.sbatch"
TWO_NODES = [
    "launcher.type=slurm",
    "launcher.nodes=2",
    "launcher.num_processes=8",
    "launcher.time=04:00:00",
    "launcher.partition=gpu",
    "launcher.account=proj-llm",
    "launcher.main_port=29500",
]
RUN = Path("/shared/tui-ft/runs/20261130-120000-sft-lora")


def two_node_script(demo_ws, *extra: str, resume: bool = False) -> str:
    launcher = load_recipe("sft-lora", [*TWO_NODES, *extra], cache_dir=demo_ws.cache).recipe.launcher
    return sbatch_script(
        RUN,
        launcher,
        python="/opt/tui-ft/.venv/bin/python",
        config=RUN / "accelerate.yaml",
        env={"TUI_FT_HOME": "/shared/tui-ft", "TUI_FT_SUPERVISOR_PID": "4242"},
        resume=resume,
    )


def test_the_sbatch_script_of_a_two_node_eight_gpu_recipe(demo_ws, tmp_path):
    script = two_node_script(demo_ws)
    assert script == SNAPSHOT.read_text(), "the generated job script changed: look, then update the fixture"
    path = tmp_path / "job.sbatch"
    path.write_text(script)
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0


def test_the_script_asks_for_what_the_recipe_says(demo_ws):
    script = two_node_script(demo_ws, "launcher.gpus_per_node=0", "launcher.partition=null", resume=True)
    assert "--gpus-per-node" not in script and "--partition" not in script
    assert script.rstrip().endswith("--worker --resume'")
    assert "#SBATCH --nodes=2" in script and "#SBATCH --account=proj-llm" in script


def test_a_local_run_directory_is_named_as_not_shared(tmp_path):
    assert filesystem_of(tmp_path)  # /proc/mounts names it
    note = shared_storage_note(tmp_path)
    if filesystem_of(tmp_path) in ("nfs", "nfs4", "lustre"):
        pytest.skip("this machine's temporary folder is on shared storage")
    assert note is not None and str(tmp_path) in note and "shared storage" in note


@pytest.mark.skipif(shutil.which("sbatch") is not None, reason="Slurm is installed here")
def test_slurm_without_sbatch_exits_2_naming_it(cli_env):
    proc = run_tui_ft(cli_env, "train", "sft-lora", "--set", "launcher.type=slurm")
    assert proc.returncode == 2
    assert "launcher.type slurm needs sbatch" in proc.stderr and "login node" in proc.stderr
    assert "Traceback" not in proc.stderr
