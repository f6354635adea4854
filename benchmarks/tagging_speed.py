"""estatelens against RoomNet, side by side in one run: speed, peak memory, accuracy per shared class.

    python benchmarks/tagging_speed.py            # writes benchmarks/results/tagging_speed.md (+ .json)

Needs `pip install -e .[bench]` (ai-edge-litert runs the RoomNet peer) and ../shared beside the repo.

Speed: each tool tags every photo of ../shared/data/houses/photos in its own child process (so peak
memory is its own), on all cores (2 in CI):
- estatelens: the `estatelens tag` command as a user runs it (default bundled model, CSV output);
  photos/s counts the tagging loop (decoding, network, writing the journal), not loading the model;
- RoomNet: its published model through ai-edge-litert with 2 threads, one photo at a time as its
  `classify_im_dir` does, with the preprocessing its README gives (full decode, centre square crop,
  resize to 224, x/255*2-1).
Accuracy: both models on the same held-apart photos (rooms-web/test, rooms-places/val and the test
split of houses, which the bundled model never saw), on the classes both know: bathroom, bedroom,
kitchen, living_room, exterior (RoomNet's backyard and frontyard both count as exterior).
Compute bound: the network's multiply-adds per photo against a dense GEMM measured on this machine.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DATA = SHARED / "data"
ROOMNET = SHARED / "peers" / "roomnet"
ROOMNET_TO_OURS = {"bathroom": "bathroom", "bedroom": "bedroom", "kitchen": "kitchen",
                   "livingRoom": "living_room", "frontyard": "exterior", "backyard": "exterior"}
SHARED_CLASSES = ["bathroom", "bedroom", "exterior", "kitchen", "living_room"]


# --- RoomNet, as its README describes it -------------------------------------------------------

def roomnet_interpreter(threads: int):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(ROOMNET / "roomnet.tflite"), num_threads=threads)
    it.allocate_tensors()
    mapping = json.loads((ROOMNET / "label_mappings.json").read_text())  # {"backyard": 0, ...}
    names = [name for name, _ in sorted(mapping.items(), key=lambda kv: kv[1])]
    return it, names


def roomnet_input(path: str) -> np.ndarray:
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
    w, h = im.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    im = im.crop((left, top, left + s, top + s)).resize((224, 224), Image.BILINEAR)
    return (np.asarray(im, dtype=np.float32) / 255.0 * 2.0 - 1.0)[None]


def roomnet_predict(paths: list[str], threads: int) -> tuple[list[str], float]:
    """RoomNet's label (mapped to ours where it has one) for each photo, and the seconds it took."""
    it, names = roomnet_interpreter(threads)
    inp = it.get_input_details()[0]["index"]
    out = next(o["index"] for o in it.get_output_details() if o["name"] == "out_scores")
    labels = []
    t0 = time.perf_counter()
    for p in paths:
        it.set_tensor(inp, roomnet_input(p))
        it.invoke()
        probs = it.get_tensor(out)[0]
        name = names[int(np.argmax(probs))]
        labels.append(ROOMNET_TO_OURS.get(name, name))
    return labels, time.perf_counter() - t0


# --- child processes, so that each tool's peak memory is its own --------------------------------

def child_roomnet(args) -> None:
    paths = sorted(str(p) for p in Path(args.photos).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    roomnet_predict(paths[:8], args.threads)  # warm-up
    _, seconds = roomnet_predict(paths, args.threads)
    print(json.dumps({"photos": len(paths), "seconds": seconds, "photos_per_second": len(paths) / seconds,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def child_estatelens(args) -> None:
    from estatelens.bundle import load_bundle
    from estatelens.tagging import TagJob, run_tagging

    bundle = load_bundle(args.model)
    bundle.session(args.threads)
    photos = sorted(str(p) for p in Path(args.photos).iterdir())
    with tempfile.TemporaryDirectory() as tmp:  # warm-up, as RoomNet gets: first ONNX Runtime runs
        run_tagging(bundle, TagJob(photos[:64], str(Path(tmp) / "w.csv"), progress=False), log=lambda m: None)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        s = run_tagging(bundle, TagJob([args.photos], str(Path(tmp) / "tags.csv"), progress=False),
                        log=lambda m: None)
        total = time.perf_counter() - t0
    print(json.dumps({"photos": s.n_rows, "seconds": s.seconds, "photos_per_second": s.photos_per_second,
                      "command_seconds_incl_output": total,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def run_child(kind: str, photos: Path, model: str, threads: int) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--photos", str(photos), "--model", model,
           "--threads", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- accuracy on held-apart photos ------------------------------------------------------------

def held_out_sets() -> dict[str, list]:
    from estatelens.data.dataset import load_collection

    return {
        "rooms-web/test": load_collection(DATA / "rooms-web" / "test", assign=False, progress=False).samples,
        "rooms-places/val": load_collection(DATA / "rooms-places" / "val", assign=False, progress=False).samples,
        "houses (test split)": load_collection(DATA / "houses" / "photos.csv", progress=False).split("test"),
    }


def accuracy_table(model: str, threads: int) -> dict:
    from estatelens.bundle import load_bundle
    from estatelens.tagging import tag_photos

    bundle = load_bundle(model)
    bundle.session(threads)
    result = {}
    for name, samples in held_out_sets().items():
        samples = [s for s in samples if s.label in SHARED_CLASSES]
        paths = [s.path for s in samples]
        ours = [r.room_type for r in tag_photos(bundle, paths)]
        theirs, _ = roomnet_predict(paths, threads)
        per_class = {}
        for c in SHARED_CLASSES:
            idx = [i for i, s in enumerate(samples) if s.label == c]
            if idx:
                per_class[c] = {"n": len(idx),
                                "estatelens": float(np.mean([ours[i] == c for i in idx])),
                                "roomnet": float(np.mean([theirs[i] == c for i in idx]))}
        result[name] = {"n": len(samples),
                        "estatelens": float(np.mean([o == s.label for o, s in zip(ours, samples)])),
                        "roomnet": float(np.mean([t == s.label for t, s in zip(theirs, samples)])),
                        "per_class": per_class}
    return result


# --- compute bound ----------------------------------------------------------------------------

def multiply_adds(model: str) -> float:
    """Multiply-adds per photo of the bundle's network (convolutions and linear layers)."""
    import torch

    from estatelens.bundle import load_bundle
    from estatelens.models.registry import create_model

    bundle = load_bundle(model)
    net = create_model(bundle.info["model"], num_classes=len(bundle.classes), pretrained=False).eval()
    total = 0

    def hook(mod, inp, out):
        nonlocal total
        if isinstance(mod, torch.nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
            total += out.numel() * k
        elif isinstance(mod, torch.nn.Linear):
            total += out.numel() * mod.in_features

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    s = bundle.preprocessing.size
    with torch.no_grad():
        net(torch.zeros(1, 3, s, s))
    for h in handles:
        h.remove()
    return float(total)


def gemm_peaks(threads: int) -> dict:
    """Dense matrix-multiply throughput on this machine through ONNX Runtime: float32 MatMul and
    uint8 x int8 MatMulInteger (the kernel family the int8 convolutions use)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    n = 1024
    peaks = {}
    for name, op, in_type, w_type in (("fp32", "MatMul", TensorProto.FLOAT, TensorProto.FLOAT),
                                      ("int8", "MatMulInteger", TensorProto.UINT8, TensorProto.INT8)):
        rng = np.random.default_rng(0)
        w = (rng.standard_normal((n, n)).astype(np.float32) if name == "fp32"
             else rng.integers(-127, 127, (n, n), dtype=np.int8))
        out_type = TensorProto.FLOAT if name == "fp32" else TensorProto.INT32
        graph = helper.make_graph([helper.make_node(op, ["x", "w"], ["y"])], "gemm",
                                  [helper.make_tensor_value_info("x", in_type, [n, n])],
                                  [helper.make_tensor_value_info("y", out_type, [n, n])],
                                  [onnx.numpy_helper.from_array(w, "w")])
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        x = (rng.standard_normal((n, n)).astype(np.float32) if name == "fp32"
             else rng.integers(0, 255, (n, n), dtype=np.uint8))
        sess.run(None, {"x": x})
        t0, k = time.perf_counter(), 0
        while time.perf_counter() - t0 < 3:
            sess.run(None, {"x": x})
            k += 1
        peaks[name] = n ** 3 * k / (time.perf_counter() - t0)  # multiply-adds per second
    return peaks


def network_only(model: str, threads: int, batch: int = 32) -> float:
    from estatelens.bundle import load_bundle

    bundle = load_bundle(model)
    bundle.session(threads)
    s = bundle.preprocessing.size
    x = np.random.default_rng(0).uniform(-1, 1, (batch, 3, s, s)).astype(np.float32)
    bundle.predict_batch(x)
    t0, k = time.perf_counter(), 0
    while time.perf_counter() - t0 < 5:
        bundle.predict_batch(x)
        k += 1
    return batch * k / (time.perf_counter() - t0)


def write_report(out, lines: list[str], results) -> None:
    """The Markdown report and its figures as JSON beside it (same name, .json); prints the report."""
    out = Path(out)
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    print(out.read_text())


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import onnxruntime

    return (f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python "
            f"{platform.python_version()}, ONNX Runtime {onnxruntime.__version__}")


def write_markdown(r: dict, path: Path) -> None:
    e, rn = r["speed"]["estatelens"], r["speed"]["roomnet"]
    lines = [
        "# Tagging speed and accuracy: estatelens against RoomNet", "",
        f"Written by `python benchmarks/tagging_speed.py` on {r['date']}.", "",
        f"Machine: {r['machine']}; {r['threads']} threads for each tool.", "",
        f"Model: `{r['model']}` ({r['model_info']}).", "",
        "## Speed: every photo of ../shared/data/houses/photos, one run", "",
        "| tool | photos | photos/s | peak memory |", "|---|---:|---:|---:|",
        f"| estatelens tag | {e['photos']} | **{e['photos_per_second']:.0f}** | {e['peak_rss_mb']:.0f} MB |",
        f"| RoomNet (ai-edge-litert, one photo at a time) | {rn['photos']} | {rn['photos_per_second']:.0f} | {rn['peak_rss_mb']:.0f} MB |",
        "", f"estatelens is **{r['speed']['ratio']:.1f}x** as fast as RoomNet on the same photos.", "",
        "## Compute bound", "",
        f"- Network: {r['bound']['gmacs_per_photo']:.3f} G multiply-adds per photo at "
        f"{r['bound']['input_size']} px.",
        f"- Dense GEMM measured here through ONNX Runtime ({r['threads']} threads): "
        f"{r['bound']['gemm_fp32_gmacs']:.0f} G multiply-adds/s in float32, "
        f"{r['bound']['gemm_int8_gmacs']:.0f} G/s in int8.",
        f"- So the network alone could at best run {r['bound']['bound_int8_photos_s']:.0f} photos/s in int8 "
        f"({r['bound']['bound_fp32_photos_s']:.0f} in float32) if every layer ran at GEMM speed.",
        f"- Measured, network only (batch 32, random input): {r['bound']['network_only_photos_s']:.0f} photos/s "
        f"= {100 * r['bound']['network_only_photos_s'] / r['bound']['bound_int8_photos_s']:.0f} % of the int8 bound "
        "(depthwise convolutions and memory traffic do not run at GEMM speed).",
        f"- End to end, with decoding on the same 2 cores: {e['photos_per_second']:.0f} photos/s "
        f"= {100 * e['photos_per_second'] / r['bound']['network_only_photos_s']:.0f} % of network-only.", "",
        "## Accuracy on the classes both models know (held-apart photos, same photos for both)", "",
        "| data | class | photos | estatelens | RoomNet |", "|---|---|---:|---:|---:|",
    ]
    for name, d in r["accuracy"].items():
        lines.append(f"| {name} | **all shared** | {d['n']} | **{100 * d['estatelens']:.1f} %** | {100 * d['roomnet']:.1f} % |")
        for c, pc in d["per_class"].items():
            lines.append(f"| | {c} | {pc['n']} | {100 * pc['estatelens']:.1f} % | {100 * pc['roomnet']:.1f} % |")
    lines += ["", "Per class over all three sets together:", "",
              "| class | photos | estatelens | RoomNet |", "|---|---:|---:|---:|"]
    for c, pc in r["per_class_all"].items():
        lines.append(f"| {c} | {pc['n']} | {100 * pc['estatelens']:.1f} % | {100 * pc['roomnet']:.1f} % |")
    lines += ["", "A photo counts as right when the model's top class is its label; estatelens can also answer "
              "dining_room or entrance_hall, which RoomNet cannot, and those answers count as wrong here.", ""]
    path.write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="rooms")
    ap.add_argument("--photos", default=str(DATA / "houses" / "photos"))
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "tagging_speed.md"))
    ap.add_argument("--child", choices=["roomnet", "estatelens"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child == "roomnet":
        return child_roomnet(args)
    if args.child == "estatelens":
        return child_estatelens(args)

    from estatelens.bundle import load_bundle

    bundle = load_bundle(args.model)
    for p in Path(args.photos).iterdir():  # both tools then read the photos from the page cache
        p.read_bytes()
    speed = {"estatelens": run_child("estatelens", Path(args.photos), args.model, args.threads),
             "roomnet": run_child("roomnet", Path(args.photos), args.model, args.threads)}
    speed["ratio"] = speed["estatelens"]["photos_per_second"] / speed["roomnet"]["photos_per_second"]
    print(f"speed: estatelens {speed['estatelens']['photos_per_second']:.0f}/s, RoomNet "
          f"{speed['roomnet']['photos_per_second']:.0f}/s, ratio {speed['ratio']:.1f}", flush=True)
    macs = multiply_adds(args.model)
    peaks = gemm_peaks(args.threads)
    net = network_only(args.model, args.threads)
    bound = {"gmacs_per_photo": macs / 1e9, "input_size": bundle.preprocessing.size,
             "gemm_fp32_gmacs": peaks["fp32"] / 1e9, "gemm_int8_gmacs": peaks["int8"] / 1e9,
             "bound_fp32_photos_s": peaks["fp32"] / macs, "bound_int8_photos_s": peaks["int8"] / macs,
             "network_only_photos_s": net}
    accuracy = accuracy_table(args.model, args.threads)
    per_class_all = {}
    for c in SHARED_CLASSES:
        parts = [d["per_class"][c] for d in accuracy.values() if c in d["per_class"]]
        n = sum(p["n"] for p in parts)
        per_class_all[c] = {"n": n, **{k: sum(p[k] * p["n"] for p in parts) / n for k in ("estatelens", "roomnet")}}
    q = bundle.info.get("quantization")
    result = {"date": datetime.date.today().isoformat(), "machine": machine(), "threads": args.threads,
              "model": args.model,
              "model_info": f"{bundle.info.get('model')}, {bundle.info.get('mode')}, "
                            f"{'int8' if q else 'float32'}, {bundle.preprocessing.size} px",
              "speed": speed, "bound": bound, "accuracy": accuracy, "per_class_all": per_class_all}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    write_markdown(result, out)
    print(out.read_text())


if __name__ == "__main__":
    main()
