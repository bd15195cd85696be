"""The far end of a multi-node run: what the supervisor starts on each host over SSH (docs/multinode.md).

`python -m tui_ft.runs.node_agent probe JSON` answers the supervisor's checks before a run starts (this
host's tui-ft and library versions, which of the given paths it sees, how many GPUs it has) as one
JSON line. `python -m tui_ft.runs.node_agent run -- COMMAND...` starts the node's launcher (`accelerate
launch ...`) and stands between it and the SSH connection:

- its first line of output is `tui-ft-node: {"pid": ...}`; every `TUI_FT_NODE_GPU_INTERVAL` seconds (when
  NVML sees GPUs) a `tui-ft-node: {"gpu_memory": [[used_mb, total_mb], ...]}` line follows; everything
  else is the launcher's own output;
- a `term` line on its standard input stops the launcher (SIGTERM, and SIGKILL to every process it
  started if it is still there after a grace period), `kill` ends them all at once, and the end of its
  input (the supervisor or the connection is gone) counts as `term`: a node never trains on alone;
- its exit status is the launcher's (128 + N for a launcher killed by signal N).

Light: no torch import, so it starts in a fraction of a second on every host.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from importlib import metadata

#: The prefix of the agent's own lines in a node's output.
PREFIX = "tui-ft-node: "
#: The libraries whose versions must match on every host.
PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets")
#: Seconds between a `term` and the SIGKILL to whatever of the node is left.
GRACE_S = 20.0


def probe(request: dict) -> dict:
    """This host's answer to the supervisor's checks."""
    import tui_ft

    versions: dict[str, str | None] = {"tui-ft": tui_ft.__version__}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    missing = [label for label, path in request.get("paths", {}).items() if not os.path.exists(path)]
    from tui_ft.monitor.system import GpuSampler

    sampler = GpuSampler()
    try:
        gpus = sampler.sample()
    finally:
        sampler.close()
    return {
        "python": sys.executable,
        "versions": versions,
        "missing": missing,
        "gpus": len(gpus.gpus) if gpus.available else 0,
        "gpu_note": None if gpus.available else gpus.reason,
    }


def descendants(pid: int) -> list[int]:
    """Every process started under `pid`, however deep (Linux /proc); torch's launcher starts its
    workers in sessions of their own, so a process group does not reach them."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children") as fh:
                    children = [int(c) for c in fh.read().split()]
            except OSError:
                continue
            found.extend(children)
            todo.extend(children)
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _say(**fields) -> None:
    sys.stdout.write(PREFIX + json.dumps(fields) + "\n")
    sys.stdout.flush()


class _Node:
    def __init__(self, command: list[str]):
        self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True)
        self.ending = threading.Event()

    def signal_all(self, sig: int) -> None:
        for pid in [*descendants(self.proc.pid), self.proc.pid]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)

    def terminate(self) -> None:
        """SIGTERM the launcher (it passes it on to its workers), SIGKILL what is left after the grace."""
        if self.ending.is_set():
            return
        self.ending.set()
        tree = descendants(self.proc.pid)  # before they are orphaned: reparented, /proc loses them
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + GRACE_S
        while time.monotonic() < deadline and any(_alive(pid) for pid in [self.proc.pid, *tree]):
            time.sleep(0.1)
        for pid in [*tree, *descendants(self.proc.pid), self.proc.pid]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def read_orders(self) -> None:
        for line in sys.stdin:
            if line.strip() == "kill":
                self.ending.set()
                self.signal_all(signal.SIGKILL)
                return
            if line.strip() == "term":
                break
        if self.proc.poll() is None:
            self.terminate()

    def report_gpus(self, interval: float) -> None:
        from tui_ft.monitor.system import GpuSampler

        sampler = GpuSampler()
        try:
            while self.proc.poll() is None:
                status = sampler.sample()
                if not status.available:
                    return
                _say(gpu_memory=[[g.memory_used_mb, g.memory_total_mb] for g in status.gpus])
                if self.ending.wait(interval):
                    return
        finally:
            sampler.close()


def run(command: list[str]) -> int:
    _say(pid=os.getpid(), host=os.uname().nodename)
    node = _Node(command)
    threading.Thread(target=node.read_orders, daemon=True).start()
    interval = float(os.environ.get("TUI_FT_NODE_GPU_INTERVAL", "10"))
    threading.Thread(target=node.report_gpus, args=(interval,), daemon=True).start()

    def on_signal(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
        threading.Thread(target=node.terminate, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    code = node.proc.wait()
    if node.ending.is_set():
        time.sleep(0.2)  # let a SIGKILL of the stragglers land before the connection closes
    return 128 - code if code < 0 else code


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["probe"] and len(args) == 2:
        print(json.dumps(probe(json.loads(args[1]))), flush=True)
        return 0
    if args[:2] == ["run", "--"] and len(args) > 2:
        return run(args[2:])
    print("usage: python -m tui_ft.runs.node_agent probe JSON | run -- COMMAND...", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
