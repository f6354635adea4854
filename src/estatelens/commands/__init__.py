"""The commands of the `estatelens` CLI, in groups; each module declares its commands' parsers
beside their handlers (`add_parsers(subparsers)`, adapt: `add_parser`), and cli.py puts them
together: tagging (tag, explain, predict), training (train, compare, evaluate, quantize,
train-attribute, models), adapt, indexing (index, search, serve, export-labels), crops
(train-crops, crops explain)."""

DEFAULT_MODEL = "rooms"  # the bundled room-type model (src/estatelens/bundled/rooms.estatelens)


def positive_int(text: str) -> int:
    """argparse type for counts and sizes that must be at least 1 (a batch size of 0 once tagged
    nothing and said every photo passed)."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value
