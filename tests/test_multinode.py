"""Multi-node training over SSH, for real: the test starts an SSH server on 127.0.0.1 (a non-standard
port, a throwaway key), and two "hosts", node0 and node1, are that loopback address under aliases in an
SSH config file the recipe names (launcher.ssh_config). World size 2 over gloo on the CPU, the demo
model. Skips only when sshd cannot be had here (scripts/install-sshd installs it as root; with
TUI_FT_REQUIRE_SSHD=1, as scripts/test sets for root, a missing sshd fails instead)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import run_tui_ft, train_losses, wait_for_status
from tui_ft.engine.runner import execute
from tui_ft.recipe import load_recipe
from tui_ft.runs.nodes import parse_hosts, plan_nodes, read_nodes
from tui_ft.runs.prepare import create_run
from tui_ft.runs.registry import find_run, pid_alive
from tui_ft.runs.rundir import read_events

STEPS = 30
COMMON = [
    f"training.max_steps={STEPS}",
    "training.logging_steps=1",
    "training.save_steps=4",
    "training.save_total_limit=20",
    "data.eval_split=0",
    "training.eval_strategy=no",
    # padded batches: packing fills each device's batch from its own share of rows, so two nodes of 2
    # and one node of 4 would pack different sequences together (the losses would differ by design)
    "data.packing=false",
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _sshd() -> str | None:
    return shutil.which("sshd") or ("/usr/sbin/sshd" if os.access("/usr/sbin/sshd", os.X_OK) else None)


@pytest.fixture(scope="module")
def ssh_hosts(tmp_path_factory):
    """A real sshd on 127.0.0.1; yields the SSH config file naming node0 and node1 (both this machine)."""
    sshd = _sshd()
    if sshd is None or shutil.which("ssh") is None:
        if os.environ.get("TUI_FT_REQUIRE_SSHD") == "1":
            pytest.fail("sshd is not installed, and TUI_FT_REQUIRE_SSHD=1 requires it (scripts/install-sshd)")
        pytest.skip("the OpenSSH server is not installed (scripts/install-sshd installs it as root)")
    d = tmp_path_factory.mktemp("ssh")
    for key in ("host_key", "user_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)], check=True)
    (d / "authorized_keys").write_text((d / "user_key.pub").read_text())
    (d / "authorized_keys").chmod(0o600)
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(exist_ok=True)  # the privilege separation directory Debian's sshd wants
    port = _free_port()
    (d / "sshd_config").write_text(
        f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {d / 'host_key'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        f"PidFile {d / 'sshd.pid'}\nPermitRootLogin prohibit-password\nMaxStartups 50\nMaxSessions 50\n"
    )
    user = (
        os.environ.get("USER") or subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    )
    config = d / "ssh_config"
    config.write_text(
        f"Host node0 node1\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n"
        f"  IdentityFile {d / 'user_key'}\n  IdentitiesOnly yes\n  StrictHostKeyChecking no\n"
        "  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n"
        # a host that does not answer: the port of nothing
        f"Host nowhere\n  HostName 127.0.0.1\n  Port {_free_port()}\n  IdentityFile {d / 'user_key'}\n"
    )
    server = subprocess.Popen([sshd, "-D", "-f", str(d / "sshd_config"), "-E", str(d / "sshd.log")])
    try:
        deadline = time.monotonic() + 30
        while True:
            probe = subprocess.run(
                ["ssh", "-F", str(config), "-o", "BatchMode=yes", "node1", "true"],
                capture_output=True,
                text=True,
            )
            if probe.returncode == 0:
                break
            if server.poll() is not None or time.monotonic() > deadline:
                log = (d / "sshd.log").read_text() if (d / "sshd.log").exists() else ""
                pytest.fail(f"sshd did not start: {probe.stderr} {log}")
            time.sleep(0.2)
        yield config
    finally:
        server.terminate()
        server.wait(timeout=10)


def node_sets(config: Path, *extra: str) -> list[str]:
    return [
        "launcher.type=accelerate",
        "launcher.hosts=[node0, node1]",
        f"launcher.ssh_config={config}",
        f"launcher.main_port={_free_port()}",
        "training.per_device_train_batch_size=2",  # x 2 nodes: a global batch of 4
        *extra,
    ]


def as_args(sets: list[str]) -> list[str]:
    return [a for s in sets for a in ("--set", s)]


@pytest.fixture(scope="module")
def one_node(demo_ws):
    """The reference: the same recipe on one node, one process, the same global batch (4)."""
    loaded = load_recipe(
        "sft-lora", [*COMMON, "training.per_device_train_batch_size=4"], cache_dir=demo_ws.cache
    )
    run = create_run(loaded, demo_ws)
    assert execute(run.path) == 0
    return train_losses(run)


# ------------------------------------------------------------------------------------------------
# hosts (no SSH needed)


def test_hosts_as_a_list_or_a_deepspeed_hostfile(tmp_path):
    assert [(h.name, h.slots) for h in parse_hosts(["a", "b:4", "user@c.example:2"])] == [
        ("a", None),
        ("b", 4),
        ("user@c.example", 2),
    ]
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("# workers\nworker-1 slots=8\n\nworker-2 slots=8  # the second\n")
    assert [(h.name, h.slots) for h in parse_hosts(str(hostfile))] == [("worker-1", 8), ("worker-2", 8)]
    hostfile.write_text("worker-1 gpus=8\n")
    with pytest.raises(Exception, match=r"hostfile:1: launcher.hosts: expected `hostname slots=N`"):
        parse_hosts(str(hostfile))
    with pytest.raises(Exception, match="names a twice"):
        parse_hosts(["a", "a:2"])


def test_hosts_must_run_as_many_processes_each(demo_ws):
    loaded = load_recipe(
        "sft-lora", ["launcher.type=accelerate", "launcher.hosts=[a:2, b:4]"], cache_dir=demo_ws.cache
    )
    with pytest.raises(Exception, match=r"same number of processes \(a:2, b:4\)"):
        plan_nodes(loaded.recipe.launcher)
    loaded = load_recipe(
        "sft-lora",
        ["launcher.type=accelerate", "launcher.hosts=[a, b]", "launcher.num_processes=8"],
        cache_dir=demo_ws.cache,
    )
    assert [(n.host, n.rank, n.slots) for n in plan_nodes(loaded.recipe.launcher)] == [
        ("a", 0, 8),
        ("b", 1, 8),
    ]


def test_hosts_need_the_accelerate_launcher(cli_env):
    proc = run_tui_ft(cli_env, "train", "sft-lora", "--set", "launcher.hosts=[a, b]")
    assert proc.returncode == 2
    assert "launcher.hosts" in proc.stderr and "type: accelerate" in proc.stderr
    assert "Traceback" not in proc.stderr


# ------------------------------------------------------------------------------------------------
# checks before the start


def test_a_host_that_cannot_be_reached_is_named_exit_2(cli_env, demo_ws, ssh_hosts):
    sets = node_sets(ssh_hosts)
    sets[1] = "launcher.hosts=[node0, nowhere]"
    proc = run_tui_ft(cli_env, "train", "sft-lora", *as_args([*COMMON, *sets]))
    assert proc.returncode == 2, proc.stderr
    assert "nowhere: cannot be reached over SSH" in proc.stderr
    assert "node0:" not in proc.stderr, "node0 answers"
    assert "Traceback" not in proc.stderr
    run = find_run(demo_ws, "last")
    status = run.read_status()
    assert status.state == "failed" and status.error["kind"] == "bad_input"


def test_a_host_with_other_libraries_or_without_gpus_is_named_exit_2(cli_env, ssh_hosts):
    # a Python without the training libraries on the hosts (tui-ft itself comes through PYTHONPATH), and
    # GPUs asked for on a machine that has none
    python = shutil.which("python3", path="/usr/bin:/bin") or "/usr/bin/python3"
    sets = node_sets(ssh_hosts, f"launcher.python={python}")
    env = dict(cli_env, PYTHONPATH=str(Path(__file__).resolve().parents[1]))  # passed on to the hosts
    proc = run_tui_ft(env, "train", "sft-lora", *as_args([*COMMON, *sets]))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    for host in ("node0", "node1"):
        assert f"{host}: has torch None (here " in proc.stderr, proc.stderr
    if shutil.which("nvidia-smi") is None:
        proc = run_tui_ft(
            cli_env, "train", "sft-lora", *as_args([*COMMON, *node_sets(ssh_hosts, "launcher.gpus=[0]")])
        )
        assert proc.returncode == 2
        assert "node0: has 0 GPUs, the recipe runs 1 processes there" in proc.stderr, proc.stderr


# ------------------------------------------------------------------------------------------------
# real runs on two nodes


def test_two_nodes_train_like_one_node_with_the_same_global_batch(cli_env, demo_ws, ssh_hosts, one_node):
    proc = run_tui_ft(cli_env, "train", "sft-lora", *as_args([*COMMON, *node_sets(ssh_hosts)]), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["state"] == "completed"
    run = find_run(demo_ws, json.loads(proc.stdout)["id"])
    events = read_events(run.events_file)[0]
    start = [e for e in events if e["type"] == "start"]
    assert len(start) == 1 and start[0]["world_size"] == 2, "one events stream, written by rank 0"
    steps = [e["step"] for e in events if e["type"] == "train"]
    assert steps == list(range(1, STEPS + 1))
    losses = train_losses(run)
    worst = max(abs(losses[s] - one_node[s]) for s in range(1, STEPS + 1))
    print(f"two nodes vs one node, largest loss difference over {STEPS} steps: {worst:.2e}")
    for s in range(1, STEPS + 1):
        assert losses[s] == pytest.approx(one_node[s], abs=1e-4), (s, losses[s], one_node[s])
    nodes = read_nodes(run)
    assert [(n["host"], n["rank"], n["state"], n["exit_status"]) for n in nodes["nodes"]] == [
        ("node0", 0, "exited", 0),
        ("node1", 1, "exited", 0),
    ]
    assert nodes["world_size"] == 2
    log = run.log_file.read_text()
    assert "[node1] tui-ft: data:" in log, "node1's output is in the run's log, prefixed with its host"
    assert (run.final / "adapter_config.json").exists()


def _kill_node(pid: int) -> None:
    """What a machine's power cut does to a node: every process of it dies at once."""
    from tui_ft.runs.node_agent import descendants

    tree = descendants(pid)  # before the kill: a dead parent no longer lists its children
    for p in [pid, *tree]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)


def test_a_dead_node_fails_the_run_naming_it_and_resume_finishes(cli_env, demo_ws, ssh_hosts, one_node):
    proc = run_tui_ft(
        cli_env, "train", "sft-lora", *as_args([*COMMON, *node_sets(ssh_hosts)]), "--detach", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    run = find_run(demo_ws, json.loads(proc.stdout)["id"])
    status = wait_for_status(run, lambda s: s.is_final or (s.step >= 6 and s.last_checkpoint), timeout=600)
    assert not status.is_final, status
    node1 = next(n for n in read_nodes(run)["nodes"] if n["host"] == "node1")
    assert node1["pid"], node1
    _kill_node(node1["pid"])
    # rank 0 may record its own side first (a collective that lost its partner); the supervisor, once
    # every node has ended, names the node
    status = wait_for_status(run, lambda s: s.is_final and not pid_alive(s.pid), timeout=120)
    assert status.state == "failed", status
    assert "node node1 (machine rank 1)" in status.error["message"]
    assert status.error["host"] == "node1" and "resume" in status.error["hint"]
    assert status.step < STEPS
    states = {n["host"]: n["state"] for n in read_nodes(run)["nodes"]}
    assert states["node1"] == "lost", states

    proc = run_tui_ft(cli_env, "resume", run.id, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["state"] == "completed"
    losses = train_losses(run)
    assert sorted(losses) == list(range(1, STEPS + 1))
    for s in range(1, STEPS + 1):
        assert losses[s] == pytest.approx(one_node[s], abs=1e-4), (s, losses[s], one_node[s])
    assert {n["state"] for n in read_nodes(run)["nodes"]} == {"exited"}


def test_the_world_size_the_estimate_divides_by(tmp_path):
    from tui_ft.recipe import LauncherSpec

    assert LauncherSpec().world() == (1, 1)
    assert LauncherSpec(type="accelerate", num_processes=4).world() == (1, 4)
    assert LauncherSpec(type="accelerate", num_processes=8, hosts=["a", "b:8"]).world() == (2, 16)
    assert LauncherSpec(type="slurm", nodes=2, num_processes=8).world() == (2, 16)
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("a slots=4\nb slots=4  # two machines\n")
    assert LauncherSpec(type="accelerate", hosts=str(hostfile)).world() == (2, 8)


def test_a_stop_reaches_every_node(cli_env, demo_ws, ssh_hosts):
    sets = [*COMMON, *node_sets(ssh_hosts), "training.max_steps=100000"]  # runs until stopped
    proc = run_tui_ft(cli_env, "train", "sft-lora", *as_args(sets), "--detach", "--json")
    assert proc.returncode == 0, proc.stderr
    run = find_run(demo_ws, json.loads(proc.stdout)["id"])
    wait_for_status(run, lambda s: s.is_final or (s.state == "running" and s.step >= 2), timeout=600)
    assert run_tui_ft(cli_env, "stop", run.id).returncode == 0  # graceful: a checkpoint, then stopped
    status = wait_for_status(run, lambda s: s.is_final and not pid_alive(s.pid), timeout=180)
    assert status.state == "stopped", status
    assert (run.checkpoints / f"checkpoint-{status.step}" / "trainer_state.json").exists()
    assert [(n["host"], n["state"]) for n in read_nodes(run)["nodes"]] == [
        ("node0", "exited"),
        ("node1", "exited"),
    ]
