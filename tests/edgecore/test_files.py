"""edgecore.files.write_atomic: readers never see a partial file; a failure leaves nothing behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgecore.files import BadFile, locked, read_json_file, set_aside, write_atomic


def test_replaces_the_file_whole_and_sets_the_mode(tmp_path: Path) -> None:
    target = tmp_path / "policy.yaml"
    target.write_text("old")
    write_atomic(target, b"new", mode=0o640)
    assert target.read_bytes() == b"new"
    assert os.stat(target).st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["policy.yaml"]  # no temporary file left


def test_a_failed_write_removes_its_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "a-folder"
    target.mkdir()
    (target / "inside").write_text("x")  # os.replace cannot put a file over a non-empty folder
    with pytest.raises(OSError):
        write_atomic(target, b"data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-folder"]


def test_read_json_file_reads_only_a_bounded_object_from_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    assert read_json_file(path, 100) is None  # missing
    for text in ("[1, 2]", "{half", "{}" + " " * 200):  # not an object, not JSON, too large
        path.write_text(text)
        with pytest.raises(BadFile):
            read_json_file(path, 100)
    write_atomic(path, b'{"step": 2}')
    with locked(path):
        assert read_json_file(path, 100) == {"step": 2}
    assert (tmp_path / "state.json.lock").exists()
    fifo, device = tmp_path / "fifo.json", tmp_path / "zero.json"
    os.mkfifo(fifo)  # opened without blocking, refused: no writer would ever come
    os.symlink("/dev/zero", device)  # refused before a byte is read
    for odd in (fifo, device):
        with pytest.raises(BadFile, match="not a regular file"):
            read_json_file(odd, 100)
    assert set_aside(device) is not None and not device.exists()
