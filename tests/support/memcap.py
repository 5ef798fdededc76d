"""A hard memory cap for a child process: a memory cgroup (v1 or v2) of our own, under our own cgroup.

Sizing claims are checked against the kernel: a configuration the plan says fits must run under a cap
equal to its planned working set, and one it rejects must be OOM-killed or slowed down by paging under a
cap below it. Page cache is charged to the cgroup that first reads a page, so drop a model file's cached
pages (`evict`) before a capped run, or the cap would not see them.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path


class CgroupCap:
    """A child memory cgroup with a hard limit, when this process may create one (`dir` is None otherwise)."""

    def __init__(self, limit: int) -> None:
        from quant.sizing.hardware import _own_cgroups

        own = _own_cgroups(Path("/"))
        self.dir: Path | None = None
        self.version = 0
        name = f"hubtui-cap-{os.getpid()}-{time.monotonic_ns()}"
        candidates = []
        if 1 in own:
            candidates.append(
                (1, Path("/sys/fs/cgroup/memory") / own[1].strip("/") / name, "memory.limit_in_bytes")
            )
        if 2 in own:
            candidates.append((2, Path("/sys/fs/cgroup") / own[2].strip("/") / name, "memory.max"))
        for version, path, limit_file in candidates:
            try:
                path.mkdir()
            except OSError:
                continue
            try:
                (path / limit_file).write_text(str(limit))
                if version == 2:
                    (path / "memory.swap.max").write_text("0")
                else:
                    with contextlib.suppress(OSError):  # no swap accounting: nothing to limit
                        (path / "memory.memsw.limit_in_bytes").write_text(str(limit))
            except OSError:
                path.rmdir()
                continue
            self.dir, self.version = path, version
            break

    def __enter__(self) -> CgroupCap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def enter_cmd(self) -> list[str]:
        """A command prefix that moves the child into the group before it execs the real command."""
        assert self.dir is not None
        return ["sh", "-c", f'echo $$ > "{self.dir}/cgroup.procs" && exec "$@"', "sh"]

    def stats(self) -> dict[str, int]:
        """Peak usage, limit hits, OOM kills and major faults charged to the group."""
        assert self.dir is not None
        out: dict[str, int] = {}
        for name in ("memory.max_usage_in_bytes", "memory.failcnt", "memory.peak"):
            with contextlib.suppress(OSError, ValueError):
                out[name.split(".", 1)[1]] = int((self.dir / name).read_text())
        for name in ("memory.oom_control", "memory.events", "memory.stat"):
            try:
                for line in (self.dir / name).read_text().splitlines():
                    key, _, value = line.partition(" ")
                    if key in ("oom_kill", "oom", "pgmajfault", "total_pgmajfault"):
                        out[key] = int(value)
            except (OSError, ValueError):
                pass
        return out

    def close(self) -> None:
        if self.dir is not None:
            for _ in range(50):
                try:
                    self.dir.rmdir()
                    return
                except OSError:
                    time.sleep(0.1)


def cgroup_available() -> bool:
    """Whether this process may create a capped child cgroup (root, or a delegated v2 subtree)."""
    cap = CgroupCap(1 << 30)
    try:
        return cap.dir is not None
    finally:
        cap.close()


def cached_fraction(path: Path) -> float:
    """The share of `path`'s pages in the page cache now (mincore over a read-only mapping)."""
    import ctypes
    import mmap

    size = path.stat().st_size
    if size == 0:
        return 0.0
    page = mmap.PAGESIZE
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    ]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), f"mmap {path}")
        try:
            vec = ctypes.create_string_buffer(-(-size // page))
            if libc.mincore(addr, size, vec) != 0:
                raise OSError(ctypes.get_errno(), f"mincore {path}")
            return sum(b & 1 for b in vec.raw) / len(vec.raw)
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)


def evict(path: Path) -> float:
    """Drop `path`'s clean pages from the page cache, so the next reader (in its cgroup) is charged for them.

    Returns the share still cached: pages another process has mapped cannot be dropped."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return cached_fraction(path)
