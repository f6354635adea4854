"""Jobs killed with SIGKILL at random moments (and inside the output's final write), then rerun:
every photo appears exactly once and the output or index opens. Two `index` processes writing one
SQLite file, and one PostgreSQL database, at the same time: the same.

The kill moments are drawn (seeded) across the length of an uninterrupted run, so some land in
start-up, some in tagging, some in the final write; ESTATELENS_KILL_TRIALS sets how many.
"""
from __future__ import annotations

import csv
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import stripes, write_broken_files

TRIALS = int(os.environ.get("ESTATELENS_KILL_TRIALS", "4"))
PHOTOS = 80


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory) -> tuple[Path, int]:
    """80 photos in 8 listing folders and 4 broken files: (folder, number of files)."""
    root = tmp_path_factory.mktemp("killed") / "photos"
    for i in range(PHOTOS):
        d = root / f"L{i // 10}"
        d.mkdir(parents=True, exist_ok=True)
        stripes(("horizontal", "vertical")[i % 2], 160, seed=i).save(d / f"{i:03d}.jpg", quality=90)
    write_broken_files(root / "broken")
    return root, PHOTOS + 5


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "estatelens", *args]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _run(cmd: list[str], kill_after: float | None = None) -> int | None:
    """Run to the end (its exit status), or SIGKILL it after `kill_after` s (None if it was killed)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env())
    try:
        proc.wait(timeout=kill_after if kill_after is not None else 600)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return None
    err = proc.stderr.read().decode(errors="replace")
    assert proc.returncode == 0, err
    return proc.returncode


def _tag_rows(out: Path) -> list[dict]:
    with open(out, newline="", encoding="utf-8-sig") as f:
        return list(csv.DictReader(f))


def _check_tag_output(out: Path, n_files: int) -> None:
    rows = _tag_rows(out)
    counts = Counter(r["path"] for r in rows)
    assert len(rows) == n_files and max(counts.values()) == 1, counts.most_common(3)
    assert sum(r["status"] == "ok" for r in rows) == PHOTOS + 1  # and whole.jpg among the broken files
    assert not list(out.parent.glob(f".{out.name}*")), "a temporary output file was left behind"


def _index_paths(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return [r[0] for r in conn.execute("SELECT path_key FROM photos")]


def test_tag_killed_at_random_moments_tags_each_photo_once(photo_folder, tmp_path):
    folder, n_files = photo_folder
    cmd = _cli("tag", str(folder), "--out", str(tmp_path / "whole.csv"), "--quiet", "--threads", "1", "--batch-size", "4")
    t0 = time.time()
    _run(cmd)
    full = time.time() - t0
    _check_tag_output(tmp_path / "whole.csv", n_files)
    rnd = random.Random(7)
    killed = 0
    for trial in range(TRIALS):
        out = tmp_path / f"trial{trial}.csv"
        cmd = _cli("tag", str(folder), "--out", str(out), "--quiet", "--threads", "1", "--batch-size", "4")
        for _ in range(2):  # killed, and killed again on the rerun
            killed += _run(cmd, kill_after=rnd.uniform(0.2, 1.1) * full) is None
        _run(cmd)
        _check_tag_output(out, n_files)
        whole = {r["path"]: (r["status"], r["room_type"]) for r in _tag_rows(tmp_path / "whole.csv")}
        assert {r["path"]: (r["status"], r["room_type"]) for r in _tag_rows(out)} == whole
    assert killed >= TRIALS  # most of the kills landed while the job was running


KILL_IN_FINAL_WRITE = """
import os, signal, sys
from estatelens.tagging import writers
orig_write_rows = writers.write_rows

def dying_rows(rows, n):
    for i, row in enumerate(rows):
        if i == n:
            os.kill(os.getpid(), signal.SIGKILL)
        yield row

def write_rows(path, rows, columns):
    return orig_write_rows(path, dying_rows(rows, int(os.environ["KILL_AT_ROW"])), columns)

import estatelens.tagging.job as job
job.write_rows = write_rows
from estatelens.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("suffix", [".csv", ".xlsx", ".jsonl"])
def test_tag_killed_inside_the_final_write_leaves_no_partial_output(photo_folder, tmp_path, suffix):
    folder, n_files = photo_folder
    out = tmp_path / f"tags{suffix}"
    args = ["tag", str(folder), "--out", str(out), "--quiet", "--threads", "1"]
    proc = subprocess.run([sys.executable, "-c", KILL_IN_FINAL_WRITE, *args], env={**_env(), "KILL_AT_ROW": "40"},
                          capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()  # never a half-written output under the real name
    _run(_cli(*args))  # the rerun finds every photo in the journal and writes the output
    if suffix == ".csv":
        _check_tag_output(out, n_files)
    elif suffix == ".jsonl":
        import json

        rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        assert len(rows) == n_files and len({r["path"] for r in rows}) == n_files
    else:
        from openpyxl import load_workbook

        rows = list(load_workbook(out, read_only=True).active.iter_rows(values_only=True))
        assert len(rows) == n_files + 1 and len({r[0] for r in rows[1:]}) == n_files
    assert not list(tmp_path.glob(".tags*"))


def test_index_killed_at_random_moments_holds_each_photo_once(photo_folder, tmp_path):
    folder, n_files = photo_folder
    t0 = time.time()
    _run(_cli("index", str(folder), "--db", str(tmp_path / "whole.db"), "--quiet"))
    full = time.time() - t0
    expected = sorted(_index_paths(tmp_path / "whole.db"))
    assert len(expected) == n_files
    rnd = random.Random(11)
    for trial in range(TRIALS):
        db = tmp_path / f"trial{trial}.db"
        cmd = _cli("index", str(folder), "--db", str(db), "--quiet")
        for _ in range(2):
            _run(cmd, kill_after=rnd.uniform(0.2, 1.1) * full)
        _run(cmd)
        assert sorted(_index_paths(db)) == expected


def _two_at_once(cmd_a: list[str], cmd_b: list[str]) -> None:
    procs = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env()) for c in (cmd_a, cmd_b)]
    for p in procs:
        p.wait(timeout=600)
        assert p.returncode == 0, p.stderr.read().decode(errors="replace")


def test_two_index_processes_write_one_sqlite_file(photo_folder, tmp_path):
    folder, n_files = photo_folder
    db = tmp_path / "shared.db"
    # overlapping inputs: the whole folder, and two of its listings again
    _two_at_once(_cli("index", str(folder), "--db", str(db), "--quiet"),
                 _cli("index", str(folder / "L1"), str(folder / "L2"), "--db", str(db), "--quiet"))
    paths = _index_paths(db)
    assert len(paths) == n_files and len(set(paths)) == n_files


def test_two_index_processes_write_one_postgresql_database(photo_folder, postgres_db):
    from sqlalchemy import func, select

    from estatelens.index import connect, db

    folder, n_files = photo_folder
    _two_at_once(_cli("index", str(folder), "--db", postgres_db, "--quiet"),
                 _cli("index", str(folder / "L3"), str(folder), "--db", postgres_db, "--quiet"))
    engine = connect(postgres_db, create=False)
    with engine.connect() as conn:
        keys = list(conn.execute(select(db.photos.c.path_key)).scalars())
        assert conn.execute(select(func.count()).select_from(db.listings)).scalar() >= 8
    assert len(keys) == n_files and len(set(keys)) == n_files
