#!/usr/bin/env bash
# Rebuild the bundled watermark network (src/estatelens/bundled/watermark.onnx and .json) from
# ../shared/data: synthetic overlays (watermarks/generator.py) on photos taken to be clean, the
# photos labelled by eye in data/labels/watermark.csv left out, trained twice (the second time
# without the photos the first network finds real marks on); then score it on those labels and
# set the shipped threshold (benchmarks/watermark.py --set-threshold). About 90 minutes on 2 cores. Usage:
#   bash tools/build_watermark_model.sh [RUN_DIR]          # INSTALL=0: build and score only
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/tools/setup.sh"
cd "$ROOT"
DATA="${SHARED_DATA:-$ROOT/../shared/data}"
RUN="${1:-runs/watermark}"
CLEAN=("$DATA/rooms-places/train" "$DATA/rooms-places/extra" "$DATA/rooms-web/train" "$DATA/exteriors-spb")
# 1. A first network on every photo; 2. the photos it scores 0.5 or more (real marks of web photos,
# exteriors-spb kept for its shop signs) are dropped; 3. the shipped network trains on the rest.
python -m estatelens.watermarks.train "${CLEAN[@]}" --val "$DATA/rooms-web/val" --out "$RUN/first" --epochs "${EPOCHS:-12}"
python -c "import sys; from estatelens.watermarks.train import write_drop_list as w; print(w(sys.argv[1], sys.argv[3:], sys.argv[2]), 'dropped')" \
    "$RUN/first/watermark.onnx" "$RUN/drop.txt" "${CLEAN[@]}"
python -m estatelens.watermarks.train "${CLEAN[@]}" --val "$DATA/rooms-web/val" --out "$RUN" --epochs "${EPOCHS:-12}" \
    --drop "$RUN/drop.txt"
python benchmarks/watermark.py --model "$RUN/watermark.onnx" --set-threshold --out "$RUN/benchmark.md"
[ "${INSTALL:-1}" = 1 ] || { echo "built $RUN/watermark.onnx (not installed: INSTALL=0)"; exit 0; }
cp "$RUN/watermark.onnx" "$RUN/watermark.json" src/estatelens/bundled/
echo "installed src/estatelens/bundled/watermark.onnx; now run python benchmarks/watermark.py for the committed results"
