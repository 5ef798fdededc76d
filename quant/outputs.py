"""Writing an output (a GGUF, a bundle folder, a downloaded file, an imatrix) so that nothing is lost or wrong.

Every writer goes through `claim_output`:

- **One writer per output.** The claim takes an exclusive `flock` on `.NAME.hubtui-lock` beside the output;
  a second writer of the same output fails at once with `OutputBusyError` naming the holder's pid. The
  kernel drops the lock when its process dies, even by SIGKILL, so a crash never leaves the output blocked.
- **Never a half-written file under the final name.** The bytes go to a unique temporary
  `.NAME.<random>.hubtui-tmp` in the same directory (created with O_EXCL), are fsynced, then renamed.
  Without `force` the rename is a hard link plus unlink, which fails if something created the output in
  the meantime (the existence check holds until the very end); with `force` it is an atomic replace.
- **Never an input.** The output must not be (the same file as) one of `inputs`, checked at the claim and
  again right before the rename, and an existing output must be a regular file (a directory, FIFO or
  device is refused, not opened).
- **Leftovers are ours and recognisable.** A writer holds its output's lock from before its temporary
  exists until after it is gone, so a temporary whose lock file is missing or not held belongs to a writer
  that died (SIGKILL, power loss): no clock or pid guesswork. The next claim in that directory removes
  such leftovers, and `stale_temporaries` lists them in every directory hubtui has written to
  (`hubtui cache ls`, `cache rm --stale`). A scan holds a lock for microseconds, so a writer starting at
  that instant retries for a moment before calling the output busy.

Any exception (an error, KeyboardInterrupt, a SIGTERM turned into an exception) between claim and commit
removes the temporary; the lock is always released. A writer (a GGUF, an imatrix, an adapter) looks like:

    with claim_output(out, force=force, inputs=[model_path]) as claim:
        with claim.create_file() as f:
            f.write(data)
        claim.commit()

`write_bytes(path, data)` does that for a small file; `claim_output(dest, directory=True)` and
`claim.create_dir()` for a folder; `output_lock(path)` is the lock alone, for a writer with its own
partial file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import shutil
import stat
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from quant.errors import OutputBusyError, OutputError, OutputExistsError

TMP_SUFFIX = ".hubtui-tmp"
LOCK_SUFFIX = ".hubtui-lock"
_REGISTRY = "output-dirs.txt"  # directories hubtui has written temporaries to, one per line
_NAME_ROOM = 200  # bytes of the output's name kept in a temporary's name (file names stop at 255)
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK, errno.ENOSYS}


def state_dir() -> Path:
    """hubtui's own state folder: HUBTUI_STATE_DIR, else $XDG_STATE_HOME/hubtui (~/.local/state/hubtui)."""
    base = os.environ.get("HUBTUI_STATE_DIR") or os.path.join(
        os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state"), "hubtui"
    )
    return Path(base)


def free_disk_bytes(directory: Path) -> int:
    """Free bytes on the filesystem holding `directory` (tests replace this probe)."""
    return shutil.disk_usage(directory).free


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def _try_lock_briefly(fd: int, attempts: int = 10, pause: float = 0.01) -> bool:
    """`_try_lock`, retried for about 0.1 s: a stale scan may hold the lock for a moment, a writer for long."""
    for i in range(attempts):
        if _try_lock(fd):
            return True
        if i + 1 < attempts:
            time.sleep(pause)
    return False


def _lock_path(output: Path) -> Path:
    return output.with_name(f".{output.name[:_NAME_ROOM]}{LOCK_SUFFIX}")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _dir_of(path: Path) -> Path:
    return path.parent if str(path.parent) else Path(".")


def _os_error(path: Path, exc: OSError, doing: str) -> OutputError:
    return OutputError(f"{path}: cannot {doing}: {exc.strerror or exc}")


def fsync_file(path: Path) -> None:
    """Flush a finished file written elsewhere (a resumable download's partial file) to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable (best effort: some filesystems refuse fsync on a directory)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def temp_name(final: Path) -> str:
    """A fresh temporary name for `final` (same directory, hidden, recognisably ours)."""
    return f".{final.name[:_NAME_ROOM]}.{secrets.token_hex(4)}{TMP_SUFFIX}"


def output_of(temp: Path) -> Path | None:
    """The output a temporary or lock file of ours was for (its name cut to 200 bytes); None if not ours."""
    name = temp.name
    if name.startswith(".") and name.endswith(LOCK_SUFFIX) and len(name) > len(LOCK_SUFFIX) + 1:
        return temp.with_name(name[1 : -len(LOCK_SUFFIX)])
    if not (name.startswith(".") and name.endswith(TMP_SUFFIX)):
        return None
    base, dot, token = name[1 : -len(TMP_SUFFIX)].rpartition(".")
    if not dot or len(token) != 8 or not base:
        return None
    return temp.with_name(base)


class OutputClaim:
    """The right to write `final`: a lock held until `release`, and at most one temporary (file or folder)."""

    def __init__(self, final: Path, *, force: bool, inputs: Iterable[Path], directory: bool) -> None:
        self.final = final
        self.force = force
        self.inputs = [Path(p) for p in inputs]
        self.directory = directory
        self.parent = _dir_of(final)
        self.lock_path = _lock_path(self.parent / final.name)
        self.temp: Path | None = None
        self._lock_fd: int | None = None
        self._temp_fd: int | None = None
        self._file: BinaryIO | None = None
        self.committed = False

    # -- claim ------------------------------------------------------------------------------------
    def check(self) -> None:
        """Refuse an output that would replace an input or a non-regular file, or exists without force."""
        if not self.parent.is_dir():
            raise OutputError(f"{self.parent}: output directory does not exist")
        for src in self.inputs:
            if _same_file(self.final, src):
                raise OutputError(
                    f"{self.final}: is an input of this run ({src}); refusing to overwrite it, choose another output"
                )
        try:
            st = os.stat(self.final)
        except FileNotFoundError:
            if os.path.islink(self.final):
                raise OutputError(f"{self.final}: is a dangling symbolic link; remove it first") from None
            return
        except OSError as exc:
            raise _os_error(self.final, exc, "check the output") from None
        if self.directory:
            if not stat.S_ISDIR(st.st_mode) or any(os.scandir(self.final)):
                raise OutputError(f"{self.final}: already exists and is not an empty directory")
            return
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise OutputError(f"{self.final}: is {kind}; refusing to write over it")
        if not self.force:
            raise OutputExistsError(self.final)

    def acquire(self) -> None:
        """Take the output's lock (at once or not at all), then clear dead writers' temporaries."""
        while True:
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise _os_error(self.parent, exc, "create files in the output directory") from None
            if not _try_lock_briefly(fd):
                holder = b""
                with contextlib.suppress(OSError):
                    holder = os.pread(fd, 32, 0)
                os.close(fd)
                raise OutputBusyError(self.final, holder.decode("ascii", "replace").strip())
            # The previous holder may have unlinked the lock file between our open and our flock: then we
            # hold a lock nobody else can see, so start again on the current file.
            try:
                same = os.stat(self.lock_path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self._lock_fd = fd
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        remove_stale(self.parent)

    # -- the temporary ----------------------------------------------------------------------------
    def _register(self) -> None:
        remember_directory(self.parent)

    def create_file(self) -> BinaryIO:
        """The temporary file, opened for writing (close it before `commit`, or let commit flush it)."""
        assert self.temp is None and not self.directory
        self._register()
        temp = self.temp = self.parent / temp_name(self.final)  # known to abort() before it exists
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            self.temp = None  # not ours (O_EXCL): abort() must not remove it
            raise _os_error(temp, exc, "create the temporary output") from None
        self._temp_fd = fd
        self._file = os.fdopen(os.dup(fd), "wb")
        return self._file

    def create_dir(self) -> Path:
        """The temporary folder (mode from the umask, not mkdtemp's 0700: bundles are often shared)."""
        assert self.temp is None and self.directory
        self._register()
        # Recorded before mkdir: a SIGTERM turned into an exception just after mkdir must still remove it.
        temp = self.temp = self.parent / temp_name(self.final)
        try:
            os.mkdir(temp, 0o777)
        except OSError as exc:
            self.temp = None  # nothing of ours was made
            raise _os_error(temp, exc, "create the temporary output folder") from None
        try:
            self._temp_fd = os.open(temp, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise _os_error(temp, exc, "open the temporary output folder") from None
        return temp

    # -- the end ----------------------------------------------------------------------------------
    def commit(self) -> Path:
        """fsync the temporary and rename it to the output; raises if the output became something we must
        not replace (an input, or a new file when `force` was not given)."""
        assert self.temp is not None and self._temp_fd is not None
        if self._file is not None and not self._file.closed:
            self._file.close()
        for src in self.inputs:  # the output path may have been re-pointed since the claim
            if _same_file(self.final, src):
                raise OutputError(
                    f"{self.final}: became an input of this run ({src}); refusing to overwrite it"
                )
        try:
            if not self.directory:
                os.fsync(self._temp_fd)
            if self.directory:
                self._commit_dir()
            elif self.force:
                os.replace(self.temp, self.final)
            else:
                self._commit_no_clobber()
        except OutputError:
            raise
        except OSError as exc:
            raise _os_error(self.final, exc, "rename the finished output into place") from None
        self.committed = True
        fsync_dir(self.parent)
        return self.final

    def _commit_no_clobber(self) -> None:
        assert self.temp is not None
        try:
            os.link(self.temp, self.final)
        except FileExistsError:
            raise OutputExistsError(self.final) from None
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS:
                raise
            # No hard links here (FAT, some network mounts): check, then rename.
            if os.path.lexists(self.final):
                raise OutputExistsError(self.final) from None
            os.rename(self.temp, self.final)
            return
        os.unlink(self.temp)

    def _commit_dir(self) -> None:
        assert self.temp is not None
        try:
            os.rename(self.temp, self.final)  # replaces an empty directory, refuses anything else
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                raise OutputError(f"{self.final}: already exists and is not an empty directory") from None
            raise

    def abort(self) -> None:
        """Remove the temporary (if any and not committed)."""
        if self._file is not None and not self._file.closed:
            with contextlib.suppress(OSError):
                self._file.close()
        if self.temp is not None and not self.committed:
            if self.directory:
                shutil.rmtree(self.temp, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    self.temp.unlink()

    def release(self) -> None:
        """Close the temporary's descriptor and drop the lock (unlinking the lock file first)."""
        if self._temp_fd is not None:
            os.close(self._temp_fd)
            self._temp_fd = None
        if self._lock_fd is not None:
            with contextlib.suppress(FileNotFoundError):
                self.lock_path.unlink()
            os.close(self._lock_fd)
            self._lock_fd = None


@contextlib.contextmanager
def claim_output(
    final: str | os.PathLike[str],
    *,
    force: bool = False,
    inputs: Iterable[str | os.PathLike[str]] = (),
    directory: bool = False,
) -> Iterator[OutputClaim]:
    """Check and lock `final`, yield the claim; the body creates the temporary and calls `commit()`.

    Leaving the body without a commit, or by an exception, removes the temporary; the lock is released
    either way. `directory=True` claims a folder, which may replace only an empty directory.
    """
    claim = OutputClaim(Path(final), force=force, inputs=[Path(p) for p in inputs], directory=directory)
    claim.check()
    claim.acquire()
    try:
        claim.check()  # again under the lock: another writer may have finished it meanwhile
        yield claim
    except BaseException:
        claim.abort()
        raise
    else:
        claim.abort()  # a no-op after a commit
    finally:
        claim.release()


@contextlib.contextmanager
def output_lock(final: str | os.PathLike[str]) -> Iterator[OutputClaim]:
    """Only the lock of `final`, for writers that keep their own partial file (resumable downloads)."""
    claim = OutputClaim(Path(final), force=True, inputs=(), directory=False)
    claim.acquire()
    try:
        yield claim
    finally:
        claim.release()


def write_bytes(final: str | os.PathLike[str], data: bytes) -> Path:
    """Replace a small file atomically (temporary, fsync, rename) under the output lock."""
    with claim_output(final, force=True) as claim:
        with claim.create_file() as f:
            f.write(data)
        return claim.commit()


# -- stale temporaries --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StaleTemporary:
    """A temporary of ours whose writer is gone: `output` is what it was going to become."""

    path: Path
    output: Path
    size: int
    mtime: float


def _size(path: Path) -> int:
    if not path.is_dir() or path.is_symlink():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if not p.is_dir() or p.is_symlink())


def _is_stale(path: Path, output: Path) -> bool:
    """`path` (a temporary or lock file of ours for `output`) has no live writer: the output's lock file is
    missing (a temporary only) or nobody holds it."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return False
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        return False
    lock = _lock_path(output)
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return path != lock
    except OSError:
        return False
    try:
        return _try_lock(fd)  # released again when fd closes
    except OSError:
        return False
    finally:
        os.close(fd)


def find_stale(directory: Path) -> list[StaleTemporary]:
    """The stale temporaries of ours directly inside `directory`."""
    found = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return []
    for entry in entries:
        path = Path(entry.path)
        output = output_of(path)
        if output is None or not _is_stale(path, output):
            continue
        with contextlib.suppress(OSError):
            found.append(StaleTemporary(path, output, _size(path), path.lstat().st_mtime))
    return sorted(found, key=lambda s: str(s.path))


def remove_stale(directory: Path) -> list[StaleTemporary]:
    """Delete the stale temporaries in `directory`; returns what was removed."""
    removed = []
    for s in find_stale(directory):
        try:
            if s.path.name.endswith(LOCK_SUFFIX):
                if not _unlink_lock(s.path):
                    continue
            elif s.path.is_dir() and not s.path.is_symlink():
                shutil.rmtree(s.path)
            else:
                s.path.unlink()
        except OSError:
            continue
        removed.append(s)
    return removed


def _unlink_lock(lock: Path) -> bool:
    """Remove a dead writer's lock file while holding it, as `OutputClaim.release` does, so a writer that
    opened it meanwhile sees the unlink and starts again on a fresh one."""
    fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        if not _try_lock(fd):
            return False
        lock.unlink()
        return True
    finally:
        os.close(fd)


def remember_directory(directory: Path) -> None:
    """Note a directory hubtui writes temporaries to, so `stale_temporaries` looks there later."""
    with contextlib.suppress(OSError):
        path = str(Path(os.path.abspath(directory)))
        registry = state_dir() / _REGISTRY
        if path in _known_directories(registry):
            return
        registry.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(registry, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, (path + "\n").encode("utf-8", "surrogateescape"))
        finally:
            os.close(fd)


def _known_directories(registry: Path) -> list[str]:
    try:
        text = registry.read_bytes().decode("utf-8", "surrogateescape")
    except OSError:
        return []
    return list(dict.fromkeys(line for line in text.splitlines() if line.strip()))


def stale_temporaries(extra: Iterable[Path] = ()) -> list[StaleTemporary]:
    """Stale temporaries in every directory hubtui has written to (and `extra`), for `hubtui cache ls`."""
    dirs = [Path(d) for d in _known_directories(state_dir() / _REGISTRY)] + [Path(d) for d in extra]
    seen: set[Path] = set()
    found = []
    for d in dirs:
        key = Path(os.path.abspath(d))
        if key in seen:
            continue
        seen.add(key)
        found += find_stale(key)
    return found


def remove_stale_temporaries(extra: Iterable[Path] = ()) -> list[StaleTemporary]:
    """Delete every stale temporary `stale_temporaries` lists; returns what was removed.

    Directories that no longer exist are dropped from the registry on the way.
    """
    removed = []
    for d in sorted({s.path.parent for s in stale_temporaries(extra)}):
        removed += remove_stale(d)
    registry = state_dir() / _REGISTRY
    known = _known_directories(registry)
    keep = [d for d in known if os.path.isdir(d)]
    if keep != known:
        with contextlib.suppress(OSError):
            tmp = registry.with_name(f"{registry.name}.{os.getpid()}.tmp")
            tmp.write_bytes("".join(d + "\n" for d in keep).encode("utf-8", "surrogateescape"))
            os.replace(tmp, registry)
    return removed
