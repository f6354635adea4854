#!/usr/bin/env bash
# Build the bundled `rooms-attributes` model (src/estatelens/bundled/rooms-attributes.estatelens):
# the bundled `rooms` network unchanged (same room types, to the bit) plus an attribute tail, the
# last blocks of a network fine-tuned with fireplace and balcony on the same frozen first blocks
# (src/estatelens/attribute_tail.py). Steps: train that network (the default recipe with the
# attributes learnt by the network, weight 0.3, and `rooms` as teacher for the room types: the
# fifth run of benchmarks/results/multitask.md), quantise it, graft its tail onto `rooms`, fit the
# fireplace and balcony heads on the tail's embedding (calibrated on the labelled photos the tail
# did not learn from), install. About 60 minutes on 2 cores.
# Usage: bash tools/build_attribute_model.sh [RUN_DIR]; INSTALL=0 builds without installing;
# DONOR=BUNDLE skips training and quantisation and grafts that int8 bundle's tail.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/build_env.sh"
RUN="${1:-runs/rooms-attributes}"
BASE=src/estatelens/bundled/rooms.estatelens
mkdir -p "$RUN"

DONOR="${DONOR:-}"
if [ -z "$DONOR" ]; then
    rm -rf "$RUN/teacher.estatelens"
    cp -r "$BASE" "$RUN/teacher.estatelens"
    estatelens train "${SOURCES[@]}" --model efficientnet_lite1 --mode finetune --merge-val --out "$RUN" \
        --attribute "fireplace=$DATA/attributes.csv,data/labels/fireplace.csv" \
        --attribute "balcony=$DATA/attributes.csv,data/labels/balcony.csv" --attribute-loss-weight 0.3 \
        --distill "$RUN/teacher.estatelens" --distill-weight 0.5
    estatelens quantize "$RUN/model.estatelens" --calibration "${SOURCES[@]}" --out "$RUN/donor.estatelens"
    DONOR="$RUN/donor.estatelens"
fi
rm -rf "$RUN/rooms-attributes.estatelens"
python tools/build_attribute_tail.py "$BASE" "$DONOR" "$RUN/rooms-attributes.estatelens" --share-weights \
    --check "$DATA"/rooms-web/test/living_room/*.jpg
estatelens train-attribute fireplace "$DATA/attributes.csv" data/labels/fireplace.csv \
    --model "$RUN/rooms-attributes.estatelens" --report "$RUN/attributes/fireplace" --quiet
estatelens train-attribute balcony "$DATA/attributes.csv" data/labels/balcony.csv \
    --model "$RUN/rooms-attributes.estatelens" --report "$RUN/attributes/balcony" --quiet
# empty (unfurnished rooms) reads the room network's embedding, as in `rooms`: the tail never learnt it
estatelens train-attribute empty data/labels/empty.csv --embedding embedding \
    --model "$RUN/rooms-attributes.estatelens" --report "$RUN/attributes/empty" --quiet
[ "${INSTALL:-1}" = 1 ] || { echo "built $RUN/rooms-attributes.estatelens (not installed: INSTALL=0)"; exit 0; }

rm -rf src/estatelens/bundled/rooms-attributes.estatelens
cp -r "$RUN/rooms-attributes.estatelens" src/estatelens/bundled/
echo "installed src/estatelens/bundled/rooms-attributes.estatelens ($(du -sh src/estatelens/bundled/rooms-attributes.estatelens | cut -f1))"
