"""The commands of the `estatelens` CLI, in groups; each module declares its commands' parsers
beside their handlers (`add_parsers(subparsers)`, adapt: `add_parser`), and cli.py puts them
together: tagging (tag, explain, predict), training (train, compare, evaluate, quantize,
train-attribute, models), adapt, indexing (index, search, serve, export-labels), crops
(train-crops, crops explain)."""

DEFAULT_MODEL = "rooms"  # the bundled room-type model (src/estatelens/bundled/rooms.estatelens)
