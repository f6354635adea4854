"""`estatelens tag --engine ray`: the same rows as the single-machine tagger, each photo once,
resumable after the job is killed, bad files and missing ones reported as rows."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import stripes, write_broken_files

ray = pytest.importorskip("ray", reason="the Ray engine needs the [ray] extra")
pytest.importorskip("pyarrow")


def make_photos(folder: Path, n: int, size: int = 96) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"p{i:03d}.jpg"
        stripes(("horizontal", "vertical")[i % 2], size, seed=i).save(p, quality=90)
        paths.append(str(p))
    return paths


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def rows_by_path(table) -> dict[str, dict]:
    rows = table.to_pylist()
    paths = [r["path"] for r in rows]
    assert len(paths) == len(set(paths)), "a photo was written twice"
    return {r["path"]: r for r in rows}


def test_ray_rows_are_the_local_taggers(local_ray, tmp_path):
    from estatelens.bundle import load_bundle
    from estatelens.distributed import read_output, tag_dataset
    from estatelens.tagging.core import iter_input_paths, tag_photos

    folder = tmp_path / "photos"
    make_photos(folder, 20)
    write_broken_files(folder / "bad")
    s = tag_dataset([str(folder)], tmp_path / "out.parquet", rows_per_file=8, progress=False)
    paths = list(iter_input_paths([str(folder)]))
    assert s.n_total == len(paths) == s.n_tagged and s.n_before == 0
    got = rows_by_path(read_output(tmp_path / "out.parquet"))
    bundle = load_bundle("rooms")
    heads = bundle.attributes
    want = {r.path: r.to_dict(heads) for r in tag_photos(bundle, paths)}
    assert set(got) == set(want)
    for path, w in want.items():
        g = got[path]
        assert g["status"] == w["status"], path
        assert g["room_type"] == w["room_type"] and g["class_2"] == w["class_2"], path
        for col in ("probability", "probability_2", "fireplace_probability", "unusual"):
            assert (g[col] is None) == (w[col] is None), (path, col)
            if w[col] is not None:
                assert g[col] == pytest.approx(w[col], abs=1e-4), (path, col)
        assert (g["width"], g["height"]) == (w["width"], w["height"])
    assert sum(r["status"] != "ok" for r in got.values()) == 4  # truncated, empty, text, tiny
    assert s.failures["empty file (0 bytes)"] == 1

    # Rerun: nothing to do; a changed photo and a new one are tagged, and only they.
    again = tag_dataset([str(folder)], tmp_path / "out.parquet", progress=False)
    assert again.n_tagged == 0 and again.n_before == len(paths)
    stripes("vertical", 128, seed=99).save(folder / "p000.jpg", quality=90)
    stripes("vertical", 128, seed=98).save(folder / "new.jpg", quality=90)
    third = tag_dataset([str(folder)], tmp_path / "out.parquet", progress=False)
    assert third.n_tagged == 2
    every = read_output(tmp_path / "out.parquet", latest=False).to_pylist()
    assert len(every) == len(paths) + 2  # the old row of p000.jpg stays beside the new one (another fingerprint)
    assert sorted(r["width"] for r in every if r["path"].endswith("p000.jpg")) == [96, 128]
    latest = rows_by_path(read_output(tmp_path / "out.parquet"))
    assert len(latest) == len(paths) + 1 and latest[str(folder / "p000.jpg")]["width"] == 128


def test_a_manifest_with_missing_files(local_ray, tmp_path):
    from estatelens.distributed import read_output, tag_dataset

    paths = make_photos(tmp_path / "photos", 4)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,listing\n" + "".join(f"{p},L1\n" for p in paths)
                        + "photos/gone.jpg,L2\n" + f"file://{paths[0]}\n")
    # As on a cluster (an address given): the bundle travels through the object store. Two
    # single-threaded actors on 2 CPUs would leave none for decoding: they reserve less, and run.
    s = tag_dataset([str(manifest)], tmp_path / "out.parquet", address=ray.get_runtime_context().gcs_address,
                    actors=2, progress=False)
    assert sum(s.per_worker.values()) == 6
    got = rows_by_path(read_output(tmp_path / "out.parquet"))
    assert s.n_total == 6
    assert got[str(tmp_path / "photos" / "gone.jpg")]["status"] == "file not found"
    assert got[f"file://{paths[0]}"]["status"] == "ok"
    assert got[f"file://{paths[0]}"]["probability"] == pytest.approx(got[paths[0]]["probability"], abs=1e-6)


def test_a_killed_job_resumes_and_tags_each_photo_once(tmp_path):
    from estatelens.distributed import read_output

    make_photos(tmp_path / "photos", 96, size=160)
    out = tmp_path / "out.parquet"
    cmd = [sys.executable, "-m", "estatelens", "tag", str(tmp_path / "photos"), "--engine", "ray", "--out", str(out),
           "--rows-per-file", "8", "--batch-size", "4", "--quiet"]
    env = {**os.environ, "RAY_ADDRESS": "", "RAY_DISABLE_USAGE_STATS": "1"}
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 240
    while not list(out.glob("part-*.parquet")):
        assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
        assert time.monotonic() < deadline, "no output within 4 minutes"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray instance it started
    proc.wait()
    first = read_output(out)
    assert 0 < first.num_rows < 96, "killed too late to test resuming"
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"{first.num_rows} already in" in done.stdout
    rows = rows_by_path(read_output(out))
    assert len(rows) == 96 and all(r["status"] == "ok" for r in rows.values())
    assert not list(out.glob(".tmp-*"))
