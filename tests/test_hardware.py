"""Hardware detection on simulated machines (fake /proc + /sys trees, fake NVML, fake psutil)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from quant.sizing.hardware import GIB, MIB, Probes, detect_cgroup_limit, detect_hardware
from tests.support.cli_helpers import Cli


def fake_psutil(total: int, available: int, swap: int = 0) -> SimpleNamespace:
    return SimpleNamespace(
        virtual_memory=lambda: SimpleNamespace(total=total, available=available),
        swap_memory=lambda: SimpleNamespace(total=swap, free=swap),
    )


class FakeNVMLError(Exception):
    pass


class FakeNVML:
    """The slice of pynvml that detection calls; `devices` are (name, uuid, total, free)."""

    NVMLError = FakeNVMLError
    nvmlMemory_v2 = 0x02000028

    def __init__(self, devices: list[tuple[str, str, int, int]], *, library: bool = True) -> None:
        self.devices = devices
        self.library = library
        self.shutdown = False

    def nvmlInit(self) -> None:
        if not self.library:
            raise FakeNVMLError("NVML Shared Library Not Found")

    def nvmlShutdown(self) -> None:
        self.shutdown = True

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetName(self, h: int) -> bytes:
        return self.devices[h][0].encode()

    def nvmlDeviceGetUUID(self, h: int) -> str:
        return self.devices[h][1]

    def nvmlDeviceGetMemoryInfo(self, h: int, version: int | None = None) -> SimpleNamespace:
        assert version == self.nvmlMemory_v2
        _, _, total, free = self.devices[h]
        return SimpleNamespace(total=total, free=free, used=total - free, reserved=0)


def linux(tmp_path: Path, *, nvml=None, psutil_=None, environ=None) -> Probes:
    return Probes(
        root=tmp_path,
        psutil=psutil_ or fake_psutil(64 * GIB, 60 * GIB),
        nvml=nvml,
        system="Linux",
        machine="x86_64",
        environ=environ or {},
        sysctl=lambda name: pytest.fail("sysctl probed on Linux"),
        metal_budget=lambda: pytest.fail("Metal probed on Linux"),
    )


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


RTX4090 = ("NVIDIA GeForce RTX 4090", "GPU-aaaa-1111", 24 * GIB, int(22.5 * GIB))
RTX3060 = ("NVIDIA GeForce RTX 3060", "GPU-bbbb-2222", 12 * GIB, 11 * GIB)


def test_24gb_nvidia_box_reports_free_not_total(tmp_path: Path) -> None:
    nvml = FakeNVML([RTX4090])
    hw = detect_hardware(linux(tmp_path, nvml=nvml))
    assert [(g.vendor, g.name, g.total, g.free) for g in hw.gpus] == [
        ("nvidia", RTX4090[0], 24 * GIB, int(22.5 * GIB))
    ]
    assert hw.offload_gpus == hw.gpus and not hw.unified_memory
    assert nvml.shutdown
    assert (hw.ram_total, hw.ram_available, hw.cgroup) == (64 * GIB, 60 * GIB, None)


def test_two_mismatched_gpus_stay_separate(tmp_path: Path) -> None:
    hw = detect_hardware(linux(tmp_path, nvml=FakeNVML([RTX4090, RTX3060])))
    assert [(g.index, g.free) for g in hw.gpus] == [(0, int(22.5 * GIB)), (1, 11 * GIB)]
    assert json.loads(json.dumps(hw.to_dict()))["gpus"][1]["name"] == RTX3060[0]


@pytest.mark.parametrize(
    ("visible", "names"),
    [
        ("1", [RTX3060[0]]),
        ("1,0", [RTX3060[0], RTX4090[0]]),
        ("GPU-bbbb", [RTX3060[0]]),
        ("0,7,1", [RTX4090[0]]),  # CUDA stops at the first invalid entry
        ("", []),
        ("-1", []),
    ],
)
def test_cuda_visible_devices(tmp_path: Path, visible: str, names: list[str]) -> None:
    probes = linux(tmp_path, nvml=FakeNVML([RTX4090, RTX3060]), environ={"CUDA_VISIBLE_DEVICES": visible})
    hw = detect_hardware(probes)
    assert [g.name for g in hw.gpus] == names
    assert [g.index for g in hw.gpus] == list(range(len(names)))


def test_cpu_flags_from_cpuinfo(tmp_path: Path) -> None:
    write(tmp_path, "proc/cpuinfo", "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma f16c avx512f\n\n")
    assert detect_hardware(linux(tmp_path)).cpu_flags == ["avx2", "avx512f", "f16c", "fma"]


def test_no_gpu_and_no_nvml_library(tmp_path: Path) -> None:
    hw = detect_hardware(linux(tmp_path, nvml=None))
    assert hw.gpus == [] and any("NVML library" in n for n in hw.notes)
    hw = detect_hardware(linux(tmp_path, nvml=FakeNVML([], library=False)))
    assert hw.gpus == [] and any("NVML not usable" in n for n in hw.notes)


def _container_v2(root: Path, *, limit: int, usage: int, inactive: int, parent_limit: str = "max") -> None:
    write(root, "proc/self/cgroup", "0::/docker/abc\n")
    write(root, "sys/fs/cgroup/cgroup.controllers", "cpu memory\n")
    write(root, "sys/fs/cgroup/docker/memory.max", parent_limit + "\n")
    write(root, "sys/fs/cgroup/docker/memory.current", str(usage + GIB) + "\n")
    write(root, "sys/fs/cgroup/docker/memory.stat", f"anon 1\ninactive_file {inactive}\n")
    write(root, "sys/fs/cgroup/docker/abc/memory.max", f"{limit}\n")
    write(root, "sys/fs/cgroup/docker/abc/memory.current", f"{usage}\n")
    write(root, "sys/fs/cgroup/docker/abc/memory.stat", f"anon 5\nactive_file 9\ninactive_file {inactive}\n")


def test_container_capped_at_4gib_cgroup_v2(tmp_path: Path) -> None:
    _container_v2(tmp_path, limit=4 * GIB, usage=GIB, inactive=512 * MIB)
    hw = detect_hardware(linux(tmp_path, nvml=None))
    assert hw.host_ram_total == 64 * GIB
    assert hw.ram_total == 4 * GIB
    assert hw.ram_available == 4 * GIB - (GIB - 512 * MIB)  # page cache is reclaimable, the rest is not
    assert hw.cgroup is not None and hw.cgroup.version == 2 and hw.cgroup.path == "/sys/fs/cgroup/docker/abc"


def test_tighter_ancestor_limit_wins(tmp_path: Path) -> None:
    _container_v2(tmp_path, limit=16 * GIB, usage=GIB, inactive=0, parent_limit=str(3 * GIB))
    cg = detect_cgroup_limit(tmp_path)
    assert cg is not None and cg.path == "/sys/fs/cgroup/docker" and cg.limit == 3 * GIB
    assert cg.available == 3 * GIB - 2 * GIB  # the parent's usage counts its other children too


def test_container_capped_at_4gib_cgroup_v1_on_an_ancestor(tmp_path: Path) -> None:
    write(tmp_path, "proc/self/cgroup", "9:name=systemd:/\n4:memory:/process_api/xyz\n0::/\n")
    base = "sys/fs/cgroup/memory"
    write(tmp_path, f"{base}/memory.limit_in_bytes", "9223372036854771712\n")  # the "unlimited" sentinel
    write(tmp_path, f"{base}/process_api/memory.limit_in_bytes", f"{4 * GIB}\n")
    write(tmp_path, f"{base}/process_api/memory.usage_in_bytes", f"{GIB}\n")
    write(tmp_path, f"{base}/process_api/memory.stat", f"inactive_file 1\ntotal_inactive_file {256 * MIB}\n")
    write(tmp_path, f"{base}/process_api/xyz/memory.limit_in_bytes", "9223372036854771712\n")
    write(tmp_path, f"{base}/process_api/xyz/memory.usage_in_bytes", "100\n")
    write(tmp_path, "sys/fs/cgroup/unified/cgroup.controllers", "")  # hybrid: v2 mounted without memory
    hw = detect_hardware(linux(tmp_path, nvml=None))
    assert hw.ram_total == 4 * GIB
    assert hw.ram_available == 4 * GIB - (GIB - 256 * MIB)
    assert hw.cgroup.version == 1 and hw.cgroup.path == f"/{base}/process_api"


def test_cgroup_namespace_falls_back_to_the_mount_root(tmp_path: Path) -> None:
    write(tmp_path, "proc/self/cgroup", "0::/kubepods/pod1/ctr\n")  # a host path the container cannot see
    write(tmp_path, "sys/fs/cgroup/cgroup.controllers", "memory\n")
    write(tmp_path, "sys/fs/cgroup/memory.max", f"{2 * GIB}\n")
    write(tmp_path, "sys/fs/cgroup/memory.current", "0\n")
    hw = detect_hardware(linux(tmp_path, nvml=None))
    assert hw.ram_total == 2 * GIB and hw.ram_available == 2 * GIB


def test_unlimited_cgroup_leaves_host_ram(tmp_path: Path) -> None:
    write(tmp_path, "proc/self/cgroup", "0::/user.slice\n")
    write(tmp_path, "sys/fs/cgroup/cgroup.controllers", "memory\n")
    write(tmp_path, "sys/fs/cgroup/user.slice/memory.max", "max\n")
    hw = detect_hardware(linux(tmp_path, nvml=None, psutil_=fake_psutil(32 * GIB, 20 * GIB, swap=8 * GIB)))
    assert (hw.ram_total, hw.ram_available, hw.cgroup) == (32 * GIB, 20 * GIB, None)
    assert hw.swap_total == 8 * GIB and any("swap" in n and "not counted" in n for n in hw.notes)


def _amd_card(root: Path, card: str, vram: int, used: int, gtt: int, name: str | None = None) -> None:
    dev = f"sys/class/drm/{card}/device"
    write(root, f"{dev}/vendor", "0x1002\n")
    write(root, f"{dev}/mem_info_vram_total", f"{vram}\n")
    write(root, f"{dev}/mem_info_vram_used", f"{used}\n")
    write(root, f"{dev}/mem_info_gtt_total", f"{gtt}\n")
    if name:
        write(root, f"{dev}/product_name", name + "\n")


def test_amd_sysfs_discrete_and_integrated(tmp_path: Path) -> None:
    _amd_card(tmp_path, "card0", 16 * GIB, 2 * GIB, 16 * GIB, name="Radeon RX 7800 XT")
    _amd_card(tmp_path, "card1", 512 * MIB, 100 * MIB, 16 * GIB)
    (tmp_path / "sys/class/drm/card0-DP-1").mkdir()  # connector entries are not cards
    write(tmp_path, "sys/class/drm/card2/device/vendor", "0x8086\n")  # an Intel card is skipped
    hw = detect_hardware(linux(tmp_path, nvml=None))
    assert [(g.vendor, g.total, g.free, g.integrated) for g in hw.gpus] == [
        ("amd", 16 * GIB, 14 * GIB, False),
        ("amd", 512 * MIB, 412 * MIB, True),
    ]
    assert [g.name for g in hw.offload_gpus] == ["Radeon RX 7800 XT"]


def _mac(ram: int, *, sysctl: str | None = None, metal: int | None = None) -> Probes:
    return Probes(
        root=Path("/nonexistent"),
        psutil=fake_psutil(ram, ram // 2),
        nvml=FakeNVML([], library=False),
        system="Darwin",
        machine="arm64",
        environ={},
        sysctl=lambda name: sysctl if name == "iogpu.wired_limit_mb" else None,
        metal_budget=lambda: metal,
    )


def test_8gb_apple_laptop_heuristic_budget() -> None:
    hw = detect_hardware(_mac(8 * GIB, sysctl="0"))
    (gpu,) = hw.gpus
    assert gpu.unified and gpu.vendor == "apple" and hw.unified_memory
    assert gpu.total == 8 * GIB * 2 // 3 and "heuristic" in gpu.source
    assert gpu.free == 4 * GIB  # never more than the RAM that is free: one pool
    assert hw.ram_total == 8 * GIB  # and RAM is not increased by the GPU budget


def test_apple_budget_from_sysctl_then_metal() -> None:
    assert detect_hardware(_mac(16 * GIB, sysctl="12288")).gpus[0].total == 12 * GIB
    metal = detect_hardware(_mac(16 * GIB, sysctl="12288", metal=11_453_251_584)).gpus[0]
    assert metal.total == 11_453_251_584 and "Metal" in metal.source
    assert detect_hardware(_mac(64 * GIB)).gpus[0].total == 48 * GIB  # 3/4 above 36 GB


def test_offload_probe(tmp_path: Path) -> None:
    probes = linux(tmp_path, nvml=FakeNVML([RTX3060]))
    probes.gpu_offload = lambda: False
    hw = detect_hardware(probes)
    assert hw.gpu_offload is False and any("cannot offload" in n for n in hw.notes)
    probes.gpu_offload = lambda: True
    assert detect_hardware(probes).gpu_offload is True


def test_hw_command_json_on_this_machine(cli: Cli) -> None:
    res = cli("hw", "--json")
    assert res.code == 0, res.err
    data = res.json()
    assert 0 < data["ram_available"] <= data["ram_total"] <= psutil.virtual_memory().total
    assert data["gpu_offload"] in (True, False)
    assert isinstance(data["gpus"], list)
    text = cli("hw")
    assert text.code == 0 and "RAM" in text.out and "offload" in text.out
