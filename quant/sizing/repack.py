"""Which weights llama.cpp's CPU backend repacks into an anonymous copy, for a given CPU.

ggml-cpu has an extra buffer type, CPU_REPACK (ggml/src/ggml-cpu/repack.cpp), that llama.cpp tries first
for every weight a matrix multiplication reads (`MUL_MAT` with a 2-D weight, `MUL_MAT_ID` with a 3-D expert
tensor; never `token_embd`, which is read by `GET_ROWS`). `ggml_repack_get_optimal_repack_type` accepts a
weight when its type has an interleaved kernel for the CPU features the library was *compiled* with and its
row count (`ne[1]`) is a multiple of the kernel's interleave. Such a weight is read once at load time and
rewritten into a buffer of the same size (`get_alloc_size` is the tensor's own size), so it costs anonymous
memory while its file pages are only read once; the others are used in place.

The rules below are that function's, for x86-64 and ARM (RISC-V vector builds and z/Arch are left out; so
is the AMX buffer type of Xeon CPUs with AMX-INT8, which llama.cpp only builds with `__AMX_INT8__`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# llama.cpp's feature names, as `llama_print_system_info()` prints them for the CPU backend
# ("CPU : SSE3 = 1 | ... | AVX2 = 1 | AVX512 = 1 | ... | REPACK = 1 |").
LLAMA_FEATURES = ("AVX2", "AVX512", "NEON", "DOTPROD", "MATMUL_INT8", "SVE", "REPACK")

# /proc/cpuinfo flags (x86 "flags", ARM "Features") → the feature a native build of llama.cpp compiles in.
CPUINFO_TO_LLAMA = {
    "avx2": "AVX2",
    "avx512f": "AVX512",
    "asimd": "NEON",
    "neon": "NEON",
    "asimddp": "DOTPROD",
    "i8mm": "MATMUL_INT8",
    "sve": "SVE",
}


@dataclass(frozen=True)
class CpuRepack:
    """The repack rules of one CPU build: type → the row multiple its kernel needs."""

    cpu: str  # what the rules were derived from, in words
    rows: tuple[tuple[str, int], ...] = ()  # (ggml type, ne[1] multiple its kernel needs)

    def repacks(self, ggml_type: str, n_rows: int) -> bool:
        """Whether a matmul weight of this type and `ne[1]` gets a CPU_REPACK copy."""
        multiple = dict(self.rows).get(ggml_type)
        return multiple is not None and n_rows % multiple == 0

    @property
    def types(self) -> tuple[str, ...]:
        return tuple(t for t, _ in self.rows)

    def to_dict(self) -> dict[str, object]:
        return {"cpu": self.cpu, "types": dict(self.rows)}


def repack_rules(features: Iterable[str], *, cpu: str | None = None) -> CpuRepack:
    """The CPU_REPACK rules for a llama.cpp build with these features (names of LLAMA_FEATURES).

    Follows ggml_repack_get_optimal_repack_type: the first kernel whose features are present wins, and its
    interleave decides the row multiple. Without "REPACK" (a build with GGML_CPU_REPACK=OFF) nothing is.
    """
    f = {x.upper() for x in features}
    label = cpu or describe(f)
    if "REPACK" not in f:
        return CpuRepack(label + ", repacking off")
    rows: dict[str, int] = {}
    neon = "NEON" in f
    i8mm = neon and "MATMUL_INT8" in f
    dot = neon and "DOTPROD" in f
    if "AVX2" in f:
        rows |= {"Q4_0": 8, "Q4_K": 8, "IQ4_NL": 8, "MXFP4": 8}
        if "AVX512" in f:
            rows["Q2_K"] = 8
    if i8mm or dot:
        # Q4_0: 8x8 needs AVX2 or 256-bit SVE (not known here), else NEON's 4-row kernels take it
        rows.setdefault("Q4_0", 4)
        rows.setdefault("Q4_K", 8)
        rows |= {"Q5_K": 8, "Q6_K": 8, "Q8_0": 4, "Q1_0": 4}
        if dot:
            rows.setdefault("IQ4_NL", 4)
            rows.setdefault("MXFP4", 4)
    return CpuRepack(label, tuple(rows.items()))


def describe(features: set[str]) -> str:
    if "AVX512" in features:
        return "x86-64 with AVX-512"
    if "AVX2" in features:
        return "x86-64 with AVX2"
    if "NEON" in features:
        extra = [n for n, k in (("dotprod", "DOTPROD"), ("i8mm", "MATMUL_INT8")) if k in features]
        return "ARM NEON" + (f" with {' and '.join(extra)}" if extra else "")
    return "a CPU without repacked kernels"


def features_from_cpuinfo(flags: Iterable[str]) -> set[str]:
    """What a native llama.cpp build compiles in on a CPU with these /proc/cpuinfo flags."""
    return {CPUINFO_TO_LLAMA[x] for x in flags if x in CPUINFO_TO_LLAMA} | {"REPACK"}


def features_from_system_info(text: str) -> set[str]:
    """Features from `llama_print_system_info()`: the CPU section's `NAME = 1` entries (compile-time truth)."""
    out: set[str] = set()
    repack_off = False
    for part in text.replace("|", "\n").splitlines():
        name, sep, value = part.partition("=")
        name = name.split(":")[-1].strip().upper()
        if sep and name in LLAMA_FEATURES:
            if value.strip() == "1":
                out.add(name)
            elif name == "REPACK":
                repack_off = True
    if not repack_off:
        out.add("REPACK")  # older builds do not print it; repacking has been on by default since it exists
    return out


X86_AVX2 = repack_rules({"AVX2", "REPACK"})
X86_AVX512 = repack_rules({"AVX2", "AVX512", "REPACK"})
ARM_I8MM = repack_rules({"NEON", "DOTPROD", "MATMUL_INT8", "REPACK"})
NO_REPACK = CpuRepack("no repacking")
