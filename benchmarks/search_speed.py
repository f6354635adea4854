"""How fast the photo index answers: median time of 100 searches over every photo of
../shared/data/houses (712 photos, 178 listings, tagged by the bundled model).

    python benchmarks/search_speed.py                      # SQLite; writes benchmarks/results/search_speed.md (+ .json)
    python benchmarks/search_speed.py --postgres postgresql://postgres@127.0.0.1:54329/postgres
    python benchmarks/search_speed.py --scale 100          # also an index 100 times larger (copied rows)

Each query is timed twice: `estatelens.index.search` called directly (parse, SQL, the page's
records), and `GET /api/search` through the FastAPI app in process (adds validation and JSON). The
100 queries cycle through a fixed mix of photo and listing searches, English and Swedish, with and
without filters and paging; the first pass over the mix is a warm-up and is not counted. With
--scale N the index's rows are copied N-1 times (new paths, same predictions and listings
multiplied), to show how the times grow with the index, without tagging N times as many photos.
"""
from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path

from tagging_speed import DATA, ROOT, machine

QUERIES = [
    "kitchen", "kök", "bathroom fireplace", "listings with a balcony and a fireplace", "exterior balcony>=0.3",
    "bedroom price<500000", "badrum pris<800000", "listings kitchen bathroom price<1000000", "fireplace",
    "sovrum med kakelugn", "room=kitchen fireplace<0.2", "listings bedrooms>=4", "living room", "",
    "exterior zipcode=92880", "houses with a kitchen", "balkong", "corrected=yes", "kitchen bedroom", "eldstad",
]
N_QUERIES = 100


def build_index(target: str, work: Path) -> float:
    from estatelens.cli import main

    t0 = time.time()
    rc = main(["index", "--listings", str(DATA / "houses" / "photos.csv"), "--facts", str(DATA / "houses" / "houses.csv"),
               "--db", target, "--quiet"])
    if rc != 0:
        sys.exit(f"indexing failed ({rc})")
    return time.time() - t0


def scale_up(engine, factor: int) -> None:
    """Copy every photo (and listing) factor-1 times under new paths and listing ids."""
    from sqlalchemy import insert, select

    from estatelens.index import db

    with engine.begin() as conn:
        photos = [dict(r._mapping) for r in conn.execute(select(db.photos))]
        scores = [dict(r._mapping) for r in conn.execute(select(db.room_scores))]
        attrs = [dict(r._mapping) for r in conn.execute(select(db.attributes))]
        listings = list(conn.execute(select(db.listings.c.id)).scalars())
        facts = [dict(r._mapping) for r in conn.execute(select(db.listing_facts))]
        next_id = max(p["id"] for p in photos) + 1
        for k in range(1, factor):
            conn.execute(insert(db.listings), [{"id": f"{lid}-{k}", "key": db.normalise(f"{lid}-{k}")} for lid in listings])
            conn.execute(insert(db.listing_facts), [{**f, "listing_id": f"{f['listing_id']}-{k}"} for f in facts])
            new_id = {}
            rows = []
            for p in photos:
                new_id[p["id"]] = next_id
                rows.append({**p, "id": next_id, "path_key": f"{p['path_key']}#{k}",
                             "listing_id": f"{p['listing_id']}-{k}" if p["listing_id"] else None})
                next_id += 1
            conn.execute(insert(db.photos), rows)
            conn.execute(insert(db.room_scores), [{**s, "photo_id": new_id[s["photo_id"]]} for s in scores])
            conn.execute(insert(db.attributes), [{**a, "photo_id": new_id[a["photo_id"]]} for a in attrs])
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")  # as `estatelens index` does after tagging


def time_queries(engine, app_client) -> dict:
    from estatelens.index import search

    def run(fn) -> list[float]:
        for q in QUERIES:  # warm-up: caches, query plans
            fn(q)
        times = []
        for i in range(N_QUERIES):
            q = QUERIES[i % len(QUERIES)]
            t0 = time.perf_counter()
            fn(q)
            times.append((time.perf_counter() - t0) * 1000)
        return times

    out = {}
    for name, fn in [("search()", lambda q: search(engine, q, page=1 + len(q) % 2, per_page=24)),
                     ("GET /api/search", lambda q: _get(app_client, q))]:
        t = run(fn)
        out[name] = {"median_ms": statistics.median(t), "p90_ms": sorted(t)[int(0.9 * len(t)) - 1],
                     "max_ms": max(t), "n": len(t)}
    per_query = {}
    for q in QUERIES:
        t = []
        for _ in range(5):
            t0 = time.perf_counter()
            r = search(engine, q, per_page=24)
            t.append((time.perf_counter() - t0) * 1000)
        per_query[q or "(empty: every photo)"] = {"median_ms": statistics.median(t), "total": r["total"],
                                                 "level": r["level"]}
    out["per_query"] = per_query
    return out


def _get(client, q: str) -> None:
    r = client.get("/api/search", params={"q": q, "page": 1 + len(q) % 2, "per_page": 24})
    if r.status_code != 200:
        raise RuntimeError(f"{q!r}: {r.status_code} {r.text}")


def measure(target: str, label: str, scale: int, work: Path) -> dict:
    from estatelens.index import connect
    from estatelens.web import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    index_s = build_index(target, work)
    engine = connect(target, create=False)
    results = {"backend": label, "index_seconds": index_s, "scales": {}}
    for factor in [1] + ([scale] if scale > 1 else []):
        if factor > 1:
            scale_up(engine, factor)
        app = create_app(target, token="benchmark", upload_dir=work / "uploads")
        with TestClient(app) as client:
            n = client.get("/api/health").json()
            r = time_queries(engine, client)
        r["photos"], r["listings"] = n["photos"], n["listings"]
        results["scales"][str(factor)] = r
        print(f"{label} x{factor}: {n['photos']} photos: search() median {r['search()']['median_ms']:.1f} ms, "
              f"GET /api/search median {r['GET /api/search']['median_ms']:.1f} ms", flush=True)
    engine.dispose()
    return results


def write_markdown(r: dict, path: Path) -> None:
    lines = ["# Search speed of the photo index", "",
             f"Written by `python benchmarks/search_speed.py {' '.join(r['argv'])}` on {r['date']}.", "",
             f"Machine: {r['machine']}.", "",
             "Index: every photo of ../shared/data/houses (`estatelens index --listings houses/photos.csv "
             "--facts houses/houses.csv`, bundled model). Bar: a search answers in under 50 ms "
             f"(median of {N_QUERIES} queries). Larger scales copy the rows (see the script).", "",
             "| backend | photos | listings | search() median | p90 | GET /api/search median | p90 | max |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for b in r["backends"]:
        for factor, s in b["scales"].items():
            f, a = s["search()"], s["GET /api/search"]
            lines.append(f"| {b['backend']} | {s['photos']:,} | {s['listings']:,} | **{f['median_ms']:.1f} ms** | "
                         f"{f['p90_ms']:.1f} ms | **{a['median_ms']:.1f} ms** | {a['p90_ms']:.1f} ms | "
                         f"{a['max_ms']:.1f} ms |")
    lines += ["", "Per query (search(), median of 5, first page of 24):", ""]
    for b in r["backends"]:
        for factor, s in b["scales"].items():
            lines += [f"**{b['backend']}, {s['photos']:,} photos**", "", "| query | level | hits | median |",
                      "|---|---|---:|---:|"]
            lines += [f"| `{q}` | {v['level']} | {v['total']:,} | {v['median_ms']:.1f} ms |"
                      for q, v in s["per_query"].items()]
            lines.append("")
    lines += ["Indexing the 712 photos (tagging included): " + ", ".join(
        f"{b['backend']} {b['index_seconds']:.0f} s" for b in r["backends"]) + ".", ""]
    path.write_text("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--postgres", help="also measure on this PostgreSQL server (a fresh database is made and dropped)")
    p.add_argument("--scale", type=int, default=1, help="also measure an index this many times larger")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "search_speed"))
    args = p.parse_args()
    if not (DATA / "houses" / "photos.csv").is_file():
        sys.exit(f"needs {DATA / 'houses'}")
    backends = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        backends.append(measure(str(work / "houses.db"), "SQLite", args.scale, work))
        if args.postgres:
            import psycopg

            name = f"estatelens_bench_{uuid.uuid4().hex[:8]}"
            base = args.postgres.replace("postgresql+psycopg://", "postgresql://")
            with psycopg.connect(base, autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE {name}")
            try:
                backends.append(measure(base.rsplit("/", 1)[0] + "/" + name, "PostgreSQL", args.scale, work))
            finally:
                with psycopg.connect(base, autocommit=True) as conn:
                    conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
    r = {"date": datetime.date.today().isoformat(), "machine": machine(), "argv": sys.argv[1:], "backends": backends}
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(r, indent=2))
    write_markdown(r, out.with_suffix(".md"))
    print(f"wrote {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
