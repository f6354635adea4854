#!/usr/bin/env bash
# Rebuild the bundled watermark network (src/estatelens/bundled/watermark.onnx and .json) from
# ../shared/data: synthetic overlays (watermarks/generator.py) on photos taken to be clean, the
# photos labelled by eye in data/labels/watermark.csv left out, and the training photos that a
# network already finds real marks on left out too; then score it on those labels, choose the size
# it reads photos at and the shipped threshold on half A of them (benchmarks/watermark.py
# --set-threshold). About 20 minutes on 2 cores (2026-12-02; the first build, with DROP_MODEL=first,
# took about 90 on a slower machine). Usage:
#   bash tools/build_watermark_model.sh [RUN_DIR]          # INSTALL=0: build and score only
# The drop list (training photos left out because they carry real marks of their own) is
# data/labels/watermark-drop.txt, the one the shipped network was built with; DROP_MODEL=PATH.onnx
# makes a new one with that network, DROP_MODEL=first with a first network trained on every photo
# (how the first build made it).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/build_env.sh"
RUN="${1:-runs/watermark}"
CLEAN=("$DATA/rooms-places/train" "$DATA/rooms-places/extra" "$DATA/rooms-web/train" "$DATA/exteriors-spb")
DROP_MODEL="${DROP_MODEL:-}"
mkdir -p "$RUN"
# 1. The drop list: the photos a network scores 0.5 or more (web photos carry real marks of their
# own: stock agencies, blogs), exteriors-spb kept for its shop signs (scene text, not a mark).
if [ -z "$DROP_MODEL" ]; then
    sed "s|^|$DATA/|" data/labels/watermark-drop.txt > "$RUN/drop.txt"
else
    if [ "$DROP_MODEL" = first ]; then
        python -m estatelens.watermarks.train "${CLEAN[@]}" --val "$DATA/rooms-web/val" --out "$RUN/first" --epochs "${EPOCHS:-8}"
        DROP_MODEL="$RUN/first/watermark.onnx"
    fi
    python -c "import sys; from estatelens.watermarks.train import write_drop_list as w; print(w(sys.argv[1], sys.argv[3:], sys.argv[2]), 'dropped')" \
        "$DROP_MODEL" "$RUN/drop.txt" "${CLEAN[@]}"
fi
# 2. The network: two synthetic samples of every photo left, and SCENE_TEXT_SAMPLES more of each
# exteriors-spb photo that never get an overlay (its shop signs: text that belongs to the scene).
python -m estatelens.watermarks.train "${CLEAN[@]}" --val "$DATA/rooms-web/val" --out "$RUN" --epochs "${EPOCHS:-8}" \
    --samples "${SAMPLES:-2}" --workers 2 --drop "$RUN/drop.txt" \
    --scene-text "$DATA/exteriors-spb" --scene-text-samples "${SCENE_TEXT_SAMPLES:-4}"
python benchmarks/watermark.py --model "$RUN/watermark.onnx" --set-threshold --out "$RUN/benchmark.md"
[ "${INSTALL:-1}" = 1 ] || { echo "built $RUN/watermark.onnx (not installed: INSTALL=0)"; exit 0; }
cp "$RUN/watermark.onnx" "$RUN/watermark.json" src/estatelens/bundled/
echo "installed src/estatelens/bundled/watermark.onnx; now run python benchmarks/watermark.py for the committed results"
