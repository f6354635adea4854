"""`estatelens value fit / predict / report`: price estimates from listing facts and photos."""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from . import DEFAULT_MODEL, positive_int

EXAMPLES = """examples:
  estatelens value fit houses.csv --photos photos.csv --out houses.value
  estatelens value predict houses.value new-listings.csv --photos new-photos.csv --out estimates.xlsx
  estatelens value report houses.csv --photos photos.csv --out value-report/
  estatelens index --listings photos.csv --facts houses.csv --value-model houses.value --db houses.db
"""


def add_parsers(sub) -> None:
    v = sub.add_parser("value", help="estimate listing prices from facts and photos (fit, predict, report)",
                       description=(
        "Price models on log price from a listings CSV (an id column, a price column, fact columns:\n"
        "numbers such as area, rooms; categories such as zipcode) and a photos CSV (listing id, path\n"
        "[, room]). Three models: facts-only linear regression, facts-only gradient boosting, and\n"
        "gradient boosting on the facts plus what the tagger sees in the photos (embeddings pooled\n"
        "per listing and room, projected onto one photo score; attribute probabilities). Each\n"
        "estimate has an 80 % interval and the three features that moved it most."),
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    vs = v.add_subparsers(title="value commands", metavar="COMMAND")

    f = vs.add_parser("fit", help="fit the price models and save them as a model folder",
                      description="Fit on LISTINGS (and --photos); writes OUT/value.json and OUT/models.pkl, "
                                  "with 5-fold cross-validated metrics in value.json.")
    _add_data_options(f)
    f.add_argument("--out", required=True, help="the model folder to write")
    f.add_argument("--seed", type=int, default=0)
    f.set_defaults(func=cmd_fit)

    p = vs.add_parser("predict", help="estimate the price of listings with a fitted model", description=(
        "Per listing: value, value_low and value_high (the 80 % interval), basis ('facts and photos', or\n"
        "'facts only' for a listing without readable photos), the three features that moved the estimate\n"
        "most, price_to_value where LISTINGS has a price, and a note where facts are missing or out of\n"
        "the fitted range. A listing that cannot be valued is reported and the run goes on."),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("value_model", metavar="MODEL", help="a folder written by `estatelens value fit`")
    _add_data_options(p, fitting=False)
    p.add_argument("--out", required=True, help="estimates: .csv, .xlsx, .json or .jsonl")
    p.set_defaults(func=cmd_predict)

    r = vs.add_parser("report", help="cross-validate the price models and write an HTML report", description=(
        "K-fold cross-validation grouped by listing, repeated with several seeds: median and mean\n"
        "absolute percentage error, R² on log price and 80 % interval coverage per model, bootstrap\n"
        "intervals of the differences, plots; OUT/report.html, report.json and PNGs."),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_data_options(r)
    r.add_argument("--out", required=True, help="folder for the report")
    r.add_argument("--seeds", type=positive_int, default=5, help="repetitions of the cross-validation (default 5)")
    r.set_defaults(func=cmd_report)
    v.set_defaults(func=lambda args: (v.print_help(), 2)[1])


def _add_data_options(p: argparse.ArgumentParser, fitting: bool = True) -> None:
    p.add_argument("listings", metavar="LISTINGS", help="CSV: one row per listing, an id, a price and facts")
    p.add_argument("--photos", metavar="CSV", help=(
        "CSV of listing id, path[, room] (paths relative to the CSV); without it the models use the facts only"))
    p.add_argument("--id", dest="id_col", help="the listing id column (default listing_id, house_id or id)")
    p.add_argument("--price", dest="price_col", help="the price column (default price, price_usd, ...)")
    if fitting:
        p.add_argument("--categorical", nargs="+", default=[], metavar="COLUMN", help=(
            "fact columns to read as categories although they hold numbers (zipcode, city and *code "
            "columns already are)"))
        p.add_argument("--model", default=DEFAULT_MODEL, help=(
            f"the tagging bundle whose features the photos give (default {DEFAULT_MODEL})"))
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _read(args, numeric=None, need_price=True):
    from ..valuation import read_listings, read_photos_csv, unmatched_photos

    listings = read_listings(args.listings, id_col=args.id_col, price_col=args.price_col,
                             categorical=getattr(args, "categorical", ()), numeric=numeric, need_price=need_price)
    refs = read_photos_csv(args.photos, args.id_col if args.id_col else None) if args.photos else None
    problems = list(listings.problems)
    if refs is not None:
        stray = unmatched_photos(refs, listings.ids)
        if stray:
            problems.append(f"{args.photos}: {len(stray)} listing ids are not in {args.listings} and their photos "
                            f"are not used: {', '.join(stray[:5])}{' ...' if len(stray) > 5 else ''}")
    return listings, refs, problems


def _photo_features(bundle_name, listings, refs, rooms, quiet, network=None):
    """(pooled photo features, rooms pooled apart, the network's key), or Nones without photos."""
    if refs is None:
        return None, [], None
    from ..bundle import load_bundle
    from ..valuation import listing_photo_features

    bundle = load_bundle(bundle_name)
    pooled, rooms = listing_photo_features(bundle, listings.ids, refs, rooms=rooms, network=network,
                                           progress=not quiet)
    return pooled, rooms, pooled.network


def _warn(problems, limit: int = 20) -> None:
    for line in problems[:limit]:
        print(f"  warning: {line}", file=sys.stderr)
    if len(problems) > limit:
        print(f"  ... and {len(problems) - limit} more", file=sys.stderr)


def _training_data(args):
    """(listings, pooled photo features or None, rooms pooled apart, network key) for fit and
    report, with every problem found on the way printed."""
    listings, refs, problems = _read(args)
    photos, rooms, network = _photo_features(args.model, listings, refs, None, args.quiet)
    if photos is not None:
        problems += photos.problems
    _warn(problems)
    return listings, photos, rooms, network


def cmd_fit(args) -> int:
    from ..valuation.model import fit_value_model

    listings, photos, rooms, network = _training_data(args)
    info = {"listings_csv": args.listings, "photos_csv": args.photos, "id_column": listings.id_column,
            "price_column": listings.price_column,
            "tagging_model": args.model if photos is not None else None, "tagging_network": network}
    model = fit_value_model(listings, photos, seed=args.seed, info=info)
    model.spec.rooms = rooms
    model.save(args.out)
    print(f"fitted on {model.info['data']['listings']} listings "
          f"({model.info['data']['listings_with_photos']} with photos); 5-fold cross-validation:")
    for kind, m in model.info["cross_validation"]["metrics"].items():
        if kind.startswith("blend_"):
            continue
        print(f"  {kind:8s} median APE {m['median_ape'] * 100:5.1f} %  R² (log) {m['r2_log']:.3f}")
    for group, weights in model.info["blend"].items():
        m = model.info["cross_validation"]["metrics"].get(f"blend_{group}")
        if weights and m:
            mix = ", ".join(f"{k} {w:.2f}" for k, w in weights.items() if w > 0)
            print(f"  blend, {group.replace('_', ' ')}: {mix}; median APE {m['median_ape'] * 100:.1f} %")
    print(f"model: {args.out}")
    return 0


def cmd_predict(args) -> int:
    from ..tagging.writers import write_rows
    from ..valuation.model import load_value_model

    model = load_value_model(args.value_model)
    listings, refs, problems = _read(args, numeric=model.spec.numeric, need_price=False)
    photos = None
    if refs is not None and "photos" in model.models:
        photos, _, _ = _photo_features(model.info["tagging_model"], listings, refs, model.spec.rooms, args.quiet,
                                       network=model.info.get("tagging_network"))
        problems += photos.problems
    _warn(problems)
    estimates = model.predict(listings, photos)
    rows = [e.to_dict(listings.price[i]) for i, e in enumerate(estimates)]
    columns = ["listing_id", "value", "value_low", "value_high", "basis", "price", "price_to_value",
               "driver_1", "driver_2", "driver_3", "note"]
    write_rows(args.out, rows, columns)
    n_photos = sum(e.basis == "facts and photos" for e in estimates)
    noted = sum(bool(e.note) for e in estimates)
    print(f"{len(rows)} listings valued: {n_photos} with photos, {len(rows) - n_photos} on facts only"
          + (f"; {noted} with a note (missing or unusual facts)" if noted else ""))
    print(f"output: {args.out}")
    return 0


def cmd_report(args) -> int:
    from ..valuation.report import cross_validate, write_report

    listings, photos, _, _ = _training_data(args)
    cv = cross_validate(listings, photos, seeds=tuple(range(args.seeds)), progress=not args.quiet)
    result = write_report(cv, args.out, title=f"Price models on {Path(args.listings).name}")
    for kind, m in result["metrics"].items():
        cov = m.get("coverage", math.nan) * 100
        print(f"  {kind:8s} median APE {m['median_ape'] * 100:5.1f} %  mean APE {m['mean_ape'] * 100:5.1f} %  "
              f"R² (log) {m['r2_log']:.3f}  80 % interval coverage {cov:.1f} %")
    for d in result["differences"]:
        print(f"  {d['kind']} - {d['baseline']}: median APE {d['median_ape_difference'] * 100:+.2f} points, "
              f"95 % CI [{d['ci95'][0] * 100:+.2f}, {d['ci95'][1] * 100:+.2f}]")
    print(f"report: {Path(args.out) / 'report.html'}")
    return 0
