"""Contact sheets for labelling by eye: numbered thumbnails of the photos a CSV lists (PNG).

    python tools/contact_sheets.py candidates.csv --out sheets/ [--grid 6x4] [--cell 256]   # sheets/sheet-000.png, ...

The CSV needs a `path` column (absolute, or relative to the CSV's folder); rows are drawn in the
order given, each with its row number (from 0) under it, so a labeller writes down the
numbers that show the thing. How the fireplace labels in data/labels/ were made is in that
folder's README.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, ImageOps

COLS, ROWS, CELL = 6, 4, 256
STRIP = 32  # the number's band under each photo (on the photo it would hide a corner mark)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv")
    ap.add_argument("--out", required=True)
    ap.add_argument("--grid", default=f"{COLS}x{ROWS}", help="columns x rows a sheet (default %(default)s)")
    ap.add_argument("--cell", type=int, default=CELL, help="width of a thumbnail in px (default %(default)s)")
    args = ap.parse_args()
    cols, rows = (int(v) for v in args.grid.lower().split("x"))
    cell_w, cell_h = args.cell, args.cell * 3 // 4 + STRIP
    base = Path(args.csv).parent
    with open(args.csv, newline="", encoding="utf-8-sig") as f:
        paths = [base / r["path"] if not Path(r["path"]).is_absolute() else Path(r["path"]) for r in csv.DictReader(f)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    font = ImageFont.load_default(size=28)
    per = cols * rows
    for start in range(0, len(paths), per):
        sheet = Image.new("RGB", (cols * cell_w, rows * cell_h), "white")
        draw = ImageDraw.Draw(sheet)
        for k, p in enumerate(paths[start:start + per]):
            x, y = (k % cols) * cell_w, (k // cols) * cell_h
            try:
                with Image.open(p) as im:
                    thumb = ImageOps.exif_transpose(im).convert("RGB")
                thumb.thumbnail((cell_w - 4, cell_h - STRIP - 4))
                sheet.paste(thumb, (x + 2, y + 2))
            except OSError as e:
                draw.text((x + 8, y + 100), f"unreadable: {e}"[:30], fill="red")
            draw.rectangle((x + 2, y + cell_h - STRIP, x + 62, y + cell_h - 2), fill="black")
            draw.text((x + 6, y + cell_h - STRIP), str(start + k), font=font, fill="yellow")
        sheet.save(out / f"sheet-{start // per:03d}.png")
    print(f"{-(-len(paths) // per)} sheets of {len(paths)} photos in {out}")


if __name__ == "__main__":
    main()
