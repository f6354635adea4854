"""`estatelens adapt`: teach a bundle a new market from a few labelled (or unlabelled) photos."""
from __future__ import annotations

import argparse
import difflib
import json
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

EXAMPLES = """examples:
  estatelens export-labels --db listings.db --out labels.csv      # the corrections made in the web app
  estatelens adapt labels.csv --model rooms --out madrid.estatelens
  estatelens adapt labelled/ --unlabelled new-photos/ --model rooms --out madrid.estatelens
  estatelens tag photos/ --model madrid.estatelens --out tags.xlsx
"""


def add_parser(sub) -> None:
    a = sub.add_parser("adapt", help="adapt a bundle to a new market from a few labelled photos", description=(
        "Refit the bundle's room-type head on LABELLED photos (class folders, or a CSV path,label such as\n"
        "export-labels writes) plus the bundle's own rehearsal photos, so that classes the labels do\n"
        "not cover are not forgotten. The network is unchanged, so attribute heads keep working and\n"
        "tagging speed stays the same. A part of LABELLED (--holdout) is kept apart and the old and\n"
        "the new bundle are scored on it; the report is printed and kept in the new bundle.json.\n"
        "Classes that the bundle does not know yet are added; a label that differs from one of its classes\n"
        "only in case, spaces or hyphens is read as that class, and one that looks like a misspelt class\n"
        "(bedrom) is refused unless --new-class names it. Takes seconds to minutes on 2 cores."),
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("labelled", nargs="*", metavar="LABELLED", help="class folders or CSV path,label[,group]")
    a.add_argument("--model", default="rooms", help="the bundle to adapt (default rooms)")
    a.add_argument("--out", required=True, help="the adapted bundle (NAME.estatelens; must not exist)")
    a.add_argument("--unlabelled", nargs="+", default=[], metavar="PATH", help=(
        "photos of the market without labels (folders or .txt lists): the ones the head is sure of in "
        "every augmented view are used as pseudo-labels (self-training)"))
    a.add_argument("--min-confidence", type=float, default=0.9, help=(
        "with --unlabelled: the mean probability a pseudo-label needs (default 0.9)"))
    a.add_argument("--holdout", type=float, default=0.2, help=(
        "share of LABELLED kept apart to score before and after (default 0.2; 0 uses every photo and "
        "reports only the rehearsal check)"))
    a.add_argument("--views", type=int, default=4, help="augmented views per labelled photo (default 4)")
    a.add_argument("--rehearse", nargs="+", default=[], metavar="DATA", help=(
        "photos of the bundle's own classes (class folders or CSV) to rehearse on, for a bundle that "
        "carries no rehearsal.npz (the bundled rooms model carries one); their test split is left out"))
    a.add_argument("--new-class", action="append", default=[], metavar="NAME", help=(
        "a label meant as a new class although it looks like a misspelling of one the bundle has "
        "(repeat for several)"))
    a.add_argument("--seed", type=int, default=0, help="seed of the held-apart split, the augmented views and the rehearsal photos chosen (default 0)")
    a.add_argument("--quiet", action="store_true", help="no progress bars")
    a.set_defaults(func=run)


def run(args) -> int:
    from ..bundle import load_bundle
    from ..data.dataset import load_collection
    from ..tagging.core import iter_input_paths
    from ..training.adapt import adapt_bundle, build_rehearsal

    if not 0 <= args.holdout < 1:
        raise ValueError(f"--holdout must be from 0 to below 1, not {args.holdout}")
    bundle = load_bundle(args.model)
    labelled, root = [], None
    for source in args.labelled:
        c = load_collection(source, assign=False, progress=not args.quiet)
        for s in c.skipped:
            print(f"left out {s['path']}: {s['reason']}")
        labelled += c.samples
        root = root or (Path(source) if Path(source).is_dir() else Path(source).parent)
    labelled = match_classes(labelled, bundle.classes, args.new_class)
    rehearsal = None
    if args.rehearse:
        samples = [s for src in args.rehearse for s in load_collection(src, progress=not args.quiet).samples
                   if s.split != "test"]  # test photos stay fit to measure forgetting on
        missing = sorted(set(bundle.classes) - {s.label for s in samples})
        if missing:
            raise ValueError(f"--rehearse has no photos of {', '.join(missing)}: the adapted model would forget them")
        rehearsal = build_rehearsal(bundle, samples, seed=args.seed, progress=not args.quiet)
    unlabelled = list(iter_input_paths(args.unlabelled)) if args.unlabelled else []
    report = adapt_bundle(bundle, labelled, args.out, unlabelled=unlabelled, holdout=args.holdout, views=args.views,
                          seed=args.seed, min_confidence=args.min_confidence, root=root, rehearsal=rehearsal,
                          progress=not args.quiet)
    _print_report(report, args.out)
    return 0


def _class_key(label: str) -> str:
    return re.sub(r"[\s\-]+", "_", label.strip().lower())


def match_classes(samples: list, classes: list[str], new: list[str] = ()) -> list:
    """`samples` with each label read as the bundle's class where it differs only in case, spaces
    or hyphens (`Kitchen`, `living room`); a label that is no class but close to one (`bedrom`)
    raises, unless `new` names it: a typo would otherwise become a class of its own."""
    by_key = {_class_key(c): c for c in classes}
    renamed: Counter = Counter()
    suspect: dict[str, list] = {}
    out = []
    for s in samples:
        label = by_key.get(_class_key(s.label), s.label)
        if label != s.label:
            renamed[(s.label, label)] += 1
            s = replace(s, label=label)
        elif label not in classes and label not in new:
            close = difflib.get_close_matches(_class_key(label), list(by_key), n=1, cutoff=0.75)
            if close:
                suspect.setdefault(label, [by_key[close[0]], 0])[1] += 1
        out.append(s)
    for (was, now), n in sorted(renamed.items()):
        print(f"label {was!r} read as the class {now!r} ({n} photos)")
    if suspect:
        raise ValueError("; ".join(f"label {label!r} ({n} photos) is not a class of the model: did you mean {c!r}? "
                                   f"Correct it in LABELLED, or give --new-class {label!r} to add it as a class"
                                   for label, (c, n) in sorted(suspect.items())))
    return out


def _print_report(report: dict, out: str) -> None:
    pct = lambda v: "–" if v is None else f"{100 * v:.1f} %"  # noqa: E731
    if report["new_classes"]:
        print(f"new classes: {', '.join(report['new_classes'])}")
    if report["pseudo_labels"]:
        p = report["pseudo_labels"]
        print(f"self-training: {p['pseudo_labelled']} of {p['photos']} unlabelled photos pseudo-labelled "
              f"({json.dumps(p['per_class'])})")
    for name, what in (("holdout", "held-apart labelled photos"), ("rehearsal_check", "rehearsal photos (old classes)")):
        s = report[name]
        if s.get("n"):
            print(f"{what} ({s['n']}): {pct(s['before'])} before, {pct(s['after'])} after")
            for c, m in s["per_class"].items():
                print(f"    {c:14s} {m['n']:5d}  {pct(m['before']):>8s} -> {pct(m['after'])}")
    print(f"temperature {report['temperature']:.3f}, penalty {report['penalty']:g}")
    print(f"model: {out}")
