"""llama.cpp's CPU repack rules (ggml-cpu/repack.cpp) and how this machine's are detected."""

from __future__ import annotations

from pathlib import Path

import pytest

from quant.sizing.hardware import Probes, detect_hardware
from quant.sizing.repack import (
    ARM_I8MM,
    NO_REPACK,
    X86_AVX2,
    X86_AVX512,
    features_from_cpuinfo,
    features_from_system_info,
    repack_rules,
)
from tests.test_hardware import fake_psutil


@pytest.mark.parametrize(
    ("rules", "ggml_type", "rows", "repacked"),
    [
        (X86_AVX2, "Q4_K", 4096, True),
        (X86_AVX2, "Q4_K", 4100, False),  # the 8x8 kernel needs a multiple of 8 rows
        (X86_AVX2, "Q4_0", 8, True),
        (X86_AVX2, "IQ4_NL", 16, True),
        (X86_AVX2, "Q5_K", 4096, False),  # no x86 kernel for Q5_K, Q6_K or Q8_0
        (X86_AVX2, "Q6_K", 4096, False),
        (X86_AVX2, "Q8_0", 4096, False),
        (X86_AVX2, "Q2_K", 4096, False),  # Q2_K's kernel needs AVX-512
        (X86_AVX512, "Q2_K", 4096, True),
        (ARM_I8MM, "Q4_0", 4, True),  # NEON's 4-row kernels
        (ARM_I8MM, "Q4_K", 4, False),  # Q4_K's still need 8 rows
        (ARM_I8MM, "Q5_K", 4096, True),
        (ARM_I8MM, "Q6_K", 4096, True),
        (ARM_I8MM, "Q8_0", 12, True),
        (ARM_I8MM, "Q2_K", 4096, False),
        (ARM_I8MM, "F16", 4096, False),
        (NO_REPACK, "Q4_K", 4096, False),
    ],
)
def test_repack_rules(rules, ggml_type: str, rows: int, repacked: bool) -> None:
    assert rules.repacks(ggml_type, rows) is repacked


def test_rules_follow_the_build_features() -> None:
    assert repack_rules({"AVX2", "REPACK"}) == X86_AVX2
    assert repack_rules({"AVX2", "AVX512", "REPACK"}).types == (*X86_AVX2.types, "Q2_K")
    assert repack_rules({"AVX2"}).types == ()  # built with GGML_CPU_REPACK=OFF
    assert repack_rules({"SSE3", "REPACK"}).types == ()  # a build without AVX2 has no x86 kernel
    dot = repack_rules({"NEON", "DOTPROD", "REPACK"})  # Apple M1: dotprod, no i8mm
    assert set(dot.types) == set(ARM_I8MM.types) and dot.cpu == "ARM NEON with dotprod"
    assert repack_rules({"NEON", "REPACK"}).types == ()  # plain NEON: none of the interleaved kernels


def test_features_from_llama_system_info() -> None:
    info = (
        "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX_VNNI = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | AVX512 = 1 "
        "| AVX512_VBMI = 1 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 | "
    )
    assert features_from_system_info(info) == {"AVX2", "AVX512", "REPACK"}
    assert features_from_system_info(info.replace("REPACK = 1", "REPACK = 0")) == {"AVX2", "AVX512"}
    arm = "CPU : NEON = 1 | ARM_FMA = 1 | FP16_VA = 1 | DOTPROD = 1 | MATMUL_INT8 = 1 | ACCELERATE = 1 |"
    assert features_from_system_info(arm) == {"NEON", "DOTPROD", "MATMUL_INT8", "REPACK"}


def test_features_from_cpu_flags() -> None:
    assert features_from_cpuinfo(["avx2", "fma", "f16c"]) == {"AVX2", "REPACK"}
    assert features_from_cpuinfo(["asimd", "asimddp", "i8mm"]) == {"NEON", "DOTPROD", "MATMUL_INT8", "REPACK"}


_PS = fake_psutil(16 << 30, 8 << 30)


def _root(tmp_path: Path, flags: str) -> Path:
    (tmp_path / "proc").mkdir(exist_ok=True)
    (tmp_path / "proc/cpuinfo").write_text(f"processor\t: 0\nflags\t\t: fpu {flags}\n")
    (tmp_path / "proc/self").mkdir(exist_ok=True)
    (tmp_path / "proc/self/cgroup").write_text("0::/\n")
    return tmp_path


def test_detection_prefers_the_library_over_cpu_flags(tmp_path: Path) -> None:
    root = _root(tmp_path, "avx2 avx512f fma")
    base = Probes(root=root, psutil=_PS, nvml=None, system="Linux", machine="x86_64", environ={})
    from_flags = detect_hardware(base)
    assert from_flags.cpu_features == ["AVX2", "AVX512", "REPACK"]
    assert from_flags.cpu_features_source.startswith("CPU flags")
    # a library built without AVX-512 (say a portable wheel) is what decides, not the CPU
    built = Probes(
        root=root,
        psutil=_PS,
        nvml=None,
        system="Linux",
        machine="x86_64",
        environ={},
        llama_system_info=lambda: "CPU : AVX = 1 | AVX2 = 1 | REPACK = 1 |",
    )
    hw = detect_hardware(built)
    assert hw.cpu_features == ["AVX2", "REPACK"] and hw.cpu_features_source == "llama.cpp build"
    from quant.sizing.profiles import machine_target

    assert machine_target(hw).repack == X86_AVX2
    assert any("repacks Q4_0, Q4_K" in n for n in machine_target(hw).assumptions)


def test_detection_on_apple_silicon_reads_sysctl() -> None:
    answers = {"hw.optional.arm.FEAT_DotProd": "1", "hw.optional.arm.FEAT_I8MM": "1"}
    probes = Probes(
        psutil=_PS,
        nvml=None,
        system="Darwin",
        machine="arm64",
        environ={},
        sysctl=answers.get,
        metal_budget=lambda: 10 << 30,
    )
    hw = detect_hardware(probes)
    assert set(hw.cpu_features) == {"NEON", "DOTPROD", "MATMUL_INT8", "REPACK"}
    assert repack_rules(hw.cpu_features).types == ARM_I8MM.types


def test_profiles_state_their_cpu() -> None:
    from quant.sizing.profiles import PROFILES

    assert PROFILES["laptop-8g"].repack == X86_AVX2
    assert PROFILES["mac-m-16g"].repack == ARM_I8MM
    for profile in PROFILES.values():
        assert any(note.startswith("CPU: ") and "repacks" in note for note in profile.assumptions)
