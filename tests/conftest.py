"""Small real inputs, made on the fly: photos with a known pattern, and broken files of every kind."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    # Caches and bundled-model builds go to a per-session folder, never the user's home.
    monkeypatch.setenv("ESTATELENS_HOME", str(tmp_path_factory.getbasetemp() / "estatelens-home"))


def stripes(orientation: str, size: int = 64, seed: int = 0) -> Image.Image:
    """A photo-like image of coloured stripes; the orientation is the class."""
    rng = np.random.default_rng(seed)
    period = int(rng.integers(6, 14))
    phase = int(rng.integers(0, period))
    idx = np.arange(size)
    band = ((idx + phase) // (period // 2)) % 2
    mask = band[:, None].repeat(size, 1) if orientation == "horizontal" else band[None, :].repeat(size, 0)
    c1, c2 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    img = np.where(mask[..., None] == 1, c1, c2).astype(np.float32)
    img += rng.normal(0, 12, img.shape)
    return Image.fromarray(img.clip(0, 255).astype(np.uint8), "RGB")


def make_stripes_dataset(root: Path, per_class: int = 40, size: int = 64, splits: bool = False) -> Path:
    """root/{horizontal,vertical}/*.jpg (or under train/val/test when `splits`)."""
    for c, orientation in enumerate(("horizontal", "vertical")):
        for i in range(per_class):
            split = ("train", "val", "test")[0 if i % 5 < 3 else (1 if i % 5 == 3 else 2)] if splits else ""
            d = root / split / orientation
            d.mkdir(parents=True, exist_ok=True)
            stripes(orientation, size, seed=1000 * c + i).save(d / f"{orientation}_{i:03d}.jpg", quality=92)
    return root


@pytest.fixture
def stripes_dataset(tmp_path) -> Path:
    return make_stripes_dataset(tmp_path / "stripes", per_class=40)


def write_broken_files(folder: Path) -> dict[str, str]:
    """Every kind of bad file a photo folder holds in practice; returns {name: expected reason part}."""
    folder.mkdir(parents=True, exist_ok=True)
    good = stripes("horizontal", 96)
    good.save(folder / "whole.jpg", quality=90)
    data = (folder / "whole.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("this is a text file, not a photo\n")
    stripes("vertical", 12).save(folder / "tiny.jpg")
    return {"truncated.jpg": "truncated", "empty.jpg": "empty", "notes.jpg": "not an image",
            "tiny.jpg": "too small"}


def write_odd_but_valid_files(folder: Path) -> list[str]:
    """Colour modes and formats that must decode to RGB."""
    folder.mkdir(parents=True, exist_ok=True)
    base = stripes("vertical", 80)
    base.convert("CMYK").save(folder / "cmyk.jpg")
    arr16 = (np.asarray(base.convert("L"), dtype=np.uint16) * 257)
    Image.fromarray(arr16).save(folder / "sixteen_bit.png")
    rgba = base.convert("RGBA")
    rgba.putalpha(128)
    rgba.save(folder / "alpha.png")
    base.convert("L").save(folder / "grey.jpg")
    base.convert("P").save(folder / "palette.gif")
    return ["cmyk.jpg", "sixteen_bit.png", "alpha.png", "grey.jpg", "palette.gif"]


def has_shared_data() -> bool:
    return (SHARED_DATA / "rooms-web").is_dir()


os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def stripes_bundle(tmp_path_factory) -> Path:
    """A small RoomNet trained from scratch to tell horizontal from vertical stripes (64 px)."""
    from estatelens.cli import main

    root = tmp_path_factory.mktemp("stripes-model")
    data = make_stripes_dataset(root / "data", per_class=30, splits=True)
    assert main(["train", str(data), "--model", "roomnet", "--mode", "scratch", "--epochs", "12",
                 "--image-size", "64", "--batch-size", "8", "--workers", "0", "--out", str(root / "run"),
                 "--cache-dir", str(root / "cache")]) == 0
    return root / "run" / "model.estatelens"


@pytest.fixture(scope="session")
def stripes_oracle(tmp_path_factory) -> Path:
    """A real bundle (ONNX graph, bundle.json) whose network tells horizontal from vertical
    stripes by comparing brightness changes down and across the photo: right on every stripes
    photo, with probabilities that vary from photo to photo, and no training to wait for.
    Tagging tests use it, so that they test the tagger, not a tiny network's luck."""
    import torch

    from estatelens.bundle import save_bundle
    from estatelens.data.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocessing

    class Stripes(torch.nn.Module):
        def forward(self, x):
            grey = x.mean(1)
            down = (grey[:, 1:, :] - grey[:, :-1, :]).abs().mean((1, 2))
            across = (grey[:, :, 1:] - grey[:, :, :-1]).abs().mean((1, 2))
            d = 3.0 * (down - across)
            return torch.stack([d, -d], 1)

    path = tmp_path_factory.mktemp("oracle") / "stripes"
    return save_bundle(path, Stripes(), ["horizontal", "vertical"], Preprocessing(64, IMAGENET_MEAN, IMAGENET_STD),
                       {"model": "stripes-oracle"}, include_weights=False).path


def make_listing_folders(root: Path, listings: int = 3, per_listing: int = 4, size: int = 320) -> Path:
    """root/<listing>/<n>.jpg: stripes photos in listing folders (L1, L2, ...), and root/facts.csv
    with a price and an area per listing."""
    root.mkdir(parents=True, exist_ok=True)
    rows = ["listing_id,price,area,city"]
    for i in range(1, listings + 1):
        d = root / f"L{i}"
        d.mkdir(exist_ok=True)
        for k in range(per_listing):
            stripes(("horizontal", "vertical")[k % 2], size, seed=100 * i + k).save(d / f"{k}.jpg", quality=90)
        rows.append(f"L{i},{i * 150000},{40 + 10 * i},{'Stockholm' if i % 2 else 'Uppsala'}")
    (root / "facts.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="session")
def listing_index(tmp_path_factory) -> tuple[Path, Path]:
    """(SQLite index, photo folder): make_listing_folders indexed with the bundled model. Built
    once; copy the file (index_copy) before writing to it."""
    from estatelens.cli import main

    root = tmp_path_factory.mktemp("index")
    photos = make_listing_folders(root / "photos")
    db = root / "listings.db"
    assert main(["index", str(photos), "--facts", str(photos / "facts.csv"), "--db", str(db), "--quiet"]) == 0
    return db, photos


@pytest.fixture
def index_copy(listing_index, tmp_path) -> Path:
    """A private copy of listing_index's database, free to write to."""
    import sqlite3

    dest = tmp_path / "listings.db"
    with sqlite3.connect(listing_index[0]) as src, sqlite3.connect(dest) as out:
        src.backup(out)
    return dest


# --- PostgreSQL (bash .ci/run starts a server; elsewhere these tests skip) -----------------------

def _postgres_url() -> str:
    url = os.environ.get("ESTATELENS_TEST_POSTGRES")
    if not url:
        if os.environ.get("ESTATELENS_REQUIRE_POSTGRES") == "1":
            pytest.fail("ESTATELENS_REQUIRE_POSTGRES=1 but ESTATELENS_TEST_POSTGRES is not set")
        pytest.skip("no PostgreSQL server: set ESTATELENS_TEST_POSTGRES=postgresql://user@host:port/db "
                    "(bash .ci/run starts one)")
    return url


@pytest.fixture
def postgres_db():
    """A fresh PostgreSQL database on the test server, dropped afterwards."""
    import psycopg

    base = _postgres_url()
    name = f"estatelens_test_{uuid.uuid4().hex[:10]}"
    plain = base.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = plain.rsplit("/", 1)[0] + "/" + name
    yield url
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
