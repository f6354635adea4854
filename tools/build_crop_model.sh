#!/usr/bin/env bash
# Rebuild the bundled crop model (src/estatelens/bundled/crops.estatelens) from ../shared/data:
# train-crops on the houses photos and rooms-web (frozen ImageNet EfficientNet-Lite0 backbones),
# score it on their held-apart photos, write docs/results/crops/ (metrics, report, example figures),
# then install it. About 13 minutes on 2 cores. Usage: bash tools/build_crop_model.sh [RUN_DIR]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/build_env.sh"
RUN="${1:-runs/crops}"

estatelens train-crops "$DATA/houses/photos" "$DATA/rooms-web" --out "$RUN" --quiet
mkdir -p docs/results/crops
cp "$RUN/metrics.json" "$RUN/report.md" docs/results/crops/
# Example figures on held-apart photos: cropped to 0.5 first (the truth is then known; the house
# front is found, the bedroom missed), and a photo as published.
rm -rf docs/results/crops/simulated docs/results/crops/as-published
estatelens crops explain "$DATA/houses/photos/12_frontal.jpg" "$DATA/houses/photos/129_bedroom.jpg" \
    --model "$RUN/crops.estatelens" --simulate 0.5 --out docs/results/crops/simulated
estatelens crops explain "$DATA/houses/photos/12_frontal.jpg" --model "$RUN/crops.estatelens" \
    --out docs/results/crops/as-published

rm -rf src/estatelens/bundled/crops.estatelens
cp -r "$RUN/crops.estatelens" src/estatelens/bundled/
echo "installed src/estatelens/bundled/crops.estatelens ($(du -sh src/estatelens/bundled/crops.estatelens | cut -f1))"
