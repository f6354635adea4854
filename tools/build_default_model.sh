#!/usr/bin/env bash
# Rebuild the bundled room-type model (src/estatelens/bundled/rooms.estatelens) from ../shared/data:
# fine-tune EfficientNet-Lite1 on rooms-web train+val, rooms-places train and the houses photos
# (split by house), quantise it to int8, score it on the held-apart sets, add the fireplace and
# balcony heads (trained on ../shared/data/attributes.csv), then install it.
# About 27 minutes on 2 cores. Usage: bash tools/build_default_model.sh [RUN_DIR]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/tools/setup.sh"
cd "$ROOT"
DATA="${SHARED_DATA:-$ROOT/../shared/data}"
RUN="${1:-runs/default-rooms}"
SOURCES=("$DATA/rooms-web" "$DATA/rooms-places/train" "$DATA/houses/photos.csv")

estatelens train "${SOURCES[@]}" --model efficientnet_lite1 --mode finetune --merge-val --out "$RUN"
estatelens quantize "$RUN/model.estatelens" --calibration "${SOURCES[@]}" --out "$RUN/rooms.estatelens"
estatelens evaluate "$DATA/rooms-web/test" --model "$RUN/rooms.estatelens" --json "$RUN/eval/rooms-web-test.json"
estatelens evaluate "$DATA/rooms-places/val" --model "$RUN/rooms.estatelens" --json "$RUN/eval/rooms-places-val.json"
estatelens evaluate "$DATA/rooms-web/test" --model "$RUN/model.estatelens" --json "$RUN/eval/float-rooms-web-test.json"
estatelens evaluate "$DATA/rooms-places/val" --model "$RUN/model.estatelens" --json "$RUN/eval/float-rooms-places-val.json"
for ATTRIBUTE in fireplace balcony; do
    estatelens train-attribute "$ATTRIBUTE" "$DATA/attributes.csv" --model "$RUN/rooms.estatelens" \
        --report "$RUN/attributes/$ATTRIBUTE" --quiet
done

rm -rf src/estatelens/bundled/rooms.estatelens
mkdir -p src/estatelens/bundled
cp -r "$RUN/rooms.estatelens" src/estatelens/bundled/
echo "installed src/estatelens/bundled/rooms.estatelens ($(du -sh src/estatelens/bundled/rooms.estatelens | cut -f1))"
