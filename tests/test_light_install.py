"""The base install (no extras) tags, indexes, searches and serves without PyTorch, and a command
that needs an extra says which one. Built for real: a fresh virtual environment with
`pip install .` and nothing else (about a minute, from the local package index)."""
from __future__ import annotations

import os
import subprocess
import venv
from pathlib import Path

import pytest

from conftest import make_listing_folders

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def light_env(tmp_path_factory) -> Path:
    if os.environ.get("ESTATELENS_SKIP_LIGHT_INSTALL") == "1":
        pytest.skip("ESTATELENS_SKIP_LIGHT_INSTALL=1")
    env_dir = tmp_path_factory.mktemp("light") / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    # httpx only for starlette's TestClient below; nothing of estatelens needs it
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", str(ROOT), "httpx"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return env_dir


def _run(env_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(env_dir / "bin" / "estatelens"), *args], capture_output=True, text=True, cwd=cwd,
                          env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")})


def test_the_base_install_has_no_torch_and_tags_indexes_searches(light_env, tmp_path):
    py = str(light_env / "bin" / "python")
    for module in ("torch", "torchvision", "sklearn", "matplotlib"):
        assert subprocess.run([py, "-c", f"import {module}"], capture_output=True).returncode != 0, module
    # The installed package carries the whole bundled model: its heads as well as its network (as
    # many as the source tree holds), and the watermark network.
    source = ROOT / "src" / "estatelens" / "bundled"
    want = [str(len(list((source / "rooms.estatelens" / d).glob("*.json")))) for d in ("attributes", "also")]
    # and the opt-in rooms-attributes bundle, whose heads read its tail (the graph's outputs read by
    # ONNX Runtime: no onnx package here), with the room network's weights.pt shared, not copied
    tail = [str(len(list((source / "rooms-attributes.estatelens" / "attributes").glob("*.json"))))]
    heads = subprocess.run([py, "-c", "from estatelens.bundle import load_bundle; b = load_bundle('rooms'); "
                                      "from estatelens.watermarks.detector import MODEL; "
                                      "t = load_bundle('rooms-attributes'); "
                                      "print(len(b.attributes), len(b.also_heads), b.unusual is not None, MODEL.is_file(), "
                                      "len(t.attributes), (t.path / 'weights.pt').exists())"],
                           capture_output=True, text=True, cwd=tmp_path)
    assert heads.stdout.split() == [*want, "True", str((source / "watermark.onnx").is_file()), *tail, "False"], \
        heads.stdout + heads.stderr
    assert want[0] == tail[0] == "3"
    photos = make_listing_folders(tmp_path / "photos", size=200)
    tag = _run(light_env, "tag", str(photos), "--out", str(tmp_path / "tags.xlsx"), "--quiet", cwd=tmp_path)
    assert tag.returncode == 0, tag.stderr
    assert "12 tagged" in tag.stdout
    index = _run(light_env, "index", str(photos), "--facts", str(photos / "facts.csv"), "--db", str(tmp_path / "x.db"),
                 "--quiet", cwd=tmp_path)
    assert index.returncode == 0, index.stderr
    search = _run(light_env, "search", "listings price<400000", "--db", str(tmp_path / "x.db"), cwd=tmp_path)
    assert search.returncode == 0 and "L1" in search.stdout and "L2" in search.stdout, search.stdout + search.stderr
    serve = subprocess.run([py, "-c", (
        "from estatelens.web import create_app; from starlette.testclient import TestClient\n"
        f"c = TestClient(create_app({str(tmp_path / 'x.db')!r}, token='t' * 12))\n"
        "print(c.get('/api/search').status_code, c.get('/api/photos/1/thumbnail').status_code, "
        "c.get('/api/photos/1/heatmap/room_type').status_code)")], capture_output=True, text=True)
    assert serve.stdout.split() == ["200", "200", "503"], serve.stdout + serve.stderr  # heatmaps need [train]


def test_a_command_that_needs_an_extra_names_it(light_env, tmp_path):
    photos = make_listing_folders(tmp_path / "photos", size=200)
    r = _run(light_env, "train", str(photos), "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert r.returncode == 2 and "pip install 'estatelens[train]'" in r.stderr, r.stderr
    r = _run(light_env, "explain", str(photos / "L1" / "0.jpg"), "--out", str(tmp_path / "heat"), cwd=tmp_path)
    assert r.returncode == 2 and "[train]" in r.stderr, r.stderr
