"""Load on `estatelens serve`: 1, 8 and 32 concurrent clients on search, listing pages and
thumbnails, for a while each, on SQLite and (with --postgres) PostgreSQL; requests/s, p50 and p99
latency and errors, written to benchmarks/results/serve_load.md (and .json).

    python benchmarks/serve_load.py [--seconds 60] [--clients 1,8,32] [--postgres postgresql://.../db]

The index is every photo of ../shared/data/houses with its listings and facts (built once under
runs/serve-load/). The server runs as `estatelens serve` in its own process, on loopback; the
clients are threads of this process, each with its own HTTP connection, like browser tabs. A client
mixes what the page does: a search (half the requests: photo and listing level, words, filters,
pages 1-3), a listing page (a fifth), a thumbnail (the rest; no If-None-Match, as a browser with an
empty cache). On 2 cores the clients and the server share the machine: the figures are what one
small machine serves to itself, a floor for a server with its own cores.
"""
from __future__ import annotations

import argparse
import json
import random
import socket
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import httpx

from tagging_speed import DATA, ROOT, machine
QUERIES = ["kitchen", "bedroom", "bathroom fireplace", "listings price<400000", "listings bedrooms>=3",
           "kök", "exterior", "living room", "listings area_sqft>2000 kitchen", "fireplace>0.3", "room=bedroom",
           "listings zipcode=92880", "balcony", "kitchen corrected=no", "listings"]


def build_index(db: str) -> None:
    houses = DATA / "houses"
    cmd = [sys.executable, "-m", "estatelens", "index", "--listings", str(houses / "photos.csv"),
           "--facts", str(houses / "houses.csv"), "--db", db, "--quiet"]
    subprocess.run(cmd, check=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(db: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "estatelens", "serve", "--db", db, "--port", str(port),
                             "--token", "load-test-token"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(base + "/api/health", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(proc.stderr.read().decode(errors="replace"))
        time.sleep(0.2)
    raise RuntimeError("the server did not start")


def run_load(base: str, clients: int, seconds: float, photo_ids: list[int], listing_ids: list[str], seed: int) -> dict:
    stop = time.time() + seconds
    lat: dict[str, list[float]] = {"search": [], "listing": [], "thumbnail": []}
    errors: dict[str, int] = {}
    lock = threading.Lock()

    def client(k: int) -> None:
        rnd = random.Random(seed * 1000 + k)
        with httpx.Client(base_url=base, timeout=30) as c:
            while time.time() < stop:
                r = rnd.random()
                if r < 0.5:
                    kind, url = "search", "/api/search"
                    params = {"q": rnd.choice(QUERIES), "page": rnd.randint(1, 3)}
                elif r < 0.7:
                    kind, url, params = "listing", f"/api/listings/{rnd.choice(listing_ids)}", None
                else:
                    kind, url, params = "thumbnail", f"/api/photos/{rnd.choice(photo_ids)}/thumbnail", None
                t0 = time.perf_counter()
                try:
                    resp = c.get(url, params=params)
                    status = resp.status_code
                except httpx.HTTPError as e:
                    status = type(e).__name__
                dt = time.perf_counter() - t0
                with lock:
                    if status == 200:
                        lat[kind].append(dt)
                    else:
                        errors[f"{kind} {status}"] = errors.get(f"{kind} {status}", 0) + 1

    t0 = time.time()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.time() - t0
    every = sorted(x for v in lat.values() for x in v)

    def pct(xs: list[float], q: float) -> float | None:
        return round(1000 * xs[min(len(xs) - 1, int(q * len(xs)))], 1) if xs else None

    return {"clients": clients, "seconds": round(wall, 1), "requests": len(every) + sum(errors.values()),
            "requests_per_second": round((len(every) + sum(errors.values())) / wall, 1),
            "p50_ms": pct(every, 0.5), "p99_ms": pct(every, 0.99), "errors": errors,
            "per_kind": {k: {"n": len(v), "p50_ms": pct(sorted(v), 0.5), "p99_ms": pct(sorted(v), 0.99)}
                         for k, v in lat.items()}}


def measure(db: str, label: str, clients: list[int], seconds: float) -> list[dict]:
    proc, base = start_server(db)
    try:
        photos = httpx.get(base + "/api/search", params={"per_page": 200}).json()["results"]
        listings = httpx.get(base + "/api/search", params={"q": "listings", "per_page": 200}).json()["results"]
        photo_ids, listing_ids = [p["id"] for p in photos], [str(x["id"]) for x in listings]
        out = []
        for n in clients:
            r = run_load(base, n, seconds, photo_ids, listing_ids, seed=n)
            r["database"] = label
            out.append(r)
            print(f"{label}: {n} clients: {r['requests_per_second']} req/s, p50 {r['p50_ms']} ms, "
                  f"p99 {r['p99_ms']} ms, errors {sum(r['errors'].values())}")
        return out
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0, help="how long each number of clients runs (default 60)")
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--postgres", help="an empty PostgreSQL database URL to index into and serve too")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "serve_load.md"))
    args = ap.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    work = ROOT / "runs" / "serve-load"
    work.mkdir(parents=True, exist_ok=True)
    sqlite_db = str(work / "houses.db")
    if not Path(sqlite_db).exists():
        build_index(sqlite_db)
    results = measure(sqlite_db, "SQLite", clients, args.seconds)
    if args.postgres:
        build_index(args.postgres)
        results += measure(args.postgres, "PostgreSQL", clients, args.seconds)

    command = "python benchmarks/serve_load.py " + " ".join(sys.argv[1:]).replace(args.postgres or "\0", "URL")
    lines = ["# Load on `estatelens serve`", "",
             f"Written by `{command}` on {date.today()}; {machine()} (clients and server share the cores). Index: the 712 photos and 178 listings of "
             f"../shared/data/houses. Each number of clients runs {args.seconds:g} s; a request mix of searches "
             "(half), listing pages (a fifth) and thumbnails (the rest, no browser cache).", "",
             "| database | clients | requests/s | p50 | p99 | errors | search p50 / p99 | listing p50 / p99 | thumbnail p50 / p99 |",
             "|---|---:|---:|---:|---:|---:|---|---|---|"]
    for r in results:
        k = r["per_kind"]
        lines.append(f"| {r['database']} | {r['clients']} | {r['requests_per_second']} | {r['p50_ms']} ms | "
                     f"{r['p99_ms']} ms | {sum(r['errors'].values())} | "
                     + " | ".join(f"{k[x]['p50_ms']} / {k[x]['p99_ms']} ms" for x in ("search", "listing", "thumbnail")) + " |")
    errs = {f"{r['database']} {r['clients']}": r["errors"] for r in results if r["errors"]}
    lines += ["", "Errors: " + (json.dumps(errs) if errs else "none."), ""]
    Path(args.out).write_text("\n".join(lines), encoding="utf-8")
    Path(args.out).with_suffix(".json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
