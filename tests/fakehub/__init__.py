"""A fake Hugging Face Hub on 127.0.0.1 for the hub client's tests and download benchmark."""

from tests.fakehub.server import FakeFile, FakeHub, FakeRepo, Knobs, git_blob_sha1

__all__ = ["FakeFile", "FakeHub", "FakeRepo", "Knobs", "git_blob_sha1"]
