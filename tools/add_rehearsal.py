"""Give a bundle its rehearsal set (rehearsal.npz) and its out-of-distribution check.

    python tools/add_rehearsal.py runs/default-rooms/rooms.estatelens DATA...   # class folders or CSVs

- rehearsal.npz: the embeddings of up to --per-class photos of each class of DATA's train split
  (seeded choice), each as the tagger sees it and in one augmented view, float16 (about 4 MB for
  7 classes). `estatelens adapt` rehearses on them, so that it forgets nothing.
- bundle.json "ood": how far (cosine distance to the 10th nearest rehearsal photo as the tagger
  sees it, without the augmented views: ood.py) a photo
  may be before the tagger calls it uncertain: the distance that --pass of DATA's validation photos
  stay within. Validation photos are not in the rehearsal set, so they are measured as new photos
  are. DATA's test split is used for neither, so both can be measured on it.
"""
from __future__ import annotations

import argparse

import numpy as np

from estatelens.bundle import load_bundle
from estatelens.data.dataset import load_collection
from estatelens.ood import UnusualScorer
from estatelens.rehearsal import save_rehearsal
from estatelens.training.adapt import build_rehearsal
from estatelens.training.attributes import embed_photos


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle")
    ap.add_argument("data", nargs="+")
    ap.add_argument("--per-class", type=int, default=120)
    ap.add_argument("--pass", dest="pass_rate", type=float, default=0.999,
                    help="share of validation photos the ood threshold lets through (default 0.999)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    bundle = load_bundle(args.bundle)
    samples = [s for d in args.data for s in load_collection(d, progress=False).samples]
    train = [s for s in samples if s.split == "train"]
    val = [s for s in samples if s.split == "val"]
    missing = sorted(set(bundle.classes) - {s.label for s in train})
    if missing:
        raise SystemExit(f"no training photos of {', '.join(missing)} in {' '.join(args.data)}")
    r = build_rehearsal(bundle, train, per_class=args.per_class, seed=args.seed)
    print(f"{save_rehearsal(bundle.path, r)}: {len(r.labels)} embeddings of {len(bundle.classes)} classes")
    emb, status = embed_photos(bundle, [s.path for s in val], views=0, seed=args.seed)
    ok = np.array([st == "ok" for st in status])
    distance = UnusualScorer(r.embeddings[r.clean], 0.0).score(emb[ok, 0])  # as the tagger measures
    threshold = float(np.quantile(distance, args.pass_rate))
    bundle.update_info(ood={"method": "knn", "k": 10, "threshold": round(threshold, 4), "pass_rate": args.pass_rate,
                            "fitted_on": f"{int(ok.sum())} validation photos of {', '.join(args.data)}"})
    print(f"ood threshold {threshold:.4f}: {args.pass_rate:.1%} of {int(ok.sum())} validation photos within it")


if __name__ == "__main__":
    main()
