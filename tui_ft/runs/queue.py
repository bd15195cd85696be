"""One run per device set: a run whose GPUs (or the CPU) are busy waits as `queued`, first come first
served, and starts when they are free.

Each device has a lock file in the workspace; a running runner holds an exclusive flock on each of its
devices for its whole life. The kernel drops the locks when the process ends, however it ends, so a
crashed run never leaves its GPUs reserved.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable

from tui_ft.runs.registry import refresh
from tui_ft.runs.rundir import RunDir, Status
from tui_ft.workspace import Workspace


def run_devices(gpus: list[int] | None = None) -> list[str]:
    """The devices a run will use: the recipe's GPUs, else CUDA_VISIBLE_DEVICES, else every GPU NVML
    sees, else the CPU."""
    if gpus:
        return [f"gpu{i}" for i in sorted(set(gpus))]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() not in ("", "-1"):
        return [f"gpu{d.strip()}" for d in visible.split(",") if d.strip()]
    from tui_ft.monitor.system import GpuSampler

    sampler = GpuSampler()
    try:
        status = sampler.sample()
    finally:
        sampler.close()
    if status.available and status.gpus:
        return [f"gpu{g.index}" for g in status.gpus]
    return ["cpu"]


class DeviceSlot:
    """Exclusive use of a set of devices, held until `release()` or process exit."""

    def __init__(self, ws: Workspace, devices: list[str]):
        self.devices = sorted(devices)
        self.dir = ws.root / "locks"
        self._handles: list[int] = []

    def try_acquire(self) -> bool:
        self.dir.mkdir(parents=True, exist_ok=True)
        for device in self.devices:
            fd = os.open(self.dir / f"{device}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                self.release()
                return False
            self._handles.append(fd)
        return True

    def release(self) -> None:
        for fd in self._handles:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        self._handles = []


def queued_before(ws: Workspace, status: Status, devices: list[str]) -> bool:
    """Whether another run, queued before the run of `status`, still waits for one of `devices`."""
    if not ws.runs.is_dir():
        return False
    for path in sorted(p for p in ws.runs.iterdir() if p.is_dir()):
        other = refresh(RunDir(path))  # crash detection: a dead queued run no longer waits
        if (
            other is not None
            and other.state == "queued"
            and other.created < status.created
            and other.id != status.id
            and set(other.devices or []) & set(devices)
        ):
            return True
    return False


def wait_for_slot(
    slot: DeviceSlot,
    *,
    earlier_waiting: Callable[[], bool],
    on_wait: Callable[[], None],
    stop: Callable[[], bool],
    poll: float = 0.5,
) -> bool:
    """Block until the slot is ours (True), or a stop is requested while waiting (False).

    `earlier_waiting()` says whether a run queued before this one still waits for an overlapping
    device: this run lets it go first, so the queue is served in order.
    """
    announced = False
    while True:
        if stop():
            return False
        if not earlier_waiting() and slot.try_acquire():
            return True
        if not announced:
            on_wait()
            announced = True
        time.sleep(poll)
