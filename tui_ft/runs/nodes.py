"""Runs on several machines: the hosts of a recipe's `launcher.hosts`, the checks before a run starts,
and the supervisor's side of each node (one `accelerate launch` per host over SSH). The contract is in
docs/multinode.md.

The supervisor (the runner's main process, on the machine where `tui-ft train` ran) starts, on every
host, `python -m tui_ft.runs.node_agent run -- accelerate launch ... --machine_rank R` over SSH, gathers
each node's output into the run's output.log (lines of nodes other than the first prefixed with
`[host] `), keeps `runs/<id>/nodes.json` current (host, rank, state, exit status, GPU memory), and
decides the run's outcome when a node ends: a node that dies fails the run naming its host.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tui_ft.errors import UserError
from tui_ft.runs.rundir import RunDir, Status, write_json_atomic

NODES_FILE = "nodes.json"
#: Environment variables the supervisor passes on to every node (names, or prefixes ending in `_`).
FORWARDED_ENV = (
    "TUI_FT_",
    "HF_",
    "TRANSFORMERS_",
    "NCCL_",
    "GLOO_",
    "TORCH_",
    "PYTHONPATH",
    "OMP_NUM_THREADS",
)
#: ssh's exit status when the connection failed (or the far side was killed by a signal).
SSH_LOST = 255
#: Seconds after a node ends with an error before the others are told to end: the nodes a failure
#: takes down end by themselves in that time, so the node that failed first is the one named.
ORDER_AFTER_S = 5.0


@dataclass
class Host:
    name: str
    slots: int | None = None  # processes there; None: launcher.num_processes


@dataclass
class Node:
    """One machine of a multi-node run, as nodes.json records it."""

    host: str
    rank: int  # the machine rank (accelerate's --machine_rank)
    slots: int
    address: str | None = None
    state: str = "starting"  # starting, running, exited, failed, lost, stopped
    exit_status: int | None = None
    pid: int | None = None  # the node agent's pid on its host
    gpu_memory: list[list[float | None]] | None = None  # [used_mb, total_mb] per GPU, when reported
    updated: float = field(default_factory=time.time)


# ------------------------------------------------------------------------------------------------
# hosts


_HOST_RE = re.compile(r"^(?P<name>[A-Za-z0-9_.@\-\[\]:]+?)(?::(?P<slots>\d+))?$")


def parse_hosts(value: list[str] | str, *, base_dir: Path | None = None) -> list[Host]:
    """`launcher.hosts`: a list of `host[:slots]`, or the path of a DeepSpeed-format hostfile."""
    if isinstance(value, str):
        path = Path(value).expanduser()
        if not path.is_absolute() and base_dir is not None and (base_dir / path).exists():
            path = base_dir / path
        return read_hostfile(path)
    hosts = []
    for i, item in enumerate(value):
        match = _HOST_RE.match(str(item).strip())
        if not match or (match["slots"] is not None and int(match["slots"]) < 1):
            raise UserError(
                f"item {i + 1}, {item!r}, is not host or host:slots (slots a whole number, at least 1)",
                field="launcher.hosts",
            )
        hosts.append(Host(match["name"], int(match["slots"]) if match["slots"] else None))
    _no_repeats(hosts, "the list")
    return hosts


def read_hostfile(path: Path) -> list[Host]:
    """A DeepSpeed hostfile: `hostname slots=N` a line; `#` starts a comment."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise UserError(
            f"cannot read the hostfile {path}: {exc.strerror or exc}", field="launcher.hosts"
        ) from None
    hosts = []
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        slots = None
        for word in words[1:]:
            key, _, val = word.partition("=")
            if key != "slots" or not val.isdigit() or int(val) < 1:
                raise UserError(
                    f"expected `hostname slots=N`, got {line.strip()!r}",
                    path=path,
                    line=number,
                    field="launcher.hosts",
                )
            slots = int(val)
        hosts.append(Host(words[0], slots))
    if not hosts:
        raise UserError("the hostfile names no host", path=path, field="launcher.hosts")
    _no_repeats(hosts, f"the hostfile {path}")
    return hosts


def _no_repeats(hosts: list[Host], where: str) -> None:
    names = [h.name for h in hosts]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise UserError(
            f"{where} names {', '.join(repeated)} twice; give each machine once, with its slots",
            field="launcher.hosts",
        )


def ssh_base(launcher, host: str) -> list[str]:
    """ssh to `host` with the user's own configuration (or launcher.ssh_config), never asking for a
    password: BatchMode."""
    cmd = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=15", "-o", "ServerAliveInterval=15"]
    if launcher.ssh_config:
        cmd += ["-F", str(Path(launcher.ssh_config).expanduser())]
    return [*cmd, host]


def ssh_hostname(launcher, host: str) -> str:
    """The address `host` stands for in the SSH configuration (`ssh -G`), else the name itself."""
    try:
        out = subprocess.run(
            [*ssh_base(launcher, host)[:-1], "-G", host], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return host
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        if key == "hostname" and value.strip():
            return value.strip()
    return host


def plan_nodes(launcher, *, base_dir: Path | None = None) -> list[Node]:
    """The nodes of a multi-node recipe, machine rank in the order given; every host must run the same
    number of processes (accelerate starts num_processes / num_machines on each)."""
    hosts = parse_hosts(launcher.hosts, base_dir=base_dir)
    nodes = [Node(h.name, rank, h.slots or launcher.num_processes) for rank, h in enumerate(hosts)]
    counts = {n.slots for n in nodes}
    if len(counts) > 1:
        listed = ", ".join(f"{n.host}:{n.slots}" for n in nodes)
        raise UserError(
            f"every host must run the same number of processes ({listed})",
            field="launcher.hosts",
            hint="give each host the same slots (accelerate starts the same number on each machine)",
        )
    return nodes


# ------------------------------------------------------------------------------------------------
# checks before anything starts


def remote_python(launcher) -> str:
    return launcher.python or sys.executable


def _local_versions() -> dict[str, str | None]:
    from tui_ft.runs.node_agent import probe

    return probe({})["versions"]


def _probe(launcher, node: Node, paths: dict[str, str]) -> dict[str, Any] | str:
    """The node's probe answer, or a sentence saying why there is none."""
    remote = shlex.join([remote_python(launcher), "-m", "tui_ft.runs.node_agent", "probe", json.dumps(paths)])
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in forwarded_env().items())
    try:
        proc = subprocess.run(
            [*ssh_base(launcher, node.host), f"env {env} {remote}" if env else remote],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )
    except subprocess.TimeoutExpired:
        return "did not answer within 120 s"
    except OSError as exc:
        return f"cannot run ssh: {exc}"
    last_err = next((ln for ln in reversed(proc.stderr.splitlines()) if ln.strip()), "")
    if proc.returncode == SSH_LOST:
        return f"cannot be reached over SSH ({last_err or 'ssh exited with status 255'})"
    if proc.returncode == 127 or "No such file" in last_err:
        return f"has no {remote_python(launcher)} ({last_err}); set launcher.python to the Python with tui-ft there"
    if proc.returncode != 0:
        return f"cannot run tui-ft there ({last_err or f'exit status {proc.returncode}'})"
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return f"answered the check with something else: {proc.stdout.strip()[-200:]!r}"


def needed_paths(run: RunDir, recipe, model_path: Path | None) -> dict[str, str]:
    """What every node must see: the run directory (checkpoints, the stop file), the model, the data."""
    paths = {"the run directory": str(run.path)}
    if model_path is not None:
        paths[f"the model ({recipe.model.name})"] = str(model_path)
    data = recipe.data
    for label, value in (("data.train", data.train), ("data.eval", data.eval)):
        if value and os.path.isabs(value):
            paths[label] = value
    for i, task in enumerate(data.mixture or []):
        for label, value in (("train", task.train), ("eval", task.eval)):
            if value and os.path.isabs(value):
                paths[f"data.mixture[{i}].{label}"] = value
    return paths


def preflight(run: RunDir, recipe, *, model_path: Path | None, gpus_needed: bool) -> list[Node]:
    """Check every host before the run starts: reachable over SSH without a password, the same tui-ft
    and library versions as here, sees the run directory, the model and the data at the same paths, and
    has the GPUs asked for. UserError (exit 2) naming each host and what it lacks; the nodes otherwise."""
    launcher = recipe.launcher
    nodes = plan_nodes(launcher, base_dir=run.path)
    paths = needed_paths(run, recipe, model_path)
    answers: dict[str, dict[str, Any] | str] = {}

    def ask(node: Node) -> None:
        answers[node.host] = _probe(launcher, node, paths)

    threads = [threading.Thread(target=ask, args=(n,)) for n in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    here = _local_versions()
    problems = []
    for node in nodes:
        answer = answers.get(node.host, "gave no answer")
        if isinstance(answer, str):
            problems.append(f"{node.host}: {answer}")
            continue
        versions = answer.get("versions", {})
        differ = [f"{k} {versions.get(k)} (here {v})" for k, v in here.items() if versions.get(k) != v]
        if differ:
            problems.append(f"{node.host}: has {', '.join(differ)}")
        for label in answer.get("missing", []):
            shared = " (a multi-node run needs its workspace on storage every node shares)"
            problems.append(
                f"{node.host}: does not see {label} at {paths[label]}"
                + (shared if label == "the run directory" else "")
            )
        if gpus_needed and answer.get("gpus", 0) < node.slots:
            problems.append(
                f"{node.host}: has {answer.get('gpus', 0)} GPUs, the recipe runs {node.slots} processes there"
                + (f" ({answer['gpu_note']})" if answer.get("gpu_note") else "")
            )
    if problems:
        raise UserError(
            "; ".join(problems),
            field="launcher.hosts",
            hint="fix the hosts named (tui-ft checks them before every multi-node start)",
        )
    return nodes


def check_run(run: RunDir, ws) -> None:
    """The checks before a runner starts on the run of `run`, when its recipe trains on several
    machines (nothing otherwise)."""
    from tui_ft.modelref import resolve_model
    from tui_ft.recipe import validate_recipe
    from tui_ft.runs.prepare import read_run_recipe

    recipe = validate_recipe(
        read_run_recipe(run), source=run.recipe_file, cache_dir=ws.cache, check_training=False
    ).recipe
    launcher = recipe.launcher
    if launcher.type == "slurm":
        from tui_ft.runs.slurm import check_slurm

        check_slurm(launcher)
        return
    if launcher.type != "accelerate" or not launcher.hosts:
        return
    try:
        model_path: Path | None = Path(resolve_model(recipe.model.name, ws, field="model.name").path)
    except UserError:
        model_path = None  # a hub id: each node downloads it
    preflight(run, recipe, model_path=model_path, gpus_needed=_gpus_here(launcher))


def _gpus_here(launcher) -> bool:
    from tui_ft.runs.queue import run_devices

    return bool(launcher.gpus) or run_devices(None) != ["cpu"]


# ------------------------------------------------------------------------------------------------
# nodes.json


def write_nodes(run: RunDir, nodes: list[Node], **fields: Any) -> None:
    write_json_atomic(
        run.path / NODES_FILE, {**fields, "nodes": [asdict(n) for n in nodes], "updated": time.time()}
    )


def read_nodes(run: RunDir) -> dict[str, Any] | None:
    """nodes.json of a multi-node run (None for a run on one machine, or one that cannot be read)."""
    try:
        data = json.loads((run.path / NODES_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("nodes"), list) else None


# ------------------------------------------------------------------------------------------------
# the supervisor's side


def forwarded_env() -> dict[str, str]:
    """The variables of this process that every node gets too (FORWARDED_ENV)."""
    keep = {}
    for key, value in os.environ.items():
        if any(key.startswith(p) if p.endswith("_") else key == p for p in FORWARDED_ENV):
            keep[key] = value
    return keep


def node_command(
    run: RunDir, launcher, nodes: list[Node], node: Node, *, config: Path, address: str, resume: bool
) -> str:
    """The shell command the node's SSH session runs."""
    python = remote_python(launcher)
    launch = [
        python,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(config),
        "--num_machines",
        str(len(nodes)),
        "--machine_rank",
        str(node.rank),
        "--main_process_ip",
        address,
        "--main_process_port",
        str(launcher.main_port),
        "--num_processes",
        str(sum(n.slots for n in nodes)),
    ]
    if launcher.gpus:
        launch += ["--gpu_ids", ",".join(str(g) for g in launcher.gpus)]
    launch += ["-m", "tui_ft.engine.runner", str(run.path), "--worker", *(["--resume"] if resume else [])]
    env = {
        **forwarded_env(),
        "PYTHONUNBUFFERED": "1",
        "TUI_FT_SUPERVISOR_PID": str(os.getpid()),
        "TUI_FT_NODE_HOST": node.host,
    }
    agent = [python, "-m", "tui_ft.runs.node_agent", "run", "--", *launch]
    return (
        f"cd {shlex.quote(str(run.path))} && exec env "
        + " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        + " "
        + shlex.join(agent)
    )


class _NodeProcess:
    def __init__(self, node: Node, proc: subprocess.Popen, on_change: Callable[[], None], out_lock):
        self.node, self.proc = node, proc
        self.tail: deque[str] = deque(maxlen=40)
        self.ordered = False  # told to end (another node failed first)
        self._on_change, self._out_lock = on_change, out_lock
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        from tui_ft.runs.node_agent import PREFIX

        prefix = "" if self.node.rank == 0 else f"[{self.node.host}] "
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace")
            if line.startswith(PREFIX):
                with contextlib.suppress(ValueError):
                    said = json.loads(line[len(PREFIX) :])
                    if "pid" in said:
                        self.node.pid, self.node.state = said["pid"], "running"
                    if "gpu_memory" in said:
                        self.node.gpu_memory = said["gpu_memory"]
                    self.node.updated = time.time()
                    self._on_change()
                continue
            if line.strip():
                self.tail.append(line.rstrip())
            with self._out_lock:
                sys.stdout.write(prefix + line)
                sys.stdout.flush()

    def order(self, what: str) -> None:
        """`term` or `kill` to the node's agent (see node_agent)."""
        with contextlib.suppress(OSError, ValueError):
            assert self.proc.stdin is not None
            self.proc.stdin.write(what.encode() + b"\n")
            self.proc.stdin.flush()


def run_on_nodes(run: RunDir, status: Status, launcher, *, resume: bool, stop, config: Path) -> int:
    """Train the run on launcher.hosts, one `accelerate launch` per host; returns the exit status
    (0 completed or stopped, 1 failed, 2 bad input). Rank 0 records the run as on one machine; this
    records the nodes and, when a node dies, fails the run naming it."""
    nodes = plan_nodes(launcher, base_dir=run.path)
    first = nodes[0]
    address = launcher.main_address or ssh_hostname(launcher, first.host)
    for node in nodes:
        node.address = ssh_hostname(launcher, node.host)
    meta = {
        "kind": "ssh",
        "main": f"{address}:{launcher.main_port}",
        "world_size": sum(n.slots for n in nodes),
    }
    write_lock, out_lock = threading.Lock(), threading.Lock()

    def save() -> None:
        with write_lock:
            write_nodes(run, nodes, **meta)

    save()
    print(
        f"tui-ft: {len(nodes)} nodes ({', '.join(f'{n.host}:{n.slots}' for n in nodes)}), "
        f"rendezvous at {address}:{launcher.main_port}",
        flush=True,
    )
    procs = []
    for node in nodes:
        command = node_command(run, launcher, nodes, node, config=config, address=address, resume=resume)
        proc = subprocess.Popen(
            [*ssh_base(launcher, node.host), command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a stop's SIGTERM to the supervisor's group must not cut the links
        )
        procs.append(_NodeProcess(node, proc, save, out_lock))

    ended: list[_NodeProcess] = []  # in the order they ended, those ended by an order excepted
    first_failure_at: float | None = None
    stopping_now = False
    while any(p.proc.poll() is None for p in procs):
        try:
            time.sleep(0.2)
            for p in procs:
                code = p.proc.poll()
                if code is None or p.node.exit_status is not None:
                    continue
                p.reader.join(timeout=5)
                p.node.exit_status = code
                p.node.state = _ended_state(code, stopping_now or p.ordered)
                p.node.updated = time.time()
                save()
                if not (stopping_now or p.ordered):
                    ended.append(p)
                if code != 0 and first_failure_at is None and not stopping_now:
                    first_failure_at = time.monotonic()
            if first_failure_at is not None and time.monotonic() - first_failure_at > ORDER_AFTER_S:
                # the others wait in a collective for a partner that is gone: end them (a bad input
                # ends every rank by itself: let them write why)
                bad_input = any(p.node.exit_status == 2 for p in ended)
                for p in procs:
                    if p.proc.poll() is None and not p.ordered:
                        p.ordered = True
                        p.order("term" if bad_input else "kill")
        except KeyboardInterrupt:  # a stop "now" (or a second stop): every node ends at once
            stopping_now = True
            for p in procs:
                p.order("term")
    for p in procs:
        p.reader.join(timeout=5)
        if p.node.exit_status is None:
            p.node.exit_status = p.proc.returncode
            p.node.state = _ended_state(p.proc.returncode, stopping_now or p.ordered)
    save()
    # who failed the run: a node that was lost, else the first that ended with an error
    failure = next((p for p in ended if p.node.state == "lost"), None) or next(
        (p for p in ended if p.proc.returncode != 0), None
    )
    return _outcome(run, status, procs, failure, stopped_now=stopping_now or stop.now)


def _ended_state(code: int, stopped: bool) -> str:
    if code == 0:
        return "exited"
    if stopped:
        return "stopped"
    return "lost" if code == SSH_LOST else "failed"


def _outcome(run: RunDir, status: Status, procs: list[_NodeProcess], failure, *, stopped_now: bool) -> int:
    """The run's final status once every node has ended: rank 0's own account when it has one and the
    failure (if any) is rank 0's own or a bad input every rank saw; else a failure naming the node."""
    final = run.read_status() or status
    if stopped_now and not final.is_final:
        final.state, final.ended = "stopped", time.time()
        run.write_status(final)
        return 0
    if final.is_final and (
        failure is None
        or (failure.node.rank == 0 and failure.node.state != "lost")
        or (failure.proc.returncode == 2 and (final.error or {}).get("kind") == "bad_input")
    ):
        if final.state in ("completed", "stopped"):
            return 0
        return 2 if (final.error or {}).get("kind") == "bad_input" else 1
    culprit = failure or next((p for p in procs if p.proc.returncode != 0), procs[0])
    node, code = culprit.node, culprit.proc.returncode
    telling = [ln for ln in culprit.tail if ln.startswith("tui-ft:") or "Error" in ln or "error" in ln]
    last = (telling or list(culprit.tail) or ["no output"])[-1]
    if code == 0:
        how = "ended without the run recording an outcome"
    elif code == SSH_LOST:
        how = "was lost (its SSH session ended: the machine, the connection or its processes died)"
    else:
        how = f"failed (exit status {code})"
    final.state, final.ended = "failed", time.time()
    final.error = {
        "kind": "crashed",
        "message": f"node {node.host} (machine rank {node.rank}) {how}; its last output: {last}",
        "hint": f"see {run.log_file}"
        + (f" (the lines of {node.host} start with [{node.host}])" if node.rank else "")
        + f"; `tui-ft resume {run.id}` restarts every node from the last complete checkpoint",
        "host": node.host,
        "log_tail": list(culprit.tail)[-10:],
    }
    run.write_status(final)
    return 1
