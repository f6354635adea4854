"""Make a bundle whose graph carries an attribute tail (src/estatelens/attribute_tail.py).

    python tools/build_attribute_tail.py BASE DONOR OUT [--share-weights] [--room-average W] [--check PHOTOS...]

BASE: the room-type bundle (its network, heads for `also`, rehearsal set and out-of-distribution
check are kept as they are); DONOR: an int8 bundle fine-tuned with the attributes (train
--attribute ..., then quantize) on the same frozen first blocks. OUT gets BASE's graph plus the
donor's trainable blocks from where the two networks start to differ, as the output
`attribute_embedding`; no attribute heads (train them with `estatelens train-attribute NAME DATA
--model OUT`, which reads that output). Checked here: the first blocks' weights are the same in
both weights.pt files; the room-type outputs and the embedding of OUT equal BASE's on a batch;
with --check, the combined attribute embedding agrees with the donor's own on those photos.
--room-average W: the room-type probabilities become (1 - W) x BASE's + W x the donor's own head's
on the tail (attribute_tail.average_room_outputs); checked against the two networks run apart.
--share-weights leaves weights.pt out and names BASE's (by file name and hash) for Grad-CAM and
adapt, for OUT installed beside BASE.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np

from estatelens.attribute_tail import ROOM_OUTPUT, agreement, average_room_outputs, combine, default_cut
from estatelens.attributes import ATTRIBUTES_DIR, graph_fingerprint
from estatelens.also import ALSO_DIR
from estatelens.bundle import load_bundle, onnx_session
from estatelens.inference import load_photo
from estatelens.data.preprocess import decode_side

BLOCK = re.compile(r"(?:_blocks|features)\.(\d+)\.")


def first_trained_block(base_state: dict, donor_state: dict) -> int:
    """The first block whose weights differ; every tensor before it must be equal in both."""
    missing = [k for k in base_state if k not in donor_state]
    if missing:  # the donor may have more (its attribute outputs), not fewer
        raise ValueError(f"BASE and DONOR are not the same architecture (DONOR lacks {', '.join(missing[:5])})")
    differ = [k for k in base_state if not np.array_equal(base_state[k].float().numpy(), donor_state[k].float().numpy())]
    blocks = [int(m.group(1)) for k in differ if (m := BLOCK.search(k))]
    if not blocks:
        raise ValueError("BASE and DONOR differ in no block: nothing to make a tail of")
    first = min(blocks)
    # Outside the blocks, only what comes after them (the head conv and its norm, the classifier) may differ.
    after = ("head.", "backbone.net._conv_head.", "backbone.net._bn1.")
    early = [k for k in differ if not BLOCK.search(k) and not k.startswith(after)]
    if early:
        raise ValueError(f"BASE and DONOR differ before block {first}: {', '.join(early[:5])}")
    return first


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("base")
    ap.add_argument("donor")
    ap.add_argument("out")
    ap.add_argument("--share-weights", action="store_true")
    ap.add_argument("--room-average", type=float, default=0.0, metavar="W",
                    help="weight of the donor's room-type head in the room-type probabilities (default 0: BASE's alone)")
    ap.add_argument("--check", nargs="*", default=[], help="photos on which to compare the tail with the donor")
    args = ap.parse_args()
    base, donor, out = load_bundle(args.base), load_bundle(args.donor), Path(args.out)
    if out.exists():
        raise SystemExit(f"{out}: already exists")
    if base.classes != donor.classes or base.preprocessing != donor.preprocessing:
        raise SystemExit("BASE and DONOR must have the same classes and preprocessing")
    first = first_trained_block(base.weights("to compare the first blocks"), donor.weights("to compare the first blocks"))
    import onnx

    cut = default_cut(onnx.load(str(donor.onnx_path), load_external_data=False).graph, first)
    ignore = [ATTRIBUTES_DIR, "room_head.json"] + (["weights.pt"] if args.share_weights else [])
    shutil.copytree(base.path, out, ignore=shutil.ignore_patterns(*ignore))
    outputs = combine(base.onnx_path, donor.onnx_path, cut, out / "model.onnx")

    x = np.random.default_rng(0).uniform(-1, 1, (8, 3, base.preprocessing.size, base.preprocessing.size))
    x = x.astype(np.float32)
    a, b = onnx_session(out / "model.onnx"), onnx_session(base.onnx_path)
    names = [o.name for o in b.get_outputs()]
    for u, v, n in zip(a.run(names, {"image": x}), b.run(names, {"image": x}), names):
        if not np.array_equal(u, v):
            raise SystemExit(f"the combined graph's {n} differs from BASE's (max {np.abs(u - v).max():.3g})")
    if args.room_average:
        average_room_outputs(out / "model.onnx", donor.onnx_path, out / "model.onnx", args.room_average)
        a, d = onnx_session(out / "model.onnx"), onnx_session(donor.onnx_path)
        got, own, tail = a.run([ROOM_OUTPUT], {"image": x})[0], b.run([ROOM_OUTPUT], {"image": x})[0], d.run([ROOM_OUTPUT], {"image": x})[0]
        # the tail reads BASE's block outputs, not the donor's own (quantised on other photos): close,
        # not equal (up to 0.06 of a probability on these random inputs); a wiring slip is far off
        gap = np.abs(got - ((1 - args.room_average) * own + args.room_average * tail)).max()
        if gap > 0.15 * args.room_average or not np.allclose(got.sum(axis=1), 1, atol=1e-4):
            raise SystemExit(f"the averaged room-type probabilities are off the two networks' average by {gap:.3g}")
        print(f"room-type probabilities: {1 - args.room_average:g} x BASE's + {args.room_average:g} x the donor's "
              f"head (largest gap to the two networks run apart: {gap:.4f})")
    fingerprint = graph_fingerprint(out / "model.onnx")
    for f in sorted((out / ALSO_DIR).glob("*.json")) if (out / ALSO_DIR).is_dir() else []:
        head = json.loads(f.read_text())
        head["graph"] = fingerprint  # they read the embedding, which is BASE's to the bit (checked above)
        f.write_text(json.dumps(head, indent=1))

    worst = None
    if args.check:
        pre, side = base.preprocessing, decode_side(base.preprocessing)
        arrays = [got.x for p in args.check if (got := load_photo(p, pre, side)).x is not None]
        worst = agreement(out / "model.onnx", donor.onnx_path, [np.stack(arrays[i:i + 16]) for i in range(0, len(arrays), 16)])
        print(f"attribute embedding against the donor's own, {len(arrays)} photos: lowest cosine {worst:.4f}")

    manifest = json.loads((out / "bundle.json").read_text())
    manifest["attribute_tail"] = {
        "donor": str(donor.path), "first_block": first, "cut": cut, "outputs": outputs,
        "donor_training": {k: donor.info.get(k) for k in ("model", "mode", "config", "metrics")},
        "lowest_cosine_to_donor": worst, "check_photos": len(args.check),
        "room_average": args.room_average or None}  # the donor head's weight in the room-type probabilities
    if "multitask" in donor.info:  # which photos' attribute labels the tail learnt (train-attribute calibrates on the rest)
        manifest["multitask"] = donor.info["multitask"]
    if args.share_weights:
        digest = hashlib.sha256((base.path / "weights.pt").read_bytes()).hexdigest()
        manifest["weights_from"] = {"bundle": base.path.name, "sha256": digest}
    (out / "bundle.json").write_text(json.dumps(manifest, indent=1))
    print(f"{out}: outputs {', '.join(outputs)}; tail from block {first} ({cut})")


if __name__ == "__main__":
    main()
