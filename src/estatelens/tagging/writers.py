"""Write tag rows as .xlsx, .csv, .json, .jsonl or .parquet, streaming (rows are never all in memory).

Every writer goes through a temporary file that replaces the target only when complete, so an
interrupted write never leaves a half file that looks finished.
"""
from __future__ import annotations

import csv
import json
import os
from itertools import islice
from pathlib import Path
from typing import Iterable, Sequence

OUTPUT_FORMATS = (".xlsx", ".csv", ".json", ".jsonl", ".parquet")
EXCEL_MAX_ROWS = 1_048_576  # including the header row


def check_output_path(path: str | os.PathLike) -> Path:
    """Fail before any work is done if the output cannot be written in the asked format."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise ValueError(f"{path}: unknown output format '{suffix}'; use one of {', '.join(OUTPUT_FORMATS)}")
    if suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ImportError(f"{path}: writing Parquet needs pyarrow (pip install pyarrow), "
                              f"or choose .xlsx, .csv, .json or .jsonl") from None
    if path.exists() and path.is_dir():
        raise ValueError(f"{path}: is a folder; --out needs a file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def write_rows(path: str | os.PathLike, rows: Iterable[dict], columns: Sequence[str]) -> int:
    """Write `rows` (dicts keyed by `columns`) to `path` in the format of its extension; returns
    the number of rows written."""
    path = check_output_path(path)
    tmp = path.with_name(f".{path.name}.writing")
    writer = {".xlsx": _write_xlsx, ".csv": _write_csv, ".json": _write_json, ".jsonl": _write_jsonl,
              ".parquet": _write_parquet}[path.suffix.lower()]
    try:
        n = writer(tmp, rows, list(columns))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return n


def _write_csv(path: Path, rows, columns) -> int:
    # utf-8 with a byte-order mark: Excel then reads non-ASCII paths correctly; pandas skips it.
    n = 0
    with open(path, "w", newline="", encoding="utf-8-sig") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for row in rows:
            w.writerow(row)
            n += 1
    return n


def _write_jsonl(path: Path, rows, columns) -> int:
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps({c: row.get(c) for c in columns}, ensure_ascii=False) + "\n")
            n += 1
    return n


def _write_json(path: Path, rows, columns) -> int:
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        f.write("[")
        for row in rows:
            f.write(("\n" if n == 0 else ",\n") + json.dumps({c: row.get(c) for c in columns}, ensure_ascii=False))
            n += 1
        f.write("\n]\n")
    return n


_XLSX_WIDTHS = {"path": 60, "status": 24, "room_type": 14, "sorted_to": 60}


def _write_xlsx(path: Path, rows, columns) -> int:
    from openpyxl import Workbook
    from openpyxl.utils import get_column_letter

    from openpyxl.cell import WriteOnlyCell
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    wb = Workbook(write_only=True)  # streams rows to disk; a normal workbook holds every cell in memory
    n, sheet_no, ws, in_sheet = 0, 0, None, 0
    for row in rows:
        if ws is None or in_sheet >= EXCEL_MAX_ROWS - 1:  # Excel's row limit: continue on a new sheet
            if ws is not None:
                _finish_sheet(ws, columns, in_sheet)
            sheet_no += 1
            ws = wb.create_sheet("photos" if sheet_no == 1 else f"photos {sheet_no}")
            for j, c in enumerate(columns, start=1):
                ws.column_dimensions[get_column_letter(j)].width = _XLSX_WIDTHS.get(
                    c, 14 if c.startswith(("class_", "probability")) else max(10, len(c) + 2))
            ws.freeze_panes = "A2"
            ws.append(list(columns))
            in_sheet = 0
        ws.append([_xlsx_cell(ws, row.get(c), WriteOnlyCell, ILLEGAL_CHARACTERS_RE) for c in columns])
        n += 1
        in_sheet += 1
    if ws is None:
        ws = wb.create_sheet("photos")
        ws.append(list(columns))
    _finish_sheet(ws, columns, in_sheet)
    wb.save(path)
    return n


def _xlsx_cell(ws, value, cell_type, illegal):
    """Text stays text: control characters (legal in Linux file names, not in xlsx) become '?',
    and a path starting with '=' is not turned into a formula."""
    if not isinstance(value, str):
        return value
    cell = cell_type(ws, value=illegal.sub("?", value))
    if cell.data_type == "f":
        cell.data_type = "s"
    return cell


def _finish_sheet(ws, columns, n_rows: int) -> None:
    from openpyxl.utils import get_column_letter

    ws.auto_filter.ref = f"A1:{get_column_letter(len(columns))}{n_rows + 1}"


def _parquet_schema(pa, chunk: list[dict], columns):
    """Each column typed by its values in the first chunk of rows: bool, int64 where every value
    is an int, float64 where they are numbers, else string (also a column with no value there)."""
    fields = []
    for c in columns:
        values = [r[c] for r in chunk if r.get(c) is not None]
        if values and all(isinstance(v, bool) for v in values):
            t = pa.bool_()
        elif values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            t = pa.int64()
        elif values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            t = pa.float64()
        else:
            t = pa.string()
        fields.append((c, t))
    return pa.schema(fields)


def _parquet_value(pa, value, t, column: str):
    """`value` as column type `t` (later chunks may hold a type the first did not)."""
    if value is None:
        return None
    if t == pa.string():
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    if t == pa.float64() and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if t == pa.int64() and isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer():
        return int(value)
    if t == pa.bool_() and isinstance(value, bool):
        return value
    raise ValueError(f"column {column!r}: value {value!r} does not fit its Parquet type {t} "
                     f"(taken from the first rows); write .csv or .jsonl instead")


def _write_parquet(path: Path, rows, columns) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows, n = iter(rows), 0
    chunk = list(islice(rows, 50_000))
    schema = _parquet_schema(pa, chunk, columns)
    with pq.ParquetWriter(path, schema) as writer:
        while chunk:
            writer.write_table(pa.Table.from_pylist(
                [{c: _parquet_value(pa, r.get(c), t, c) for c, t in zip(columns, schema.types)} for r in chunk],
                schema=schema))
            n += len(chunk)
            chunk = list(islice(rows, 50_000))
        if n == 0:
            writer.write_table(schema.empty_table())
    return n
