"""Index and web commands: index, search, serve, export-labels.

Each command's parser is declared here beside its handler; cli.py puts them together."""
from __future__ import annotations

import argparse
import sys

from . import DEFAULT_MODEL, positive_int
from .tagging import _add_tagger_options, add_check_options, min_size_of


def add_parsers(sub) -> None:
    ix = sub.add_parser("index", help="tag photos into a searchable index (SQLite or PostgreSQL)", description=(
        "Tag photos with MODEL and store them, with their listing, room type, every room type's and\n"
        "attribute's probability, the model's version and the time, in a database: a SQLite file\n"
        "(--db listings.db) or PostgreSQL (--db postgresql://user:password@host/name).\n"
        "A photo's listing comes from --listings CSV (path,listing_id plus listing columns such as\n"
        "price or area; house_id is read as listing_id) or, without one, from the folders:\n"
        "PATH/<listing>/photo.jpg. Every batch is committed as it is tagged: an interrupted run\n"
        "resumes by running the same command, and photos already indexed by the same model from\n"
        "unchanged files are not tagged again. Indexing again with another model re-tags every\n"
        "photo and keeps the corrections people made."),
        epilog=("examples:\n  estatelens index listings/ --db listings.db\n"
                "  estatelens index --listings photos.csv --facts houses.csv --db houses.db\n"
                "  estatelens index new-photos/ --db postgresql://estatelens@localhost/portal"),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ix.add_argument("paths", nargs="*", metavar="PATH", help="photo, folder (one subfolder per listing) or .txt list of paths")
    ix.add_argument("--db", required=True, help="SQLite file or database URL (postgresql://...)")
    ix.add_argument("--listings", metavar="CSV", help=(
        "photo -> listing: columns path,listing_id (or house_id) and any listing columns (price, area, ...); "
        "paths relative to the CSV; its photos are indexed even when no PATH is given"))
    ix.add_argument("--facts", metavar="CSV", help="more listing columns: listing_id (or house_id) and columns")
    ix.add_argument("--retag", action="store_true", help="tag every photo again even when the index has it from this model")
    ix.add_argument("--value-model", metavar="MODEL", help=(
        "a price model (`estatelens value fit`): store each listing's estimate, its 80 %% interval, "
        "what moved it and price_to_value as listing columns (search: value<500000, price/value<0.9); "
        "its photo features take one more pass over the photos, cached for later runs"))
    add_check_options(ix, "stored; search quality=fail, faces>0, watermark=yes, duplicates, duplicates=across")
    _add_tagger_options(ix)
    ix.set_defaults(func=cmd_index)

    se = sub.add_parser("search", help="search the index: words, filters, listings", description=(
        "Search an index built by `estatelens index`. Words name room types and attributes, in\n"
        "English or Swedish (kitchen, kök, bathroom, badrum, bedroom, sovrum, living room,\n"
        "vardagsrum, balcony, balkong, fireplace, eldstad, kakelugn, ...); filters are FIELD OP VALUE\n"
        "with OP one of = != < <= > >= (room=kitchen, balcony>=0.9, fireplace=no, price<500000,\n"
        "listing=12, corrected=yes). A word such as 'listings' or 'houses' (or --listings) asks for\n"
        "listings in which some photo meets each word and filter. Results are ranked by the\n"
        "product of the probabilities asked for (1 or 0 where a person corrected the tag)."),
        epilog=('examples:\n  estatelens search "kitchen fireplace" --db listings.db\n'
                '  estatelens search "kök med kakelugn" --db listings.db\n'
                '  estatelens search "listings with a balcony and a fireplace price<500000" --db listings.db\n'
                '  estatelens search "balcony>=0.9" --db listings.db --json'),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    se.add_argument("query", nargs="*", help="words and filters (empty: every photo, most confident first)")
    se.add_argument("--db", required=True, help="SQLite file or database URL")
    se.add_argument("--listings", dest="level", action="store_const", const="listing",
                    help="return listings, not photos")
    se.add_argument("--page", type=positive_int, default=1, help="which page of the results (default 1)")
    se.add_argument("--per-page", type=positive_int, default=20, help="results per page (default 20)")
    se.add_argument("--json", action="store_true", help="print the whole answer as JSON (as the API gives it)")
    se.set_defaults(func=cmd_search)

    sv = sub.add_parser("serve", help="web app and API over an index: browse, search, upload, correct tags",
                        description=(
        "Serve the index over HTTP: a page to search, filter, browse listings, see a photo with its\n"
        "heatmaps, upload photos to tag and correct tags with one click, and the JSON API behind it\n"
        "(OpenAPI schema at /docs and /openapi.json). Every write (upload, correction) and the labels\n"
        "export need the write token, given with --token or $ESTATELENS_TOKEN, or else made up and\n"
        "printed at start-up; the page asks for it once and keeps it in the browser. Server paths of\n"
        "photos are shown only to requests with the write token (others see file names).\n\n"
        "On this machine only (the default, 127.0.0.1) reads are open. To serve other machines\n"
        "(--host 0.0.0.0), protect reads with --read-token (people open /?token=READ_TOKEN once;\n"
        "the page keeps it in a cookie), or say --public to let anyone who reaches the port search\n"
        "and see the photos. Use a TLS proxy in front when the network is not yours: tokens travel\n"
        "in plain HTTP otherwise."),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sv.add_argument("--db", required=True, help="SQLite file or database URL")
    sv.add_argument("--model", default=DEFAULT_MODEL, help=(
        f"bundle that tags uploads and draws heatmaps (default {DEFAULT_MODEL})"))
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--token", help="the write token (default: $ESTATELENS_TOKEN, else a random one printed at start)")
    sv.add_argument("--upload-dir", help="where uploaded photos are kept (default: <db>.uploads/ beside a SQLite file, "
                                         "else ~/.cache/estatelens/uploads)")
    sv.add_argument("--read-token", help=(
        "reads need this token too (default: $ESTATELENS_READ_TOKEN; none on this machine only); "
        "required with --host other than loopback unless --public"))
    sv.add_argument("--public", action="store_true", help=(
        "serve other machines without a read token: anyone who reaches the port can search and see "
        "every photo and listing of the index"))
    sv.add_argument("--uploads-per-minute", type=positive_int, default=30, help="uploads one client may make a minute (default 30)")
    sv.add_argument("--max-upload-mb", type=float, default=20.0, help="largest accepted upload (default 20 MB)")
    sv.add_argument("--threads", type=positive_int, help="ONNX Runtime threads (default: all cores)")
    sv.set_defaults(func=cmd_serve)

    xl = sub.add_parser("export-labels", help="write the corrections people made as training data", description=(
        "Write the index's corrections as a CSV the trainers read: path,label,<attribute>...,group.\n"
        "`estatelens train labels.csv` learns room types from label; `estatelens train-attribute\n"
        "fireplace labels.csv` learns from the fireplace column. group is the listing, so a listing\n"
        "never straddles two splits."), formatter_class=argparse.RawDescriptionHelpFormatter)
    xl.add_argument("--db", required=True, help="SQLite file or database URL")
    xl.add_argument("--out", required=True, help="CSV file to write")
    xl.add_argument("--target", default="all", help="all (default), room_type, or one attribute")
    xl.set_defaults(func=cmd_export_labels)



def cmd_index(args) -> int:
    from ..bundle import load_bundle
    from ..index import connect, index_photos, read_listings

    if not args.paths and not args.listings:
        raise ValueError("give photos or folders to index, or --listings CSV")
    from ..checks.photo import make_checker

    listings = read_listings(args.listings, args.facts)
    checks = make_checker(args.checks, args.faces, min_size_of(args), args.watermarks)
    bundle = load_bundle(args.model)
    bundle.session(args.threads)
    engine = connect(args.db)
    for w in listings.warnings:
        print(f"warning: {w}", file=sys.stderr)
    try:
        s = index_photos(bundle, args.paths, engine, listings=listings, retag=args.retag,
                         batch_size=args.batch_size, workers=args.workers, progress=not args.quiet, checks=checks)
    finally:
        engine.dispose()  # SQLite folds its write-ahead log into the file: one file to copy
    print(f"{s.n_found} photos: {s.n_tagged} tagged, {s.n_unchanged} already indexed, {s.n_unusable} unusable; "
          f"{s.n_listings} listings in the index ({s.seconds:.0f} s)"
          + (f"; {s.n_not_images} files that are not photos left out" if s.n_not_images else ""))
    if s.n_duplicate_groups is not None:
        print(f"checks stored; {s.n_duplicate_groups} groups of near-duplicate photos in the index")
    for path, reason in s.unusable_examples:
        print(f"  unusable {path}: {reason}")
    if args.value_model:
        from ..index.values import store_value_estimates

        engine = connect(args.db)
        try:
            n, problems = store_value_estimates(engine, args.value_model, progress=not args.quiet)
        finally:
            engine.dispose()
        for line in problems[:20]:
            print(f"  warning: {line}", file=sys.stderr)
        print(f"{n} listings valued with {args.value_model}")
    return 0



def _checks_said(c: dict) -> str:
    """A listing's publishability counts in words, saying which checks were not run."""
    parts = [f"{c['unusable']} unusable files"] if c["unusable"] else []
    parts += [f"{c['quality_fail']} fail quality",
              f"{c['with_watermark']} with a watermark" if c["watermarks_checked"] else "watermarks not checked",
              f"{c['with_faces']} with faces" if c["faces_checked"] else "faces not checked",
              f"{c['copied_from_other_listings']} copied from other listings"]
    return ", ".join(parts)


def cmd_search(args) -> int:
    import json

    from ..index import connect, search

    result = search(connect(args.db, create=False), " ".join(args.query), level=args.level, page=args.page,
                    per_page=args.per_page)
    q = result["interpreted"]
    if q["ignored"] and not q["terms"] and not q["listing_filters"]:
        # nothing left to filter on: the whole index would come back as if it matched
        print(f"error: nothing in the query was understood ({', '.join(q['ignored'])}); it reads room types "
              "(kitchen), attributes (fireplace, fireplace>0.3), checks (quality=fail, watermark=yes) and "
              "listing facts: see `estatelens search --help`", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
        return 0
    said = [t["said"] or t["name"] for t in q["terms"]] + [f["said"] for f in q["listing_filters"]]
    print(f"{result['total']} {result['level']}s" + (f" for {', '.join(said)}" if said else "")
          + (f" (page {result['page']} of {result['pages']})" if result["pages"] > 1 else ""))
    if q["ignored"]:
        print(f"  not understood, left out: {', '.join(q['ignored'])}", file=sys.stderr)
    for r in result["results"]:
        if result["level"] == "photo":
            attrs = " ".join(f"{k}={v['value']}{'*' if v['corrected'] else ''}({v['probability']:.2f})"
                             for k, v in r["attributes"].items())
            print(f"{r['score']:.3f}  {r['room_type']}{'*' if r['room_corrected'] else ''}  {attrs}  "
                  f"listing={r['listing_id'] or '-'}  {r['path']}{_checks_text(r['checks'])}")
        else:
            facts = " ".join(f"{k}={v}" for k, v in r["facts"].items())
            hits = sum(1 for p in r["photos"] if p.get("matched"))
            c = r.get("checks")
            verdict = "" if not c else f"  {'publishable' if c['publishable'] else 'not publishable'}: " + _checks_said(c)
            print(f"{r['score']:.3f}  listing {r['id']}  {r['n_photos']} photos ({hits} matching)  {facts}{verdict}")
    if any(r.get("room_corrected") for r in result["results"]):
        print("(* corrected by a person)")
    return 0


def _checks_text(c: dict | None) -> str:
    """A photo's failed checks, for the search listing ('' where it passed or was not checked)."""
    if not c:
        return ""
    parts = list(c["quality_reasons"])
    if c["watermark"] == "yes":
        parts.append(f"watermark ({c['watermark_probability']:.2f})")
    if c["faces"]:
        parts.append(f"{c['faces']} face{'s' if c['faces'] > 1 else ''}")
    if c["duplicate_listings"]:
        parts.append(f"also in listing {', '.join(c['duplicate_listings'])}")
    elif c["duplicates"]:
        parts.append("a near copy of another photo of this listing")
    return f"  [{'; '.join(parts)}]" if parts else ""


def cmd_serve(args) -> int:
    import os
    import secrets

    import uvicorn

    from ..web import create_app

    read_token = args.read_token or os.environ.get("ESTATELENS_READ_TOKEN") or None
    check_exposure(args.host, read_token, args.public)
    token = args.token or os.environ.get("ESTATELENS_TOKEN")
    if not token:
        token = secrets.token_urlsafe(18)
        print(f"write token (uploads, corrections): {token}")
    app = create_app(args.db, model=args.model, token=token, read_token=read_token, upload_dir=args.upload_dir,
                     max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), threads=args.threads,
                     uploads_per_minute=args.uploads_per_minute)
    where = f"http://{args.host}:{args.port}/"
    print(f"estatelens: {where}" + (f"?token={read_token}  (the read token; the page keeps it)" if read_token else "")
          + "  (API schema: /docs)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0



def check_exposure(host: str, read_token: str | None, public: bool) -> None:
    """Serving beyond this machine needs reads protected (--read-token) or said to be open (--public)."""
    import ipaddress

    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        loopback = False
    if not loopback and not read_token and not public:
        raise ValueError(f"--host {host} serves other machines: give --read-token TOKEN (or $ESTATELENS_READ_TOKEN) "
                         f"so that reads need it, or --public to let anyone who reaches the port search and see "
                         f"every photo")
    if read_token and public:
        raise ValueError("--public and --read-token contradict each other: choose one")



def cmd_export_labels(args) -> int:
    from ..index import connect, export_labels

    counts = export_labels(connect(args.db, create=False), args.out, args.target)
    print(f"{counts['photos']} corrected photos -> {args.out} (" + ", ".join(
        f"{k}: {v}" for k, v in counts.items() if k != "photos") + ")")
    return 0

