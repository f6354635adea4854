# Sourced by tools/build_*.sh: the repository root (the working folder from here on), the
# environment (tools/setup.sh: .venv, installs), the shared data and the default build's sources.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/tools/setup.sh"
cd "$ROOT"
DATA="${SHARED_DATA:-$ROOT/../shared/data}"
# What the bundled `rooms` network trains on (benchmarks/perception.py's BUILD_SOURCES says the same).
SOURCES=("$DATA/rooms-web" "$DATA/rooms-places/train" "$DATA/houses/photos.csv" "$DATA/exteriors-spb"
         "data/labels/places-extra.csv")
