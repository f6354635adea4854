#!/usr/bin/env bash
# The main job, on a fresh machine: set up, then tag listing photos with the bundled room-type
# model. By default it tags ../shared/data/houses/photos into runs/demo/tags.xlsx and links each
# photo into runs/demo/by-room/<room type>/. Usage: bash tools/demo.sh [PHOTOS...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/tools/setup.sh"
cd "$ROOT"
if [ "$#" -eq 0 ]; then set -- "$ROOT/../shared/data/houses/photos"; fi
exec estatelens tag "$@" --out runs/demo/tags.xlsx --sort-into runs/demo/by-room --link
