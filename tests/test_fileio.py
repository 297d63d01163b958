import errno
import os
import stat

import pytest

from aelab.errors import OutputError
from aelab import fileio
from aelab.fileio import FILE_MODE, atomic_write, write_bytes, write_files_together


def test_written_files_get_ordinary_permissions(tmp_path):
    path = write_bytes(tmp_path / "a.bin", b"x")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(os.stat(path).st_mode) == FILE_MODE == 0o666 & ~mask  # not mkstemp's 0600


def test_a_failing_body_leaves_the_old_file_and_no_temporary(tmp_path):
    path = write_bytes(tmp_path / "a.txt", b"old")
    with pytest.raises(RuntimeError):
        with atomic_write(path) as f:
            f.write(b"new, half")
            raise RuntimeError("crash")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_files_written_together_all_change_or_none(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_files_together({a: b"1", b: b"2"})
    assert (a.read_bytes(), b.read_bytes()) == (b"1", b"2")
    (tmp_path / "file").write_text("a file, not a folder")
    with pytest.raises(OutputError):
        write_files_together({a: b"new", tmp_path / "file" / "inside": b"x"})
    assert a.read_bytes() == b"1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "file"]


def test_strict_json_writes_null_for_nan_and_python_numbers_for_numpy_scalars():
    import json
    import math
    import numpy as np
    from aelab.fileio import strict_json
    value = {"r2": float("nan"), "top": math.inf, "mse": np.float32(0.25), "n": np.int64(3), "ok": np.bool_(True),
             "rows": [(1, float("-inf"))]}
    text = strict_json(value, indent=1)
    assert json.loads(text, parse_constant=lambda c: pytest.fail(c)) == {
        "r2": None, "top": None, "mse": 0.25, "n": 3, "ok": True, "rows": [[1, None]]}


@pytest.mark.parametrize("code, fix", [(errno.ENOSPC, "free some disk space, or choose another output"),
                                       (errno.EROFS, "read-only: choose another output"),
                                       (errno.EACCES, "check the folder's permissions"),
                                       (errno.EIO, "(choose another output)")])
def test_a_write_that_fails_says_what_to_do_and_leaves_nothing(tmp_path, monkeypatch, code, fix):
    """A full disk, a read-only file system or a denied folder: the one line names the file, the cause and a fix
    (it said only "cannot write: No space left on device"); the old file stays and no temporary is left."""
    target = tmp_path / "out.csv"
    target.write_text("old\n")

    def failing_replace(src, dst):
        raise OSError(code, os.strerror(code))
    monkeypatch.setattr(fileio.os, "replace", failing_replace)
    with pytest.raises(OutputError) as raised:
        fileio.write_text(target, "new\n")
    said = str(raised.value)
    assert str(target) in said and os.strerror(code) in said and fix in said and "\n" not in said
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_a_fifo_is_written_through_and_a_link_keeps_pointing_to_the_new_file(tmp_path):
    """`-o pipe.csv`, `-o /dev/null`, `-o link.csv`: the write replaced the FIFO (or the device: as root, the
    system's /dev/null) and the link itself with a regular file, and the file the link named kept its old
    contents. A FIFO or device is now written through; a link's target is replaced, the link kept."""
    import threading
    pipe = tmp_path / "pipe.csv"
    os.mkfifo(pipe)
    received = []
    reader = threading.Thread(target=lambda: received.append(pipe.read_text()))
    reader.start()
    fileio.write_text(pipe, "through\n")
    reader.join(timeout=10)
    assert received == ["through\n"] and stat.S_ISFIFO(os.lstat(pipe).st_mode)

    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "scores.csv").write_text("old\n")
    (tmp_path / "link.csv").symlink_to("results/scores.csv")
    (tmp_path / "dangling.csv").symlink_to("results/new.csv")
    fileio.write_text(tmp_path / "link.csv", "new\n")
    with atomic_write(tmp_path / "dangling.csv") as f:
        f.write(b"made\n")
    assert (tmp_path / "link.csv").is_symlink() and (tmp_path / "results" / "scores.csv").read_text() == "new\n"
    assert (tmp_path / "dangling.csv").is_symlink() and (tmp_path / "results" / "new.csv").read_bytes() == b"made\n"
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["new.csv", "scores.csv"]  # no temporaries
