"""The input holds still: a run reads its files as they were when it started, or stops in one line.

Each change happens at a deterministic point, the n-th row group read of this process (a hook on pyarrow's
reader, as tests/hooks does for signals), never after a timer: another job rewriting, truncating,
replacing (renaming over), removing, or appending to a file, or adding a file to the directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import dgmm
from dgmm.data.parquet import ParquetDataset
from dgmm.errors import InputChanged

N_FILES = 12


@pytest.fixture
def folder(tmp_path) -> Path:
    rng = np.random.default_rng(50)
    out = tmp_path / "data"
    out.mkdir()
    for i in range(N_FILES):
        frame = pd.DataFrame(rng.normal(size=(3_000, 3)) + i % 3 * 4.0, columns=["a", "b", "c"])
        frame.to_parquet(out / f"part-{i:03d}.parquet", row_group_size=1_000, index=False)
    return out


@pytest.fixture
def at_read(monkeypatch):
    """``at_read(path, action)``: ``action()`` runs when this process starts reading a row group of ``path``
    (the first time), with the file open already: whatever order the threads read in, the file changes
    during the run and before its rows are returned."""
    opened, read = pq.ParquetFile.__init__, pq.ParquetFile.read_row_group
    plan: dict = {}

    def opening(self, source, *args, **kwargs):
        self.dgmm_source = str(source)
        opened(self, source, *args, **kwargs)

    def reading(self, *args, **kwargs):
        if getattr(self, "dgmm_source", None) == plan.get("path") and not plan.get("done"):
            plan["done"] = True
            plan["action"]()
        return read(self, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "__init__", opening)
    monkeypatch.setattr(pq.ParquetFile, "read_row_group", reading)

    def arm(path: Path, action) -> None:
        plan.update(path=str(path), action=action, done=False)

    return arm


def rewrite(path: Path, rows: int = 3_000) -> None:
    """Another job writing the file again, in place: new values, the same layout."""
    frame = pd.DataFrame(np.random.default_rng(1).normal(size=(rows, 3)), columns=["a", "b", "c"])
    frame.to_parquet(path, row_group_size=1_000, index=False)


def rewrite_keeping_time(path: Path) -> None:
    """A rewrite that restores the old modification time (``cp -p``, ``rsync -t``): the footer differs."""
    stamp = os.stat(path)
    rewrite(path, rows=2_000)
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))


def replace_by_rename(path: Path) -> None:
    """A writer that publishes a new version atomically (write aside, rename over): another inode."""
    aside = path.with_name(".new-" + path.name)
    rewrite(aside)
    os.replace(aside, path)


def append_row_group(path: Path) -> None:
    table = pq.read_table(path)
    pq.write_table(pa_concat(table), path, row_group_size=1_000)


def pa_concat(table):
    import pyarrow as pa

    return pa.concat_tables([table, table.slice(0, 1_000)])


CHANGES = {
    "rewritten": (rewrite, "changed while in use: "),
    "rewritten, time restored": (rewrite_keeping_time, "changed while in use: "),
    "truncated": (lambda p: os.truncate(p, os.path.getsize(p) // 2), "bytes when the run started"),
    "replaced": (replace_by_rename, "changed while in use: "),
    "appended to": (append_row_group, "changed while in use: "),
    "removed": (os.remove, "removed while in use"),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_file_changed_during_the_fit_ends_it_in_one_line_naming_the_file(folder, at_read, change):
    action, said = CHANGES[change]
    victim = folder / "part-007.parquet"
    at_read(victim, lambda: action(victim))
    with pytest.raises(InputChanged) as caught:
        dgmm.GaussianMixture(2, random_state=0, max_iter=5).fit(str(folder))
    message = str(caught.value)
    assert message.startswith(f"{victim}: ") and said in message and "\n" not in message
    assert "run again once the writer is done" in message


def test_a_file_added_to_the_directory_during_the_fit_is_not_read(folder, at_read):
    reference = dgmm.GaussianMixture(2, random_state=0, max_iter=5).fit(str(folder))
    late = folder / "part-999.parquet"
    at_read(folder / "part-000.parquet", lambda: rewrite(late))
    model = dgmm.GaussianMixture(2, random_state=0, max_iter=5).fit(str(folder))
    assert late.exists()
    np.testing.assert_array_equal(model.means_, reference.means_)  # its 3,000 rows would move them
    np.testing.assert_array_equal(model.covariances_, reference.covariances_)


def test_scoring_holds_its_snapshot_too(folder):
    model = dgmm.GaussianMixture(2, random_state=0, max_iter=5).fit(str(folder))
    victim = folder / "part-005.parquet"
    labels = model.predict(str(folder))  # lazy: the files were opened, not read
    rewrite(victim)
    with pytest.raises(InputChanged, match="part-005.parquet: changed while in use"):
        labels.compute()


def test_a_file_written_to_while_its_footer_is_read_is_refused_at_open(folder, monkeypatch):
    victim = folder / "part-004.parquet"
    read_metadata = pq.read_metadata

    def while_reading(source, *args, **kwargs):
        metadata = read_metadata(source, *args, **kwargs)
        if str(source).endswith(victim.name):
            rewrite(victim, rows=2_000)
        return metadata

    monkeypatch.setattr(pq, "read_metadata", while_reading)
    with pytest.raises(InputChanged, match="part-004.parquet: changed while in use"):
        ParquetDataset.open(str(folder))


def test_a_directory_mid_write_is_read_for_its_finished_files_only(folder):
    """What a writer leaves in a directory while it works — Spark's _temporary attempt files and _SUCCESS,
    Flink's hidden in-progress part files, .crc side files, a sync job's .tmp — is never input; a .parquet
    file still empty (a copy just begun) is refused in one line naming it, not skipped in silence."""
    attempt = folder / "_temporary" / "0" / "_temporary" / "attempt_202612060001_0001_m_000000_0"
    attempt.mkdir(parents=True)
    (attempt / "part-00000.snappy.parquet").write_bytes(b"PAR1 half a file")
    (folder / ".part-0-1.parquet.inprogress.8c2e").write_bytes(b"PAR1 partial")
    (folder / ".part-000.parquet.crc").write_bytes(b"crc")
    (folder / "part-100.parquet.tmp").write_bytes(b"PAR1 partial")
    (folder / "_SUCCESS").write_text("")
    dataset = ParquetDataset.open(str(folder))
    assert len(dataset.files) == N_FILES and dataset.n_rows == N_FILES * 3_000
    (folder / "part-200.parquet").write_bytes(b"")
    with pytest.raises(dgmm.DataError, match=r"part-200.parquet: not a complete Parquet file .*still being") as caught:
        ParquetDataset.open(str(folder))
    assert "\n" not in str(caught.value)
