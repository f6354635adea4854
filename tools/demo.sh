#!/usr/bin/env bash
# The main job, on a fresh machine: set up, then fine-tune EfficientNet-Lite0 on a slice of
# ../shared/data/rooms-web (60 photos per class and split) and print where the report is.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/tools/setup.sh"
cd "$ROOT"
DATA="${1:-$ROOT/../shared/data/rooms-web}"
exec estatelens train "$DATA" --model efficientnet_lite0 --mode finetune --max-per-class 60 \
    --epochs 6 --views 2 --out runs/demo
