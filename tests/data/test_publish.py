"""dgmm.data.publish on local files and directories: whole or nothing, and never over a file this run did not create."""

from __future__ import annotations

import os

import pytest

from dgmm.data.publish import publish_path, published, published_directory
from dgmm.errors import OutputExists


def test_a_file_published_whole(tmp_path):
    with published(tmp_path / "out.bin") as file:
        file.write(b"all of it")
    assert (tmp_path / "out.bin").read_bytes() == b"all of it" and os.listdir(tmp_path) == ["out.bin"]


def test_a_file_that_appears_while_writing_is_not_replaced(tmp_path):
    dest = tmp_path / "out.bin"
    with pytest.raises(OutputExists, match=r"out\.bin: output exists \(it appeared while this run was working\)"):
        with published(dest) as file:
            file.write(b"ours")
            dest.write_bytes(b"theirs")  # another run publishes first
    assert dest.read_bytes() == b"theirs" and os.listdir(tmp_path) == ["out.bin"]


def test_overwrite_replaces_and_a_failure_leaves_the_old_file(tmp_path):
    dest = tmp_path / "out.bin"
    dest.write_bytes(b"old")
    with pytest.raises(OutputExists, match="output exists; remove it or pass --overwrite"):
        with published(dest):
            pass
    with pytest.raises(RuntimeError), published(dest, overwrite=True) as file:
        file.write(b"half")
        raise RuntimeError("the writer failed")
    assert dest.read_bytes() == b"old" and os.listdir(tmp_path) == ["out.bin"]
    with published(dest, overwrite=True) as file:
        file.write(b"new")
    assert dest.read_bytes() == b"new"


def test_publish_path_refuses_a_taken_name_whatever_the_system_call(tmp_path, monkeypatch):
    """renameat2(RENAME_NOREPLACE), link() and the O_EXCL placeholder: each refuses a taken name."""
    import dgmm.data.publish as publish

    for fallback in ("renameat2", "link", "placeholder"):
        source, dest = tmp_path / f"{fallback}.tmp", tmp_path / f"{fallback}.out"
        source.write_bytes(b"ours")
        dest.write_bytes(b"theirs")
        if fallback != "renameat2":
            monkeypatch.setattr(publish, "_rename_noreplace", lambda source, dest: False)
        if fallback == "placeholder":

            def no_links(*args):
                raise OSError(1, "Operation not permitted")

            monkeypatch.setattr(publish.os, "link", no_links)
        with pytest.raises(OutputExists):
            publish_path(source, dest, overwrite=False)
        assert dest.read_bytes() == b"theirs" and source.exists()
        dest.unlink()
        publish_path(source, dest, overwrite=False)
        assert dest.read_bytes() == b"ours" and not source.exists()
        monkeypatch.undo()


def test_a_directory_published_whole_and_never_over_another(tmp_path):
    dest = tmp_path / "data"
    with published_directory(dest) as staging:
        (staging / "part-0.parquet").write_bytes(b"x")
    assert os.listdir(dest) == ["part-0.parquet"]
    with pytest.raises(OutputExists):
        with published_directory(dest):
            pass
    other = tmp_path / "other"
    with pytest.raises(OutputExists, match="it appeared while this run was working"):
        with published_directory(other) as staging:
            (staging / "ours").write_bytes(b"ours")
            other.mkdir()
            (other / "theirs").write_bytes(b"theirs")
    assert os.listdir(other) == ["theirs"] and sorted(os.listdir(tmp_path)) == ["data", "other"]
    with published_directory(dest, overwrite=True) as staging:
        (staging / "part-1.parquet").write_bytes(b"y")
    assert os.listdir(dest) == ["part-1.parquet"]
