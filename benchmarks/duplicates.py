"""How well `estatelens duplicates` tells a re-used photo from a different photo of the same room.

    python benchmarks/duplicates.py            # -> benchmarks/results/duplicates.md (+ .json)

Photos: rooms-places/val (600: 100 per room type; held apart from the tagger's training).
- Positives: each photo against six edited copies (long side halved; JPEG quality 30; a 10 %
  re-crop, 5 % off each side; brightness x1.25; rotated 3 degrees; mirrored), saved as JPEG.
- Hard negatives: every pair of distinct photos of the same room type (two different white
  bathrooms), which is where a duplicate finder goes wrong; and every pair of the 712 houses
  photos (US listings: house fronts with the same sky-house-lawn layout, bathrooms alike), less
  the four pairs the data set itself re-uses (KNOWN_REUSED: found by this tool, confirmed by eye).
- Real pairs: data/labels/duplicates.csv, the pairs among all 10,741 photos of ../shared/data
  within 10 bits, or within 14 with a cosine of at least 0.8, labelled by eye (copy or not). At
  10 bits most are distinct photos with the same layout: a rule tuned on a few thousand pairs
  alone says far too much in a real collection. Split in two by row (even rows tune, odd rows
  score): the rule must keep a precision of at least MIN_REAL_PRECISION on the tuning half.
The rooms-places photos are split by their place in each class's sorted list: the thresholds are
chosen on the first half, the houses pairs and the real pairs' tuning half (the highest recall with a false-positive rate of
at most 0.1 % on the first and 0.001 % on the second) and scored on the second half, so the
reported recall and rate were not tuned on the photos they are scored on (the houses count was). ROC
curves of the hash distance alone, the embedding cosine alone and the rule that ships.
"""
from __future__ import annotations

import argparse
import datetime
import io
import itertools
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from tagging_speed import DATA, ROOT, machine, write_report

from estatelens.checks.duplicates import Photo, hash_distance, hash_photos, is_duplicate
from estatelens.checks.embeddings import embed

EDITS = {
    "resize 50 %": lambda im: im.resize((max(1, im.width // 2), max(1, im.height // 2)), Image.BILINEAR),
    "JPEG quality 30": lambda im: Image.open(io.BytesIO(_jpeg(im, 30))).convert("RGB"),
    "crop 10 %": lambda im: im.crop((int(im.width * .05), int(im.height * .05), int(im.width * .95), int(im.height * .95))),
    "brightness x1.25": lambda im: ImageEnhance.Brightness(im).enhance(1.25),
    "rotate 3 degrees": lambda im: im.rotate(3, resample=Image.BILINEAR),
    "mirror": ImageOps.mirror,
}
MAX_FPR = 0.001
MAX_HOUSES_FPR = 0.0  # none of the 253,000 houses pairs: at portal scale a pair rate must be tiny
MIN_REAL_PRECISION = 0.95  # of the rule on the real pairs labelled by eye (tuning half)
REAL = ROOT / "data" / "labels" / "duplicates.csv"
OLD_RULE = (11, 14, 0.9)  # shipped 2026-12-01 to 12-03, chosen on generated pairs alone (hash-only: 11)
# The same photo twice in houses/ (one file as a house's bathroom and its bedroom; one house's
# bathroom and bedroom photos again under another house id): true duplicates, not false positives.
KNOWN_REUSED = {("12_bathroom.jpg", "12_bedroom.jpg"), ("354_bathroom.jpg", "354_bedroom.jpg"),
                ("21_bathroom.jpg", "9_bathroom.jpg"), ("21_bedroom.jpg", "9_bedroom.jpg")}


def _jpeg(im: Image.Image, quality: int) -> bytes:
    b = io.BytesIO()
    im.save(b, "JPEG", quality=quality)
    return b.getvalue()


def scores(photos: list[Photo], pairs: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """(hash distance, cosine) of each pair."""
    h = np.array([p.hashes for p in photos], dtype=np.uint64)
    e = np.stack([p.embedding for p in photos]).astype(np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    a, b = np.array(pairs).T
    return hash_distance(h[a], h[b]), np.sum(e[a] * e[b], axis=1)


def rule(d, c, point: tuple[int, int, float]) -> np.ndarray:
    return is_duplicate(d, c, *point)


def precision(said: np.ndarray, y: np.ndarray) -> float:
    return float(y[said].mean()) if said.any() else 1.0


def choose(pos, neg, houses, real) -> tuple[int, int, float]:
    """(hash bits, confirm bits, cosine) with the highest recall at a false-positive rate of at most
    MAX_FPR on the same-room pairs and MAX_HOUSES_FPR on the houses pairs, and a precision of at
    least MIN_REAL_PRECISION on the real pairs (d, c, y); ties: the fewest false positives, then the
    strictest cosine and confirm bits (a pair should rest on its hashes, the cosine only confirming)."""
    best = None
    for bits in range(0, 13):
        for confirm in range(bits, 21):
            for cos in np.round(np.arange(0.80, 1.0001, 0.01), 2):
                point = (bits, confirm, float(cos))
                fpr, fpr_houses = rule(*neg, point).mean(), rule(*houses, point).mean()
                if fpr > MAX_FPR or fpr_houses > MAX_HOUSES_FPR or precision(rule(*real[:2], point), real[2]) < MIN_REAL_PRECISION:
                    continue
                key = (rule(*pos, point).mean(), -fpr - fpr_houses, cos, -confirm, bits)
                if best is None or key > best[0]:
                    best = (key, point)
    return best[1]


def choose_hash_only(pos, neg, houses, real) -> int:
    """The most bits a hash-only rule (no embeddings) may allow under the same constraints."""
    ok = [b for b in range(0, 21) if (neg[0] <= b).mean() <= MAX_FPR and (houses[0] <= b).mean() <= MAX_HOUSES_FPR
          and precision(real[0] <= b, real[2]) >= MIN_REAL_PRECISION]
    return max(b for b in ok if all(c in ok for c in range(b + 1)))


def real_pairs() -> tuple[list[dict], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The eye-labelled pairs of data/labels/duplicates.csv and their (distance, cosine, is a copy)
    under today's hashes and embeddings."""
    import csv

    with open(REAL, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    paths = sorted({r[k] for r in rows for k in ("path_a", "path_b")})
    photos = [Photo(str(DATA / p)) for p in paths]
    hash_photos(photos)
    embed(photos)
    at = {p: i for i, p in enumerate(paths)}
    d, c = scores(photos, [(at[r["path_a"]], at[r["path_b"]]) for r in rows])
    return rows, (d, c, np.array([r["duplicate"] == "yes" for r in rows]))


def real_table(real, points: dict) -> list[dict]:
    """What each rule says on real pairs: said, right, precision, recall."""
    d, c, y = real
    out = []
    for name, point in points.items():
        said = rule(d, c, point) if isinstance(point, tuple) else d <= point
        out.append({"rule": name, "said": int(said.sum()), "right": int((said & y).sum()),
                    "precision": precision(said, y), "recall": float(said[y].mean())})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "duplicates.md"))
    args = ap.parse_args()
    originals = sorted((DATA / "rooms-places" / "val").glob("*/*.jpg"))
    half = {p: k < 50 for _, members in itertools.groupby(originals, key=lambda p: p.parent)
            for k, p in enumerate(members)}  # originals are sorted: each class's photos in order
    with tempfile.TemporaryDirectory() as tmp:
        photos = [Photo(str(p)) for p in originals]
        edited = []  # (original index, edit name, photo index)
        for i, p in enumerate(originals):
            with Image.open(p) as im:
                im = im.convert("RGB")
                for k, (name, f) in enumerate(EDITS.items()):
                    q = Path(tmp) / f"{i}-{k}.jpg"
                    q.write_bytes(_jpeg(f(im), 90))
                    edited.append((i, name, len(photos)))
                    photos.append(Photo(str(q)))
        hash_photos(photos)
        embed(photos)
    bad = [p.path for p in photos if p.status != "ok"]
    if bad:
        raise SystemExit(f"unreadable: {bad[:3]}")
    label = [p.parent.name for p in originals]
    pos_pairs = {s: [(i, j) for i, _, j in edited if half[originals[i]] == s] for s in (True, False)}
    pos_edit = {s: [name for i, name, _ in edited if half[originals[i]] == s] for s in (True, False)}
    neg_pairs = {s: [(i, j) for i in range(len(originals)) for j in range(i + 1, len(originals))
                     if label[i] == label[j] and half[originals[i]] == s and half[originals[j]] == s] for s in (True, False)}
    fronts = [Photo(str(p)) for p in sorted((DATA / "houses" / "photos").glob("*.jpg"))]
    hash_photos(fronts)
    embed(fronts)
    names = [Path(p.path).name for p in fronts]
    front_pairs = [(i, j) for i in range(len(fronts)) for j in range(i + 1, len(fronts))
                   if tuple(sorted((names[i], names[j]))) not in KNOWN_REUSED]
    front = scores(fronts, front_pairs)
    real_rows, real = real_pairs()
    tune = np.arange(len(real_rows)) % 2 == 0
    real_tune, real_test = (tuple(x[tune] for x in real), tuple(x[~tune] for x in real))
    tune_pos, tune_neg = scores(photos, pos_pairs[True]), scores(photos, neg_pairs[True])
    point = choose(tune_pos, tune_neg, front, real_tune)
    bits, confirm, cos = point
    hash_only_bits = choose_hash_only(tune_pos, tune_neg, front, real_tune)
    test_pos, test_neg = scores(photos, pos_pairs[False]), scores(photos, neg_pairs[False])
    said_pos, said_neg = rule(*test_pos, point), rule(*test_neg, point)
    said_front = rule(*front, point)
    reused = [(names.index(a), names.index(b)) for a, b in sorted(KNOWN_REUSED)]
    if not rule(*scores(fronts, reused), point).all():
        print("warning: a known re-used pair of houses/ is not found at this operating point")
    per_edit = {name: float(said_pos[np.array(pos_edit[False]) == name].mean()) for name in EDITS}
    hash_only_test = {"recall": float((test_pos[0] <= hash_only_bits).mean()),
                      "fpr": float((test_neg[0] <= hash_only_bits).mean()),
                      "houses_said": int((front[0] <= hash_only_bits).sum())}
    rules = {f"shipped until 2026-12-03: <= {OLD_RULE[0]} bits, or <= {OLD_RULE[1]} with cosine >= {OLD_RULE[2]}": OLD_RULE,
             f"shipped until 2026-12-03 without embeddings: <= {OLD_RULE[0]} bits": OLD_RULE[0],
             f"now: <= {bits} bits, or <= {confirm} with cosine >= {cos}": point,
             f"now without embeddings: <= {hash_only_bits} bits": hash_only_bits}
    real_results = {"pairs": len(real_rows), "copies": int(real[2].sum()),
                    "by_eye": sum(r["how"] == "eye" for r in real_rows),
                    "held_apart": real_table(real_test, rules), "all": real_table(real, rules)}
    hash_only = {b: (float((test_pos[0] <= b).mean()), float((test_neg[0] <= b).mean())) for b in range(0, 21, 2)}
    cos_only = {float(t): (float((test_pos[1] >= t).mean()), float((test_neg[1] >= t).mean()))
                for t in np.round(np.arange(0.80, 1.0, 0.02), 2)}
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.ones(len(test_pos[0])), np.zeros(len(test_neg[0]))]
    auc = {"hash (64 - bits)": roc_auc_score(y, -np.r_[test_pos[0], test_neg[0]].astype(float)),
           "embedding cosine": roc_auc_score(y, np.r_[test_pos[1], test_neg[1]])}
    results = {"hash_bits": bits, "confirm_bits": confirm, "cosine": cos, "max_fpr": MAX_FPR,
               "hash_only_bits": hash_only_bits, "hash_only_test": hash_only_test,
               "min_real_precision": MIN_REAL_PRECISION, "real_pairs": real_results,
               "house_fronts": {"pairs": len(front_pairs), "said_duplicate": int(said_front.sum()),
                                "hash_only_at_bits": int((front[0] <= bits).sum())},
               "tune": {"positives": len(pos_pairs[True]), "negatives": len(neg_pairs[True])},
               "test": {"positives": len(pos_pairs[False]), "negatives": len(neg_pairs[False]),
                        "recall": float(said_pos.mean()), "fpr": float(said_neg.mean()),
                        "false_positives": int(said_neg.sum()), "recall_by_edit": per_edit},
               "hash_only": hash_only, "cosine_only": cos_only, "roc_auc": auc}
    pct = lambda v: f"{100 * v:.2f} %"  # noqa: E731
    lines = ["# Duplicate photos: generated pairs against distinct photos of the same room", "",
             f"Written by `python benchmarks/duplicates.py` on {datetime.date.today().isoformat()}; {machine()}.", "",
             f"rooms-places/val, held apart from the tagger's training: 600 photos, each against 6 edited copies; "
             f"hard negatives are all pairs of distinct photos of the same room type. Thresholds chosen on the first "
             f"50 photos of each class ({len(pos_pairs[True])} pairs, {len(neg_pairs[True]):,} negatives: the highest "
             f"recall at a false-positive rate of at most {MAX_FPR:.1%}), scored on the other 50 "
             f"({len(pos_pairs[False])} pairs, {len(neg_pairs[False]):,} negatives).", "",
             f"**Operating point** (shipped as the defaults of `estatelens duplicates`): hash distance <= {bits} bits "
             f"(pHash of the whole photo and its central 90 %, mirror-aware), or <= {confirm} bits with an embedding "
             f"cosine >= {cos}. On the held-apart half: recall "
             f"{pct(results['test']['recall'])}, false-positive rate {pct(results['test']['fpr'])} "
             f"({results['test']['false_positives']} of {len(neg_pairs[False]):,}). Bar: recall >= 98 % at a "
             f"false-positive rate <= 0.1 %.", "",
             f"**Without embeddings** (`tag --checks`, the index, `duplicates --hashes-only`): hash distance <= "
             f"{hash_only_bits} bits. On the held-apart half: recall {pct(hash_only_test['recall'])}, false-positive "
             f"rate {pct(hash_only_test['fpr'])}; houses pairs said duplicate: {hash_only_test['houses_said']}.", "",
             f"**Real pairs** ({REAL.relative_to(ROOT)}: {real_results['pairs']} pairs among the 10,741 photos "
             f"of ../shared/data, {real_results['copies']} of them copies; {real_results['by_eye']} labelled by eye, "
             f"the rest at most 2 bits apart with a cosine of at least 0.95, taken as copies). Even rows tuned "
             f"(precision >= {MIN_REAL_PRECISION:.0%} required); odd rows, held apart (recall among the pairs "
             f"labelled, not among all copies in the data):", "",
             "| rule | said duplicate | copies | precision | recall |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['rule']} | {r['said']} | {r['right']} | {pct(r['precision'])} | {pct(r['recall'])} |"
              for r in real_results["held_apart"]]
    lines += ["", "All real pairs, both halves:", "",
              "| rule | said duplicate | copies | precision | recall |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['rule']} | {r['said']} | {r['right']} | {pct(r['precision'])} | {pct(r['recall'])} |"
              for r in real_results["all"]]
    lines += ["",
             f"houses/ ({len(fronts)} photos, {len(front_pairs):,} pairs of distinct photos, used in tuning): "
             f"{int(said_front.sum())} said duplicate ({100 * said_front.mean():.4f} %); the data set's "
             f"{len(KNOWN_REUSED)} re-used pairs are found and not counted.", "",
             "| edit | recall |", "|---|---:|"]
    lines += [f"| {name} | {pct(v)} |" for name, v in per_edit.items()]
    lines += ["", f"ROC AUC on the held-apart half: hash alone {auc['hash (64 - bits)']:.4f}, "
                  f"embedding cosine alone {auc['embedding cosine']:.4f}.", "",
              "| hash alone: at most | recall | false-positive rate |", "|---:|---:|---:|"]
    lines += [f"| {b} bits | {pct(r)} | {pct(f)} |" for b, (r, f) in hash_only.items()]
    lines += ["", "| cosine alone: at least | recall | false-positive rate |", "|---:|---:|---:|"]
    lines += [f"| {t:.2f} | {pct(r)} | {pct(f)} |" for t, (r, f) in cos_only.items()]
    write_report(Path(args.out), lines, results)


if __name__ == "__main__":
    main()
