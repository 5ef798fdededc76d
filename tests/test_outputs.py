"""`quant.outputs`: one writer per output, never a half-written or clobbered file, never an input replaced,
and the leftovers of a killed writer recognised as stale (and only those)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from quant.errors import OutputBusyError, OutputError, OutputExistsError
from quant.outputs import (
    claim_output,
    find_stale,
    output_of,
    remove_stale,
    stale_temporaries,
    temp_name,
    write_bytes,
)


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUBTUI_STATE_DIR", str(tmp_path / "state"))


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_commit_renames_a_fsynced_temporary_and_leaves_only_the_output(tmp_path: Path) -> None:
    out = tmp_path / "a.gguf"
    with claim_output(out) as claim:
        with claim.create_file() as f:
            f.write(b"GGUF data")
        assert claim.temp is not None and claim.temp.parent == tmp_path
        assert output_of(claim.temp) == out and claim.temp.name.startswith(".a.gguf.")
        assert claim.lock_path.exists()
        claim.commit()
    assert out.read_bytes() == b"GGUF data"
    assert names(tmp_path) == ["a.gguf", "state"]  # no temporary, no lock file


def test_a_second_writer_fails_at_once_naming_the_holder(tmp_path: Path) -> None:
    out = tmp_path / "a.gguf"
    with claim_output(out) as first:
        busy = rf"a\.gguf: another hubtui process \(pid {os.getpid()}\)"
        with pytest.raises(OutputBusyError, match=busy), claim_output(out, force=True):
            pass
        with first.create_file() as f:
            f.write(b"one")
        first.commit()
    with claim_output(out, force=True) as again:  # free again once released
        with again.create_file() as f:
            f.write(b"two")
        again.commit()
    assert out.read_bytes() == b"two"


def test_a_file_created_during_the_write_is_not_replaced_without_force(tmp_path: Path) -> None:
    out = tmp_path / "a.gguf"
    with pytest.raises(OutputExistsError, match="--force"), claim_output(out) as claim:
        with claim.create_file() as f:
            f.write(b"ours")
        out.write_bytes(b"someone else's")  # appears between the claim and the rename
        claim.commit()
    assert out.read_bytes() == b"someone else's"
    assert names(tmp_path) == ["a.gguf", "state"]


def test_force_replaces_an_existing_regular_file(tmp_path: Path) -> None:
    out = tmp_path / "a.gguf"
    out.write_bytes(b"old")
    with pytest.raises(OutputExistsError), claim_output(out):
        pass
    assert write_bytes(out, b"new") == out and out.read_bytes() == b"new"


def test_an_exception_removes_the_temporary(tmp_path: Path) -> None:
    out = tmp_path / "a.gguf"
    with pytest.raises(KeyboardInterrupt), claim_output(out) as claim:
        with claim.create_file() as f:
            f.write(b"partial")
        raise KeyboardInterrupt
    with claim_output(out) as claim:  # leaving without a commit also discards it
        claim.create_file().write(b"never committed")
    assert names(tmp_path) == ["state"]


def test_inputs_are_never_replaced_even_through_a_symlink(tmp_path: Path) -> None:
    shard = tmp_path / "model.safetensors"
    shard.write_bytes(b"weights")
    link = tmp_path / "link.gguf"
    link.symlink_to(shard)
    for target in (shard, link):
        with (
            pytest.raises(OutputError, match="is an input of this run"),
            claim_output(target, force=True, inputs=[shard]),
        ):
            pass
    # re-pointed at an input after the claim: refused at the rename
    late = tmp_path / "late.gguf"
    with (
        pytest.raises(OutputError, match="became an input"),
        claim_output(late, force=True, inputs=[shard]) as claim,
    ):
        with claim.create_file() as f:
            f.write(b"x")
        late.symlink_to(shard)
        claim.commit()
    assert shard.read_bytes() == b"weights"


@pytest.mark.parametrize("kind", ["fifo", "dir", "dangling"])
def test_non_regular_outputs_are_refused_without_opening_them(tmp_path: Path, kind: str) -> None:
    out = tmp_path / "x.gguf"
    if kind == "fifo":
        os.mkfifo(out)
    elif kind == "dir":
        out.mkdir()
    else:
        out.symlink_to(tmp_path / "nowhere")
    refused = r"x\.gguf: (is a directory|is not a regular|is a dangling)"
    with pytest.raises(OutputError, match=refused), claim_output(out, force=True):
        pass


def test_missing_directory_is_named(tmp_path: Path) -> None:
    with (
        pytest.raises(OutputError, match="output directory does not exist"),
        claim_output(tmp_path / "n" / "a"),
    ):
        pass


def test_a_folder_output_replaces_only_an_empty_directory(tmp_path: Path) -> None:
    dest = tmp_path / "bundle"
    dest.mkdir()
    with claim_output(dest, directory=True) as claim:
        work = claim.create_dir()
        (work / "f.txt").write_text("hi")
        claim.commit()
    assert (dest / "f.txt").read_text() == "hi"
    with pytest.raises(OutputError, match="not an empty directory"), claim_output(dest, directory=True):
        pass
    # filled by someone else while we worked: the rename refuses and our temporary goes
    other = tmp_path / "other"
    with (
        pytest.raises(OutputError, match="not an empty directory"),
        claim_output(other, directory=True) as claim,
    ):
        claim.create_dir()
        other.mkdir()
        (other / "theirs").write_text("x")
        claim.commit()
    assert names(tmp_path) == ["bundle", "other", "state"] and names(other) == ["theirs"]


def test_stale_means_ours_with_no_live_writer_holding_the_output_lock(tmp_path: Path) -> None:
    with claim_output(tmp_path / "live.gguf") as live:  # a writer at work: neither its file nor lock is stale
        live.create_file().write(b"being written")
        dead = tmp_path / temp_name(tmp_path / "m.gguf")  # a SIGKILLed writer: its lock file went with it...
        dead.write_bytes(b"left by a SIGKILL")
        dead_dir = tmp_path / temp_name(tmp_path / "bundle")
        dead_dir.mkdir()
        (dead_dir / "model.gguf").write_bytes(b"12345")
        kept = tmp_path / temp_name(tmp_path / "k.gguf")  # ... or is still there, unlocked
        kept.write_bytes(b"abc")
        dead_lock = tmp_path / ".k.gguf.hubtui-lock"
        dead_lock.write_bytes(b"4242\n")
        (tmp_path / ".m.gguf.notours").write_bytes(b"x")
        stale = find_stale(tmp_path)
        assert {s.path: (s.output, s.size) for s in stale} == {
            dead: (tmp_path / "m.gguf", 17),
            dead_dir: (tmp_path / "bundle", 5),
            kept: (tmp_path / "k.gguf", 3),
            dead_lock: (tmp_path / "k.gguf", 5),
        }
        assert sorted(s.path for s in remove_stale(tmp_path)) == sorted(s.path for s in stale)
        assert names(tmp_path) == sorted([".m.gguf.notours", live.temp.name, live.lock_path.name, "state"])


def test_directories_written_to_are_remembered_for_cache_ls(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    write_bytes(a / "one.gguf", b"1")
    dead = b / temp_name(b / "two.gguf")
    dead.write_bytes(b"22")
    assert stale_temporaries() == []  # b was never written to by hubtui
    write_bytes(b / "other.gguf", b"3")  # ... and that claim cleared b's dead temporary already
    assert not dead.exists()
    dead.write_bytes(b"22")
    assert [s.path for s in stale_temporaries()] == [dead]
