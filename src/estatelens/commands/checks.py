"""Listing checks: duplicates.

Each command's parser is declared here beside its handler; cli.py puts them together."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import DEFAULT_MODEL

DUPLICATE_COLUMNS = ["group", "path", "listing_id", "listings", "across_listings", "closest", "hash_bits", "cosine"]


def add_parsers(sub) -> None:
    from ..checks.duplicates import DEFAULT_CONFIRM_BITS, DEFAULT_COSINE, DEFAULT_HASH_BITS, HASH_ONLY_BITS

    d = sub.add_parser("duplicates", help="find photos used twice, within a listing or across listings",
                       description=(
        "Group near-duplicate photos under PATH... (files, folders, .txt lists): the same photo\n"
        "resized, recompressed, re-cropped by up to about 10 %, brightened, slightly rotated or\n"
        "mirrored. A pair is a duplicate when its perceptual hashes (pHash of the whole photo and of\n"
        "its central 90 %, each also mirrored) differ in at most --hash-bits bits, or in at most\n"
        "--confirm-bits with the tagger's embeddings at a cosine of at least --cosine (one network\n"
        "pass per photo; --hashes-only skips it, and the distance alone decides). The defaults were chosen\n"
        "on generated pairs against distinct photos of the same room type, and on real pairs\n"
        "labelled by eye (benchmarks/results/duplicates.md).\n"
        "A photo's listing comes from --listings CSV (path,listing_id) or from the folders:\n"
        "PATH/<listing>/photo.jpg. Writes one row per photo that has a duplicate: its group, listing,\n"
        "the group's listings (across_listings: the same photo in several listings, a sign of a\n"
        "copied listing), its closest match and how close. Unusable files are reported and skipped."),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("paths", nargs="+", metavar="PATH")
    d.add_argument("--out", default="duplicates.csv", help=(
        "the groups as .csv (default duplicates.csv), .xlsx, .json, .jsonl or .parquet, by its extension"))
    d.add_argument("--listings", metavar="CSV", help="path,listing_id (house_id is read as listing_id)")
    d.add_argument("--hash-bits", type=int,
                   help=f"most differing hash bits of a duplicate, of 64 (default {DEFAULT_HASH_BITS}"
                        + (f"; {HASH_ONLY_BITS} with --hashes-only)" if HASH_ONLY_BITS != DEFAULT_HASH_BITS else ")"))
    d.add_argument("--confirm-bits", type=int, default=DEFAULT_CONFIRM_BITS,
                   help=f"most differing bits of a pair the embeddings confirm (default {DEFAULT_CONFIRM_BITS})")
    d.add_argument("--cosine", type=float, default=DEFAULT_COSINE,
                   help=f"least embedding cosine that confirms a pair (default {DEFAULT_COSINE})")
    d.add_argument("--hashes-only", action="store_true",
                   help="no network pass: hashes alone (catches resized, recompressed and mirrored copies, "
                        "fewer slightly rotated ones)")
    d.add_argument("--model", default=DEFAULT_MODEL, help="bundle whose embeddings are compared (default rooms)")
    d.add_argument("--quiet", action="store_true", help="no progress bars")
    d.set_defaults(func=cmd_duplicates)


def cmd_duplicates(args) -> int:
    from ..checks.duplicates import DEFAULT_HASH_BITS, HASH_ONLY_BITS, Photo, find_pairs, group, hash_photos
    from ..checks.embeddings import embed
    from ..data.images import is_image_name
    from ..index.build import photos_with_listing, read_listings
    from ..tagging.writers import check_output_path, write_rows

    out = check_output_path(args.out)  # an unknown format fails before any work
    if args.hash_bits is None:
        args.hash_bits = HASH_ONLY_BITS if args.hashes_only else DEFAULT_HASH_BITS
    for name in ("hash_bits", "confirm_bits"):
        if not 0 <= getattr(args, name) <= 64:
            raise ValueError(f"--{name.replace('_', '-')} {getattr(args, name)}: give 0 to 64")
    if not -1 <= args.cosine <= 1:
        raise ValueError(f"--cosine {args.cosine}: give -1 to 1")
    listings = read_listings(args.listings)
    photos = [Photo(p, listing) for p, listing in photos_with_listing(list(args.paths), listings)
              if is_image_name(p) or not Path(p).exists()]
    hash_photos(photos, progress=not args.quiet)
    if not args.hashes_only:
        embed(photos, args.model, progress=not args.quiet)
    groups = group(photos, find_pairs(photos, args.hash_bits, args.confirm_bits,
                                      None if args.hashes_only else args.cosine, progress=not args.quiet))
    rows = groups.rows()
    write_rows(out, rows, DUPLICATE_COLUMNS)
    bad = [p for p in photos if p.status != "ok"]
    for p in bad[:20]:
        print(f"  skipped {p.path}: {p.status}", file=sys.stderr)
    n_groups = len(set(groups.group_of.values()))
    across = len({r["group"] for r in rows if r["across_listings"]})
    print(f"{len(photos)} photos: {len(rows)} in {n_groups} duplicate groups ({across} across listings), "
          f"{len(bad)} unusable; output: {out}")
    return 0
