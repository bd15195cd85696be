"""System and GPU sampling: "no GPU" is a value, numbers are sane, sysinfo reports what is installed."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
from rich.console import Console

from tests.conftest import NO_NVIDIA
from tui_ft.monitor.system import (
    PACKAGES,
    GpuSample,
    GpuSampler,
    GpuStatus,
    SystemSample,
    format_sysinfo,
    sample_system,
    sysinfo,
)


def test_importing_monitor_and_error_translation_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from tui_ft.monitor.system import GpuSampler, sample_system\n"
        "from tui_ft.engine.errors import translate_exception\n"
        "GpuSampler().sample(); sample_system()\n"
        "translate_exception(ValueError('x')); translate_exception(KeyboardInterrupt())\n"
        "heavy = [m for m in ('torch', 'transformers', 'bitsandbytes', 'textual') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=root)


@pytest.mark.skipif(not NO_NVIDIA, reason="this machine has an NVIDIA driver")
def test_gpu_sampler_without_driver_reports_a_reason_and_does_not_raise() -> None:
    sampler = GpuSampler()
    first = sampler.sample()
    second = sampler.sample()
    sampler.close()
    after_close = sampler.sample()
    for status in (first, second, after_close):
        assert isinstance(status, GpuStatus)
        assert status.available is False
        assert status.gpus == ()
        assert "NVIDIA driver" in status.reason
    assert first == second


class _NVMLError(Exception):
    pass


class _NotSupported(_NVMLError):
    pass


class _LibraryNotFound(_NVMLError):
    pass


def _fake_nvml(count: int = 1, init_error: Exception | None = None) -> types.SimpleNamespace:
    """A stand-in for pynvml with the calls GpuSampler makes, for the GPU path this machine lacks."""
    calls = {"init": 0, "shutdown": 0}

    def init() -> None:
        calls["init"] += 1
        if init_error is not None:
            raise init_error

    def no_power(handle: object) -> float:
        raise _NotSupported("Not Supported")

    return types.SimpleNamespace(
        calls=calls,
        NVMLError=_NVMLError,
        NVMLError_LibraryNotFound=_LibraryNotFound,
        NVML_TEMPERATURE_GPU=0,
        nvmlInit=init,
        nvmlShutdown=lambda: calls.__setitem__("shutdown", calls["shutdown"] + 1),
        nvmlSystemGetDriverVersion=lambda: "580.65.06",
        nvmlSystemGetCudaDriverVersion=lambda: 13000,
        nvmlDeviceGetCount=lambda: count,
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetName=lambda h: b"NVIDIA RTX 4090",
        nvmlDeviceGetUUID=lambda h: f"GPU-{h}",
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(used=2048 * 1024**2, total=24564 * 1024**2),
        nvmlDeviceGetUtilizationRates=lambda h: types.SimpleNamespace(gpu=87, memory=40),
        nvmlDeviceGetTemperature=lambda h, sensor: 71,
        nvmlDeviceGetPowerUsage=no_power if count == 1 else (lambda h: 312_500),
    )


def test_gpu_sampler_reads_devices_and_leaves_unsupported_fields_empty(monkeypatch) -> None:
    fake = _fake_nvml(count=1)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    with GpuSampler() as sampler:
        status = sampler.sample()
        sampler.sample()
    assert status.available and status.reason is None
    assert status.driver_version == "580.65.06"
    assert status.cuda_driver_version == "13.0"
    assert status.gpus == (
        GpuSample(
            index=0,
            name="NVIDIA RTX 4090",
            memory_used_mb=2048.0,
            memory_total_mb=24564.0,
            utilization_pct=87.0,
            temperature_c=71.0,
            power_w=None,
            uuid="GPU-0",
        ),
    )
    assert fake.calls == {"init": 1, "shutdown": 1}


def test_gpu_sampler_with_driver_but_no_gpu(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _fake_nvml(count=0))
    status = GpuSampler().sample()
    assert not status.available
    assert status.reason == "NVIDIA driver present but no GPU detected"
    assert status.driver_version == "580.65.06"


def test_gpu_sampler_remembers_a_failed_init_instead_of_retrying_every_poll(monkeypatch) -> None:
    fake = _fake_nvml(init_error=_LibraryNotFound("NVML Shared Library Not Found"))
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    sampler = GpuSampler(retry_after_s=3600)
    statuses = [sampler.sample() for _ in range(5)]
    assert fake.calls["init"] == 1
    assert {s.reason for s in statuses} == {"no NVIDIA driver found (NVML library not loadable)"}
    assert GpuSampler(retry_after_s=0).sample().available is False


def test_sample_system_numbers_are_sane() -> None:
    sample_system()  # psutil measures CPU since the previous call
    sample = sample_system(os.getpid(), cpu_interval=0.05)
    assert isinstance(sample, SystemSample)
    assert 0.0 <= sample.cpu_percent <= 100.0
    assert sample.cpu_count >= 1
    assert 0 < sample.ram_used_mb <= sample.ram_total_mb
    assert 10 < sample.process_rss_mb < sample.ram_total_mb
    if sample.load_avg is not None:
        assert len(sample.load_avg) == 3 and all(x >= 0 for x in sample.load_avg)


def test_sample_system_for_a_process_that_has_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert sample_system(child.pid).process_rss_mb is None


@pytest.fixture(scope="module")
def info() -> dict:
    return sysinfo()


def test_sysinfo_has_every_section_and_is_json(info) -> None:
    assert set(info) >= {"versions", "platform", "cpu", "memory", "gpu", "torch", "bitsandbytes"}
    json.dumps(info)
    assert info["cpu"]["cores_logical"] >= 1
    assert info["memory"]["total_mb"] > 0
    assert set(info["gpu"]) == {"available", "reason", "driver_version", "cuda_driver_version", "gpus"}
    assert set(info["torch"]) >= {"cuda_available", "cuda_version", "device_count", "bf16_supported"}
    assert isinstance(info["bitsandbytes"]["usable_4bit"], bool)


def test_sysinfo_versions_are_the_installed_ones(info) -> None:
    versions = info["versions"]
    assert set(versions) == {"python", *PACKAGES}
    for name in PACKAGES:
        try:
            expected = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            expected = "not installed"
            if name == "tui-ft":
                from tui_ft import __version__ as expected
        assert versions[name] == expected, name
    assert versions["python"] == ".".join(map(str, sys.version_info[:3]))


def test_sysinfo_torch_view_matches_torch(info) -> None:
    import torch

    assert info["torch"]["cuda_available"] == torch.cuda.is_available()
    assert info["torch"]["cuda_version"] == torch.version.cuda
    assert info["torch"]["device_count"] == (torch.cuda.device_count() if torch.cuda.is_available() else 0)


@pytest.mark.skipif(not NO_NVIDIA, reason="this machine has an NVIDIA driver")
def test_sysinfo_without_gpu_says_why(info) -> None:
    assert info["gpu"]["available"] is False
    assert "NVIDIA driver" in info["gpu"]["reason"]
    assert info["torch"]["cuda_available"] is False


def test_format_sysinfo_is_readable(info) -> None:
    console = Console(width=100, record=True, color_system=None)
    console.print(format_sysinfo(info))
    text = console.export_text()
    for word in ("Versions", "transformers", info["versions"]["transformers"], "GPU (NVML)", "4-bit"):
        assert word in text
    if not info["gpu"]["available"]:
        assert info["gpu"]["reason"] in text
