"""What memory this machine can give a model: RAM (container limits included), GPUs, offload support.

Sizing tools most often go wrong here (docs/sizing.md): host RAM read inside a container, GPUs
summed, total instead of free VRAM, Apple's Metal working-set cap ignored. Every probe is a field of
`Probes`, so tests can simulate any machine (a fake /sys tree, a fake NVML module, a fake psutil).
"""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

GIB = 1 << 30
MIB = 1 << 20

# cgroup v1 reports "no limit" as a huge page-aligned number (e.g. 9223372036854771712).
_V1_UNLIMITED = 1 << 62

# Ollama's integrated-GPU rule (discover/amd.go): such "VRAM" is really system RAM.
_IGPU_MAX_VRAM = 4 * GIB
_IGPU_MIN_GTT = 8 * GIB


@dataclass(frozen=True)
class GPU:
    """One device as the runtime would see it. `free` is what sizing uses, never `total`."""

    index: int
    vendor: str  # "nvidia", "amd" or "apple"
    name: str
    total: int
    free: int
    unified: bool = False  # shares one pool with system RAM (Apple Silicon)
    integrated: bool = False  # an iGPU whose memory is system RAM: not an offload target
    source: str = ""  # where the figures came from (NVML, sysfs, Metal, heuristic)


@dataclass(frozen=True)
class CgroupLimit:
    """The tightest memory limit over this process's cgroup and its ancestors."""

    version: int
    path: str  # the cgroup directory holding the limit
    limit: int
    usage: int
    inactive_file: int

    @property
    def available(self) -> int:
        """limit − (usage − inactive file pages): page cache can be reclaimed, the rest cannot."""
        return max(0, self.limit - max(0, self.usage - self.inactive_file))


@dataclass
class Hardware:
    """The detected machine; `ram_available` already honours any cgroup limit."""

    system: str
    machine: str
    ram_total: int  # host total, capped by the cgroup limit when there is one
    ram_available: int  # what a new process can use now
    host_ram_total: int
    host_ram_available: int
    swap_total: int  # reported, never counted
    swap_free: int
    cgroup: CgroupLimit | None
    gpus: list[GPU]
    gpu_offload: bool | None  # can the installed llama-cpp-python offload? None: not probed
    notes: list[str] = field(default_factory=list)
    cpu_flags: list[str] = field(default_factory=list)  # the SIMD flags llama.cpp's CPU backend keys on
    # llama.cpp's CPU features (AVX2, AVX512, NEON, DOTPROD, MATMUL_INT8, REPACK, ...): what decides its
    # repacking; from the installed library's build when it could be asked, else from the CPU's flags
    cpu_features: list[str] = field(default_factory=list)
    cpu_features_source: str = ""

    @property
    def offload_gpus(self) -> list[GPU]:
        """GPUs a model can be offloaded to (integrated parts excluded), each its own budget."""
        return [g for g in self.gpus if not g.integrated]

    @property
    def unified_memory(self) -> bool:
        return any(g.unified for g in self.gpus)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["cgroup"] = (
            None if self.cgroup is None else {**asdict(self.cgroup), "available": self.cgroup.available}
        )
        out["unified_memory"] = self.unified_memory
        return out


def _default_sysctl(name: str) -> str | None:
    try:
        out = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _default_metal_budget() -> int | None:
    """`MTLDevice.recommendedMaxWorkingSetSize` through pyobjc, when it is installed."""
    try:
        import Metal  # type: ignore[import-not-found]
    except ImportError:
        return None
    device = Metal.MTLCreateSystemDefaultDevice()
    return int(device.recommendedMaxWorkingSetSize()) if device is not None else None


def _default_nvml() -> Any:
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


@dataclass
class Probes:
    """Where detection looks. The defaults read the real machine; tests replace any of them."""

    root: Path = Path("/")  # prefix for /proc and /sys
    psutil: Any = None  # module-like with virtual_memory() and swap_memory(); None → psutil
    nvml: Any = "auto"  # pynvml-like module; None → no NVML library; "auto" → import pynvml
    system: str = field(default_factory=platform.system)
    machine: str = field(default_factory=platform.machine)
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    sysctl: Callable[[str], str | None] = _default_sysctl
    metal_budget: Callable[[], int | None] = _default_metal_budget
    gpu_offload: Callable[[], bool] | None = None  # e.g. llama_cpp.llama_supports_gpu_offload
    llama_system_info: Callable[[], str] | None = None  # e.g. llama_cpp.llama_print_system_info, decoded


# -- RAM and cgroups ------------------------------------------------------------------------------


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _stat_value(path: Path, *keys: str) -> int:
    """The first of `keys` found in a memory.stat file (0 when none is)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return 0
    values = dict(line.split(None, 1) for line in lines if " " in line)
    for key in keys:
        if key in values:
            try:
                return int(values[key])
            except ValueError:
                return 0
    return 0


def _own_cgroups(root: Path) -> dict[int, str]:
    """{1: v1 memory cgroup path, 2: v2 cgroup path} from /proc/self/cgroup."""
    try:
        lines = (root / "proc/self/cgroup").read_text().splitlines()
    except OSError:
        return {}
    found: dict[int, str] = {}
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hier, controllers, path = parts
        if hier == "0" and controllers == "":
            found[2] = path
        elif "memory" in controllers.split(","):
            found[1] = path
    return found


def _walk_up(mount: Path, cg_path: str) -> list[Path]:
    """Our cgroup directory and every ancestor up to the mount point, innermost first.

    Inside a cgroup namespace /proc/self/cgroup can name a path that does not exist under the
    mount (the container sees its own cgroup as the mount root); then only the mount root counts.
    """
    rel = cg_path.strip("/")
    start = mount / rel if rel else mount
    if not start.is_dir():
        start = mount
    dirs = [start]
    while dirs[-1] != mount and mount in dirs[-1].parents:
        dirs.append(dirs[-1].parent)
    return dirs


def _cgroup_levels(root: Path) -> list[CgroupLimit]:
    own = _own_cgroups(root)
    levels: list[CgroupLimit] = []
    base = root / "sys/fs/cgroup"
    if 1 in own and (base / "memory").is_dir():
        for d in _walk_up(base / "memory", own[1]):
            limit = _read_int(d / "memory.limit_in_bytes")
            if limit is None or limit >= _V1_UNLIMITED:
                continue
            usage = _read_int(d / "memory.usage_in_bytes") or 0
            inactive = _stat_value(d / "memory.stat", "total_inactive_file", "inactive_file")
            levels.append(CgroupLimit(1, "/" + str(d.relative_to(root)), limit, usage, inactive))
    if 2 in own:
        for mount in (base, base / "unified"):
            if not (mount / "cgroup.controllers").is_file():
                continue
            for d in _walk_up(mount, own[2]):
                limit = _read_int(d / "memory.max")
                if limit is None:
                    continue
                usage = _read_int(d / "memory.current") or 0
                inactive = _stat_value(d / "memory.stat", "inactive_file")
                levels.append(CgroupLimit(2, "/" + str(d.relative_to(root)), limit, usage, inactive))
            break
    return levels


def detect_cgroup_limit(root: Path = Path("/")) -> CgroupLimit | None:
    """The level that leaves the least room, over this process's cgroup and its ancestors (v1 and v2)."""
    levels = _cgroup_levels(root)
    return min(levels, key=lambda c: (c.available, c.limit)) if levels else None


# -- GPUs -----------------------------------------------------------------------------------------


def _visible_nvidia(environ: Mapping[str, str], count: int, uuids: list[str]) -> list[int]:
    """NVML indices that CUDA_VISIBLE_DEVICES exposes, in CUDA's order (an invalid entry ends the list)."""
    spec = environ.get("CUDA_VISIBLE_DEVICES")
    if spec is None:
        return list(range(count))
    chosen: list[int] = []
    for item in (s.strip() for s in spec.split(",")):
        if item.isdigit() or (item.startswith("-") and item[1:].isdigit()):
            idx = int(item)
            if not 0 <= idx < count:
                break
        else:
            matches = [i for i, u in enumerate(uuids) if item and u.startswith(item)]
            if len(matches) != 1:
                break
            idx = matches[0]
        if idx in chosen:
            break
        chosen.append(idx)
    return chosen


def _nvidia_gpus(nvml: Any, environ: Mapping[str, str], notes: list[str]) -> list[GPU]:
    if nvml is None:
        notes.append("NVIDIA: NVML library (nvidia-ml-py) not available")
        return []
    error = getattr(nvml, "NVMLError", Exception)
    try:
        nvml.nvmlInit()
    except error as exc:
        notes.append(f"NVIDIA: NVML not usable ({exc}); no NVIDIA driver?")
        return []
    try:
        count = nvml.nvmlDeviceGetCount()
        handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        uuids = [_text(nvml.nvmlDeviceGetUUID(h)) for h in handles]
        gpus = []
        for cuda_index, nvml_index in enumerate(_visible_nvidia(environ, count, uuids)):
            h = handles[nvml_index]
            try:
                mem = nvml.nvmlDeviceGetMemoryInfo(h, version=nvml.nvmlMemory_v2)
            except (error, TypeError, AttributeError):
                mem = nvml.nvmlDeviceGetMemoryInfo(h)
            gpus.append(
                GPU(
                    cuda_index,
                    "nvidia",
                    _text(nvml.nvmlDeviceGetName(h)),
                    int(mem.total),
                    int(mem.free),
                    source="NVML",
                )
            )
        if len(gpus) < count:
            notes.append(f"NVIDIA: CUDA_VISIBLE_DEVICES exposes {len(gpus)} of {count} GPUs")
        return gpus
    except error as exc:
        notes.append(f"NVIDIA: NVML query failed ({exc})")
        return []
    finally:
        with contextlib.suppress(error):
            nvml.nvmlShutdown()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _amd_gpus(root: Path, notes: list[str]) -> list[GPU]:
    drm = root / "sys/class/drm"
    gpus: list[GPU] = []
    if not drm.is_dir():
        return gpus
    for card in sorted(drm.glob("card[0-9]*")):
        dev = card / "device"
        if "-" in card.name or _read_text(dev / "vendor") != "0x1002":
            continue
        total = _read_int(dev / "mem_info_vram_total")
        used = _read_int(dev / "mem_info_vram_used")
        if total is None or used is None:
            continue
        gtt = _read_int(dev / "mem_info_gtt_total") or 0
        integrated = total <= _IGPU_MAX_VRAM and gtt >= _IGPU_MIN_GTT and gtt >= 4 * total
        name = _read_text(dev / "product_name") or f"AMD GPU ({card.name})"
        gpus.append(
            GPU(len(gpus), "amd", name, total, max(0, total - used), integrated=integrated, source="sysfs")
        )
        if integrated:
            notes.append(f"AMD: {name} is an integrated GPU; its memory is system RAM, not counted as VRAM")
    return gpus


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def apple_metal_budget(ram_total: int, probes: Probes) -> tuple[int, str]:
    """Metal's working-set budget: the device's own figure, else the sysctl, else a labelled heuristic."""
    budget = probes.metal_budget()
    if budget:
        return int(budget), "Metal recommendedMaxWorkingSetSize"
    wired = probes.sysctl("iogpu.wired_limit_mb")
    if wired and wired.isdigit() and int(wired) > 0:
        return int(wired) * MIB, "sysctl iogpu.wired_limit_mb"
    return metal_default_budget(ram_total), f"heuristic: {'2/3' if ram_total <= 36 * GIB else '3/4'} of RAM"


def metal_default_budget(ram_total: int) -> int:
    """Metal's default working-set cap: about 2/3 of RAM up to 36 GB, 3/4 above."""
    return ram_total * 2 // 3 if ram_total <= 36 * GIB else ram_total * 3 // 4


_SIMD_FLAGS = {
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx512vnni",
    "f16c",
    "fma",
    "asimddp",
    "i8mm",
    "sve",
    "neon",
    "asimd",
}


def _darwin_flags(probes: Probes) -> list[str]:
    """Apple Silicon's dot-product and int8 matmul extensions, from sysctl hw.optional.arm.*."""
    if probes.machine != "arm64":
        return []
    flags = ["asimd"]
    for flag, key in (("asimddp", "FEAT_DotProd"), ("i8mm", "FEAT_I8MM")):
        if probes.sysctl(f"hw.optional.arm.{key}") == "1":
            flags.append(flag)
    return flags


def _cpu_features(flags: list[str], probes: Probes, notes: list[str]) -> tuple[list[str], str]:
    """llama.cpp's CPU features: its own build's answer when the probe can ask it, else the CPU flags."""
    from quant.sizing.repack import features_from_cpuinfo, features_from_system_info

    if probes.llama_system_info is not None:
        try:
            return sorted(features_from_system_info(probes.llama_system_info())), "llama.cpp build"
        except Exception as exc:  # a broken runtime must not stop detection
            notes.append(f"llama.cpp system info probe failed: {type(exc).__name__}")
    return sorted(features_from_cpuinfo(flags)), "CPU flags (assumes llama.cpp built for this CPU)"


def _cpu_flags(root: Path) -> list[str]:
    """SIMD flags from /proc/cpuinfo ("flags" on x86, "Features" on ARM): they decide llama.cpp's CPU repacking."""
    try:
        text = (root / "proc/cpuinfo").read_text()
    except OSError:
        return []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return sorted(set(value.split()) & _SIMD_FLAGS)
    return []


# -- entry point ----------------------------------------------------------------------------------


def detect_hardware(probes: Probes | None = None) -> Hardware:
    """Detect RAM, container limits and GPUs. Never raises for a missing probe: it notes it instead."""
    probes = probes or Probes()
    ps = probes.psutil
    if ps is None:
        import psutil

        ps = psutil
    vm = ps.virtual_memory()
    swap = ps.swap_memory()
    notes: list[str] = []
    cgroup = detect_cgroup_limit(probes.root) if probes.system == "Linux" else None
    ram_total, ram_available = int(vm.total), int(vm.available)
    if cgroup is not None and (cgroup.limit < ram_total or cgroup.available < ram_available):
        ram_total = min(ram_total, cgroup.limit)
        ram_available = min(ram_available, cgroup.available)
        notes.append(f"RAM capped by cgroup v{cgroup.version} limit at {cgroup.path}")
    if swap.total:
        notes.append("swap is reported but not counted: a model in swap is too slow to use")

    gpus: list[GPU] = []
    if probes.system == "Darwin" and probes.machine == "arm64":
        budget, source = apple_metal_budget(ram_total, probes)
        gpus.append(
            GPU(
                0,
                "apple",
                "Apple Silicon GPU",
                budget,
                min(budget, ram_available),
                unified=True,
                source=source,
            )
        )
        notes.append("Apple unified memory: the GPU budget and RAM are one pool, never added")
    else:
        nvml = _default_nvml() if probes.nvml == "auto" else probes.nvml
        gpus.extend(_nvidia_gpus(nvml, probes.environ, notes))
        if probes.system == "Linux":
            amd = _amd_gpus(probes.root, notes)
            gpus.extend(
                GPU(len(gpus) + i, g.vendor, g.name, g.total, g.free, g.unified, g.integrated, g.source)
                for i, g in enumerate(amd)
            )
    offload = None
    if probes.gpu_offload is not None:
        try:
            offload = bool(probes.gpu_offload())
        except Exception as exc:  # a broken runtime must not stop detection
            notes.append(f"llama.cpp offload probe failed: {type(exc).__name__}")
    if offload is False and any(not g.integrated for g in gpus):
        notes.append("this llama-cpp-python build cannot offload to a GPU: models run on CPU")
    flags = (
        _cpu_flags(probes.root)
        if probes.system == "Linux"
        else _darwin_flags(probes)
        if probes.system == "Darwin"
        else []
    )
    features, features_source = _cpu_features(flags, probes, notes)
    return Hardware(
        system=probes.system,
        machine=probes.machine,
        ram_total=ram_total,
        ram_available=ram_available,
        host_ram_total=int(vm.total),
        host_ram_available=int(vm.available),
        swap_total=int(swap.total),
        swap_free=int(swap.free),
        cgroup=cgroup,
        gpus=gpus,
        gpu_offload=offload,
        notes=notes,
        cpu_flags=flags,
        cpu_features=features,
        cpu_features_source=features_source,
    )
