#!/usr/bin/env python
"""Take docs/screenshot.png: the page of `estatelens serve` showing a search with results.

Starts `estatelens serve` over an index (the committed one is of the shared houses photos:
`estatelens index --listings ../shared/data/houses/photos.csv --facts ../shared/data/houses/houses.csv
--db houses.db`), opens the page in Debian's chromium with Playwright at 1280x800, waits for the
thumbnails, saves the screenshot and stops the server.

    python tools/screenshot.py --db houses.db [--query kitchen] [--out docs/screenshot.png]

The PNG is quantised to 256 colours (dithered): a full-colour one of a page of photos is ~800 KB.
"""
from __future__ import annotations

import argparse
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", required=True, help="the index to show (SQLite file or database URL)")
    ap.add_argument("--query", default="kitchen")
    ap.add_argument("--level", default="", choices=["", "photo", "listing"])
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshot.png"))
    ap.add_argument("--port", type=int, default=0, help="default: a free one")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=800)
    ap.add_argument("--colors", type=int, default=256,
                    help="quantise the PNG to this many colours to keep it small (0: keep full colour)")
    a = ap.parse_args()
    if not Path(a.db).exists() and "://" not in a.db:
        sys.exit(f"{a.db}: no such index (build it with estatelens index first)")
    from playwright.sync_api import sync_playwright

    port = a.port or free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ)
    env.setdefault("ESTATELENS_HOME", str(Path(tempfile.gettempdir()) / "elhome"))
    server = subprocess.Popen([sys.executable, "-m", "estatelens", "serve", "--db", a.db, "--port", str(port),
                               "--token", "screenshot", "--threads", "2"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                sys.exit(f"estatelens serve stopped: {server.stderr.read().decode(errors='replace')[-2000:]}")
            try:
                urllib.request.urlopen(base + "/api/health", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    sys.exit("estatelens serve did not answer within 60 s")
                time.sleep(0.3)
        params = {"q": a.query, **({"level": a.level} if a.level else {})}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=ARGS)
            page = browser.new_page(viewport={"width": a.width, "height": a.height})
            page.goto(f"{base}/#/search?{urllib.parse.urlencode(params, quote_via=urllib.parse.quote)}")
            page.wait_for_selector('[data-testid="result-count"], [data-testid="search-error"]', timeout=60_000)
            if page.locator('[data-testid="results"]').count() == 0:
                sys.exit(f"no results to show for {a.query!r}: {page.locator('main').inner_text()[:300]}")
            # Every thumbnail in view has loaded (the lazy ones below the fold need not).
            page.wait_for_function("""() => [...document.querySelectorAll('[data-testid=results] img')]
                .filter(i => i.getBoundingClientRect().top < innerHeight).every(i => i.complete && i.naturalWidth > 0)""",
                                   timeout=60_000)
            out = Path(a.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            png = page.screenshot()
            browser.close()
        from PIL import Image

        im = Image.open(io.BytesIO(png)).convert("RGB")
        if a.colors:
            im = im.quantize(colors=a.colors, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.FLOYDSTEINBERG)
        im.save(out, optimize=True)
        print(f"{out}: {out.stat().st_size // 1024} KB")
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
