"""Contact sheets for labelling by eye: numbered thumbnails of the photos a CSV lists, 24 a sheet.

    python tools/contact_sheets.py candidates.csv --out sheets/      # sheets/sheet-000.jpg, ...

The CSV needs a `path` column (absolute, or relative to the CSV's folder); rows are drawn in the
order given, each with its row number (from 0) in the corner, so a labeller writes down the
numbers that show the thing. How the fireplace labels in data/labels/ were made is in that
folder's README.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, ImageOps

COLS, ROWS, CELL = 6, 4, 256


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    base = Path(args.csv).parent
    with open(args.csv, newline="", encoding="utf-8-sig") as f:
        paths = [base / r["path"] if not Path(r["path"]).is_absolute() else Path(r["path"]) for r in csv.DictReader(f)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    font = ImageFont.load_default(size=28)
    per = COLS * ROWS
    for start in range(0, len(paths), per):
        sheet = Image.new("RGB", (COLS * CELL, ROWS * CELL), "white")
        draw = ImageDraw.Draw(sheet)
        for k, p in enumerate(paths[start:start + per]):
            x, y = (k % COLS) * CELL, (k // COLS) * CELL
            try:
                with Image.open(p) as im:
                    thumb = ImageOps.exif_transpose(im).convert("RGB")
                thumb.thumbnail((CELL - 4, CELL - 4))
                sheet.paste(thumb, (x + 2, y + 2))
            except OSError as e:
                draw.text((x + 8, y + 100), f"unreadable: {e}"[:30], fill="red")
            draw.rectangle((x + 2, y + 2, x + 58, y + 34), fill="black")
            draw.text((x + 6, y + 3), str(start + k), font=font, fill="yellow")
        sheet.save(out / f"sheet-{start // per:03d}.jpg", quality=85)
    print(f"{-(-len(paths) // per)} sheets of {len(paths)} photos in {out}")


if __name__ == "__main__":
    main()
