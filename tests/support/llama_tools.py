"""llama.cpp's own command-line tools (llama-quantize, llama-imatrix, llama-export-lora, ...) for opt-in checks.

The llama-cpp-python wheel ships the libraries but not the tools, so they are built with CMake from the
llama.cpp tree vendored in the sdist of the installed llama-cpp-python version. Where they come from, first
match wins:

- `HUBTUI_LLAMA_TOOLS`: a directory holding the built binaries (e.g. a CMake build's `bin/`);
- `~/.cache/hubtui/llama-tools/<version>/build/bin`, built there by `build_tools()` (or
  `python tests/support/llama_tools.py [TARGET ...]`).

The source tree comes from `HUBTUI_LLAMA_CPP_SRC` (the sdist's `vendor/llama.cpp`), or the sdist is fetched
with `pip download` (PyPI is reachable here and in CI) and unpacked next to the cached build.

Tests call `find_tool(name)` and skip with the reason when it returns None; benchmark scripts call
`build_tools()` once, which takes about ten minutes on two cores.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from importlib import metadata
from pathlib import Path

DEFAULT_TARGETS = (
    "llama-quantize",
    "llama-imatrix",
    "llama-export-lora",
    "llama-gguf-split",
    "llama-perplexity",
)


def llama_cpp_python_version() -> str:
    return metadata.version("llama-cpp-python")


def cache_dir() -> Path:
    return Path.home() / ".cache" / "hubtui" / "llama-tools" / llama_cpp_python_version()


def tools_dir() -> Path:
    env = os.environ.get("HUBTUI_LLAMA_TOOLS")
    return Path(env) if env else cache_dir() / "build" / "bin"


def find_tool(name: str) -> Path | None:
    """The path of a built llama.cpp tool, or None when it has not been built."""
    path = tools_dir() / name
    return path if path.is_file() and os.access(path, os.X_OK) else None


def source_tree(*, fetch: bool = True) -> Path | None:
    """The vendored llama.cpp tree of the installed llama-cpp-python's sdist (fetched once when allowed)."""
    env = os.environ.get("HUBTUI_LLAMA_CPP_SRC")
    if env:
        return Path(env)
    version = llama_cpp_python_version()
    tree = cache_dir() / f"llama_cpp_python-{version}" / "vendor" / "llama.cpp"
    if tree.is_dir():
        return tree
    if not fetch:
        return None
    cache_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                f"llama-cpp-python=={version}",
                "-d",
                tmp,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        sdist = next(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter="data")
        os.replace(Path(tmp) / f"llama_cpp_python-{version}", cache_dir() / f"llama_cpp_python-{version}")
    return tree


def build_tools(targets: tuple[str, ...] = DEFAULT_TARGETS) -> Path:
    """Build the missing `targets` into the cache (unless HUBTUI_LLAMA_TOOLS names a directory) and return it."""
    missing = [t for t in targets if find_tool(t) is None]
    if not missing:
        return tools_dir()
    if os.environ.get("HUBTUI_LLAMA_TOOLS"):
        raise FileNotFoundError(f"HUBTUI_LLAMA_TOOLS has no {', '.join(missing)}")
    src = source_tree()
    assert src is not None
    build = cache_dir() / "build"
    build.mkdir(parents=True, exist_ok=True)
    if shutil.which("cmake") is None:
        raise FileNotFoundError("cmake is needed to build llama.cpp's tools")
    flags = [
        "-DCMAKE_BUILD_TYPE=Release",
        "-DLLAMA_CURL=OFF",
        "-DLLAMA_OPENSSL=OFF",
        "-DLLAMA_BUILD_TESTS=OFF",
        "-DLLAMA_BUILD_SERVER=OFF",
    ]
    subprocess.run(["cmake", "-S", str(src), "-B", str(build), *flags], check=True, stdout=subprocess.DEVNULL)
    jobs = str(len(os.sched_getaffinity(0)))
    subprocess.run(
        ["cmake", "--build", str(build), "-j", jobs, "--target", *missing],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return tools_dir()


if __name__ == "__main__":
    print(build_tools(tuple(sys.argv[1:]) or DEFAULT_TARGETS))
