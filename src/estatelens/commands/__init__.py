"""Commands of the `estatelens` CLI that declare their parser beside their handler: each module
has `add_parser(subparsers)` and the handler it sets as `func`."""
