#!/usr/bin/env bash
# Rebuild the bundled room-type model (src/estatelens/bundled/rooms.estatelens) from ../shared/data:
# fine-tune EfficientNet-Lite1 on rooms-web train+val, rooms-places train, the houses photos (split
# by house), exteriors-spb (seeded split; its test part held apart) and the rooms-places/extra
# photos chosen in data/labels/places-extra.csv; quantise it to int8; score it on the held-apart
# sets; add the fireplace heads (../shared/data/attributes.csv plus our labels in
# data/labels/fireplace.csv) and balcony; add the rehearsal set `estatelens adapt` needs and the
# open-plan cue heads (`also`); install.
# About 80 minutes on 2 cores. Usage: bash tools/build_default_model.sh [RUN_DIR]
# INSTALL=0 builds and scores the model without replacing the bundled one. MULTITASK=1 also trains
# fireplace and balcony with the network (train --attribute; the labels' test splits stay out): the
# 2026-12-01 experiment, better attributes and worse room types, so not the shipped recipe
# (docs/attributes.md, benchmarks/results/multitask.md); ATTRIBUTE_LOSS_WEIGHT sets that loss's weight
# (default 1). CONTINUE_FROM=BUNDLE trains that bundle's network further instead of starting from
# ImageNet (train --init; 4 epochs at a third of the learning rate unless EPOCHS / LR say otherwise):
# with MULTITASK=1, the attributes are learnt while the room types start where the bundle left them.
# DISTILL=BUNDLE adds that bundle's room-type probabilities as soft targets (train --distill; weight
# DISTILL_WEIGHT, default 0.5): the 2026-12-02 experiment of keeping the room types while the attributes
# are learnt (benchmarks/results/multitask.md).
# SCENE_TARGETS=CSV adds a scene teacher (train --scene-targets; weight SCENE_LOSS_WEIGHT, default 0.3):
# the ADE20K segment areas of the training photos (tools/scene_segments.py) as soft targets of a
# second output, the 2026-12-03 experiment (benchmarks/results/multitask.md).
# FROM_WEIGHTS=BUNDLE skips training: the float network is rebuilt from that bundle's weights.pt and
# everything after it (int8, scores, heads, rehearsal set, also) is made again (about 20 minutes):
# how the 2026-12-02 bundle got its 7-bit weights (quantize.py, REDUCE_RANGE).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/build_env.sh"
RUN="${1:-runs/default-rooms}"

MULTITASK_OPTIONS=()
if [ "${MULTITASK:-0}" = 1 ]; then
    MULTITASK_OPTIONS=(--attribute "fireplace=$DATA/attributes.csv,data/labels/fireplace.csv"
                       --attribute "balcony=$DATA/attributes.csv"
                       --attribute-loss-weight "${ATTRIBUTE_LOSS_WEIGHT:-1}")
fi
if [ -n "${DISTILL:-}" ]; then
    MULTITASK_OPTIONS+=(--distill "$DISTILL" --distill-weight "${DISTILL_WEIGHT:-0.5}")
fi
if [ -n "${SCENE_TARGETS:-}" ]; then
    MULTITASK_OPTIONS+=(--scene-targets "$SCENE_TARGETS" --scene-loss-weight "${SCENE_LOSS_WEIGHT:-0.3}")
fi
if [ -n "${CONTINUE_FROM:-}" ]; then
    MULTITASK_OPTIONS+=(--init "$CONTINUE_FROM" --epochs "${EPOCHS:-4}" --lr "${LR:-0.0003}" --warmup-epochs 0.3)
fi
if [ -n "${FROM_WEIGHTS:-}" ]; then
    python -c "import sys; from estatelens.quantize import float_bundle; float_bundle(sys.argv[1], sys.argv[2])" \
        "$FROM_WEIGHTS" "$RUN/model.estatelens"
else
    estatelens train "${SOURCES[@]}" --model efficientnet_lite1 --mode finetune --merge-val --out "$RUN" \
        "${MULTITASK_OPTIONS[@]}"
fi
estatelens quantize "$RUN/model.estatelens" --calibration "${SOURCES[@]}" --out "$RUN/rooms.estatelens"
for SET in rooms-web/test rooms-places/val; do
    NAME="${SET//\//-}"
    estatelens evaluate "$DATA/$SET" --model "$RUN/rooms.estatelens" --json "$RUN/eval/$NAME.json"
    estatelens evaluate "$DATA/$SET" --model "$RUN/model.estatelens" --json "$RUN/eval/float-$NAME.json"
done
estatelens evaluate "$DATA/exteriors-spb" --split test --model "$RUN/rooms.estatelens" --json "$RUN/eval/exteriors-spb-test.json"
estatelens train-attribute fireplace "$DATA/attributes.csv" data/labels/fireplace.csv --model "$RUN/rooms.estatelens" \
    --report "$RUN/attributes/fireplace" --quiet
estatelens train-attribute empty data/labels/empty.csv --model "$RUN/rooms.estatelens" \
    --report "$RUN/attributes/empty" --quiet
estatelens train-attribute balcony "$DATA/attributes.csv" data/labels/balcony.csv --model "$RUN/rooms.estatelens" \
    --report "$RUN/attributes/balcony" --quiet
python tools/add_rehearsal.py "$RUN/rooms.estatelens" "${SOURCES[@]}"
# Open-plan cue heads (`also`): pseudo-labels from the COCO detector (data/labels/objects.csv, made
# by tools/scene_labels.py), threshold set on the photos labelled by eye in data/labels/also.csv.
python tools/add_also.py "$RUN/rooms.estatelens" --cues data/labels/objects.csv --labels data/labels/also.csv
[ "${INSTALL:-1}" = 1 ] || { echo "built $RUN/rooms.estatelens (not installed: INSTALL=0)"; exit 0; }

rm -rf src/estatelens/bundled/rooms.estatelens
mkdir -p src/estatelens/bundled
cp -r "$RUN/rooms.estatelens" src/estatelens/bundled/
echo "installed src/estatelens/bundled/rooms.estatelens ($(du -sh src/estatelens/bundled/rooms.estatelens | cut -f1))"
