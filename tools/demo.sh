#!/usr/bin/env bash
# The main job, on a fresh machine: set up, then train a room-type classifier on a slice of
# ../shared/data/rooms-web (60 photos per class and split: EfficientNet-Lite0 features with a new
# head, a minute or two on 2 cores) and print where the report is.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/tools/setup.sh"
cd "$ROOT"
DATA="${1:-$ROOT/../shared/data/rooms-web}"
exec estatelens train "$DATA" --model efficientnet_lite0 --mode features --max-per-class 60 --out runs/demo
