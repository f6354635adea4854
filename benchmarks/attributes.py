"""Attribute heads of the bundled model: what they cost at tagging time, and how well they do on
held-apart photos.

    python benchmarks/attributes.py          # writes benchmarks/results/attributes.md (+ .json)

Needs ../shared beside the repository. About 5 minutes on 2 cores.

Cost: `estatelens tag` on every photo of ../shared/data/houses/photos, each run in its own child
process, alternating between
- room type alone: a copy of the bundled model without its attribute heads and without the
  embedding output in its graph (the graph as it was before attributes existed), and
- the bundled model as shipped: room type plus every attribute head, from the same network pass;
the median photos/s over the rounds is compared.

Quality: the labels of ../shared/data/attributes.csv, split exactly as `estatelens train-attribute`
splits them (rooms-web/test stays test; `unsure` rows are left out). The shipped heads are scored on
the test photos; then each head is fitted again (not shipped) with thresholds chosen on validation for
lower stated precisions, to show what a looser operating point buys on the same test photos.
"""
from __future__ import annotations

import argparse
import datetime
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from tagging_speed import DATA, ROOT, machine

PRECISIONS = (0.9, 0.8, 0.7, 0.5)


def room_type_only_copy(bundle_dir: Path, dest: Path) -> Path:
    """The bundle without attribute heads, its graph without the embedding output."""
    import onnx

    from estatelens.attributes import ATTRIBUTES_DIR, EMBEDDING_OUTPUT

    shutil.copytree(bundle_dir, dest, ignore=shutil.ignore_patterns(ATTRIBUTES_DIR))
    model = onnx.load(str(dest / "model.onnx"))
    g = model.graph
    nodes = [n for n in g.node if not (n.op_type == "Identity" and list(n.output) == [EMBEDDING_OUTPUT])]
    if len(nodes) != len(g.node) - 1:
        raise ValueError(f"{bundle_dir}: expected one Identity node giving the embedding output")
    del g.node[:]
    g.node.extend(nodes)
    outputs = [o for o in g.output if o.name != EMBEDDING_OUTPUT]
    del g.output[:]
    g.output.extend(outputs)
    onnx.save(model, str(dest / "model.onnx"))
    return dest


def tag_speed(model: Path, photos: Path, work: Path) -> float:
    out = work / "tags.csv"
    res = subprocess.run([sys.executable, "-m", "estatelens", "tag", str(photos), "--model", str(model),
                          "--out", str(out), "--quiet", "--restart"], capture_output=True, text=True, check=True)
    m = re.search(r"([\d.]+) photos/s this run", res.stdout)
    if not m:
        raise RuntimeError(f"no speed in the output of estatelens tag:\n{res.stdout}\n{res.stderr}")
    return float(m.group(1))


def network_cost(shipped, plain_dir: Path, batches: int = 30, batch_size: int = 16) -> dict:
    """In one process, on the same random batches: ms per photo for the room-type-only graph, for
    the shipped graph with its embedding output, and for the heads' arithmetic on that embedding."""
    import time

    from estatelens.bundle import load_bundle

    plain = load_bundle(plain_dir)
    x = np.random.default_rng(0).uniform(-1, 1, (batch_size, 3, shipped.preprocessing.size,
                                               shipped.preprocessing.size)).astype(np.float32)
    times: dict[str, list[float]] = {"room type alone": [], "room type + embedding output": [], "heads": []}
    for b in (plain, shipped):
        b.run_batch(x, embedding=True)  # warm up
    for _ in range(batches):  # alternating, so that drifts of the machine fall on both
        t = time.perf_counter()
        plain.run_batch(x, embedding=False)
        times["room type alone"].append(time.perf_counter() - t)
        t = time.perf_counter()
        _, emb = shipped.run_batch(x, embedding=True)
        times["room type + embedding output"].append(time.perf_counter() - t)
        t = time.perf_counter()
        for h in shipped.attributes:
            h.probability(emb)
        times["heads"].append(time.perf_counter() - t)
    return {k: 1000 * statistics.median(v) / batch_size for k, v in times.items()}


def measure_cost(rounds: int) -> dict:
    from estatelens.bundle import load_bundle

    shipped = load_bundle("rooms")
    photos = DATA / "houses" / "photos"
    with tempfile.TemporaryDirectory() as tmp:
        plain = room_type_only_copy(shipped.path, Path(tmp) / "plain.estatelens")
        speeds: dict[str, list[float]] = {"room type alone": [], "room type + attributes": []}
        tag_speed(shipped.path, photos, Path(tmp))  # warm the page cache
        for _ in range(rounds):
            speeds["room type alone"].append(tag_speed(plain, photos, Path(tmp)))
            speeds["room type + attributes"].append(tag_speed(shipped.path, photos, Path(tmp)))
        network = network_cost(shipped, plain)
    median = {k: statistics.median(v) for k, v in speeds.items()}
    paired = [a / b - 1 for a, b in zip(speeds["room type alone"], speeds["room type + attributes"])]
    return {"photos": sum(1 for _ in photos.glob("*.jpg")), "rounds": rounds, "photos_per_second": speeds,
            "median": median, "extra_time_per_photo": statistics.median(paired), "paired": paired,
            "network_ms_per_photo": network, "attributes": [h.name for h in shipped.attributes]}


def measure_quality(seed: int = 0) -> dict:
    from estatelens.bundle import load_bundle
    from estatelens.data.attribute_labels import read_attribute_labels
    from estatelens.evaluation.metrics import attribute_metrics
    from estatelens.training.attributes import embed_photos, partition, train_attribute

    from estatelens.data.dataset import load_collection

    bundle = load_bundle("rooms")
    # The bundled room-type network trained on the houses photos outside their test split (split
    # by house, seed 0, as tools/build_default_model.sh does): the backbone has seen those photos,
    # though never their attribute labels.
    houses = load_collection(DATA / "houses" / "photos.csv", progress=False)
    backbone_saw = {str(Path(s.path).resolve()) for s in houses.samples if s.split != "test"}
    out = {}
    for head in bundle.attributes:
        labels = read_attribute_labels(DATA / "attributes.csv", head.name, seed=seed)
        test = [labels.samples[i] for i in partition(labels.samples)[1]]
        emb, status = embed_photos(bundle, [s.path for s in test], views=0, progress=False)
        ok = np.array([st == "ok" for st in status])
        y = np.array([s.label == "yes" for s in test], dtype=int)[ok]
        p = head.probability(emb[ok, 0])
        src = np.array(["rooms-web/test" if "/rooms-web/test/" in s.path else "houses" if "/houses/" in s.path
                        else "other" for s in test])[ok]
        shipped = {"all test photos": attribute_metrics(y, p, head.threshold)}
        for name in sorted(set(src)):
            shipped[name] = attribute_metrics(y[src == name], p[src == name], head.threshold)
        looser = {}
        for target in PRECISIONS:
            fit = train_attribute(bundle, labels, target_precision=target, seed=seed, progress=False,
                                  log=lambda _msg: None)
            looser[str(target)] = {"threshold": fit.head.threshold, "validation": fit.report["validation"],
                                   "test": fit.report["test"]}
        seen = [str(Path(s.path).resolve()) in backbone_saw for s, k in zip(test, ok) if k and "/houses/" in s.path]
        out[head.name] = {"threshold": head.threshold, "target_precision": head.target_precision,
                          "labels": labels.counts(), "shipped": shipped, "by_target_precision": looser,
                          "houses_test_photos_seen_by_backbone": [int(sum(seen)), len(seen)]}
    return out


def pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f} %"


def num(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def ci(v) -> str:
    return "" if not v else f" ({100 * v[0]:.0f}-{100 * v[1]:.0f})"


def write_report(result: dict, path: Path) -> None:
    cost, quality = result["cost"], result["quality"]
    lines = [
        "# Attribute heads: cost and held-apart quality", "",
        f"Written by `python benchmarks/attributes.py` on {result['date']}.", "",
        f"Machine: {result['machine']}.", "",
        "## Cost at tagging time", "",
        f"`estatelens tag` on the {cost['photos']} photos of ../shared/data/houses/photos, {cost['rounds']} "
        "alternating rounds, each in its own process; median photos/s:", "",
        "| model | photos/s (median) | every round |", "|---|---:|---|",
    ]
    for k, v in cost["photos_per_second"].items():
        lines.append(f"| {k} | {cost['median'][k]:.0f} | {', '.join(f'{s:.0f}' for s in v)} |")
    net = cost["network_ms_per_photo"]
    graph_diff = net["room type + embedding output"] / net["room type alone"] - 1
    heads_share = net["heads"] / net["room type alone"]
    lines += ["", f"End to end, tagging with the heads ({', '.join(cost['attributes'])}) took "
              f"**{100 * cost['extra_time_per_photo']:+.1f} %** time per photo (median of the {cost['rounds']} "
              f"paired rounds: {', '.join(f'{100 * r:+.1f}' for r in cost['paired'])} %); the rounds themselves "
              "vary by several per cent on this machine, more than the heads cost. Bar: at most +10 %.", "",
              "Where the time goes, measured in one process on the same batches of 16 (median ms per photo):", "",
              "| part | ms per photo |", "|---|---:|"]
    lines += [f"| network, {k} | {v:.3f} |" if k != "heads" else f"| the heads' arithmetic on the embedding | {v:.4f} |"
              for k, v in net.items()]
    lines += ["", f"The heads' own arithmetic is **{100 * heads_share:.1f} %** of the network's time per photo (each "
              "head is one dot product with the pooled embedding, and one network pass feeds the room type and "
              f"every head); the graphs with and without the embedding output differ by {100 * graph_diff:+.1f} %, "
              "which is the spread between batches, not a cost: the extra output is an Identity on a tensor the "
              "network computes anyway.", ""]
    lines += ["## Held-apart quality of the shipped heads", "",
              "Test photos: rooms-web/test living rooms, and the houses exteriors in the seeded test split "
              "of `estatelens train-attribute`; `unsure` labels left out. Precision and recall at the "
              "shipped threshold, with 95 % Wilson intervals; n/a where no photo reaches the threshold; "
              "threshold none: no threshold reached the stated precision with 5 true positives on validation, "
              "so the head gives probabilities only.", "",
              "| attribute | photos | yes | AP | ROC AUC | threshold | precision | recall |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, q in quality.items():
        seen, n_houses = q["houses_test_photos_seen_by_backbone"]
        for part, m in q["shipped"].items():
            if part == "houses":
                part = f"houses (the backbone trained on {seen} of these {n_houses} photos for room type)"
            lines.append(f"| {name} | {part} | {m['positives']} of {m['n']} | {num(m['average_precision'])} | "
                         f"{num(m['roc_auc'])} | {num(q['threshold']) if q['threshold'] is not None else 'none'} | "
                         f"{pct(m['precision'])}{ci(m['precision_95ci'])} | {pct(m['recall'])}{ci(m['recall_95ci'])} |")
    lines += ["", "## Looser operating points (threshold chosen on validation for a stated precision, scored on test)", "",
              "| attribute | stated precision | threshold | validation precision / recall | test precision / recall | test yes at threshold |",
              "|---|---:|---:|---|---|---:|"]
    for name, q in quality.items():
        for target, r in q["by_target_precision"].items():
            v, t = r["validation"], r["test"]
            thr = "none" if r["threshold"] is None else f"{r['threshold']:.3f}"
            lines.append(f"| {name} | {float(target):.2f} | {thr} | {pct(v['precision'])} / {pct(v['recall'])} | "
                         f"{pct(t['precision'])} / {pct(t['recall'])} | {t['tp'] + t['fp']} |")
    lines.append("")
    path.write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7, help="alternating tagging rounds per model (default 7)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "attributes.md"))
    ap.add_argument("--from-json", action="store_true", help="only write the Markdown again from OUT's .json")
    args = ap.parse_args()
    if args.from_json:
        out = Path(args.out)
        write_report(json.loads(out.with_suffix(".json").read_text()), out)
        print(out.read_text())
        return
    if not (DATA / "attributes.csv").is_file():
        sys.exit(f"needs ../shared/data beside the repository ({DATA})")
    result = {"date": datetime.date.today().isoformat(), "machine": machine(),
              "cost": measure_cost(args.rounds), "quality": measure_quality()}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    write_report(result, out)
    print(out.read_text())


if __name__ == "__main__":
    main()
