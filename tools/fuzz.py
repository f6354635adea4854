"""Fuzz the photo decode path and the search-query parser for a while (longer than CI's bounded
run in tests/test_fuzz.py, with the same targets), count the executions and keep every finding.

    python tools/fuzz.py --minutes 10 [--out benchmarks/results/fuzz.md] [--findings fuzz-findings/]

A finding is an input on which a target raised anything but the error its API promises, or an
assertion about its answer failed; each is written to the findings folder (the input and the
traceback) so that it can become a regression example in tests/test_fuzz.py.
"""
from __future__ import annotations

import argparse
import hashlib
import random
import sys
import tempfile
import time
import traceback
import warnings
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from fuzz_targets import FORMATS, QUERY_WORDS, SUFFIX, decode_target, mutate, query_target, seed_photos  # noqa: E402
from tagging_speed import machine  # noqa: E402

def random_text(rnd: random.Random) -> str:
    if rnd.random() < 0.5:
        return "".join(rnd.choice(QUERY_WORDS) for _ in range(rnd.randint(0, 10)))
    return "".join(chr(rnd.choice([rnd.randrange(32, 127), rnd.randrange(0, 0x2FFFF)])) for _ in range(rnd.randint(0, 60)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=5.0, help="time per target group (default 5)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/fuzz.md"))
    ap.add_argument("--findings", default=str(ROOT / "fuzz-findings"))
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)  # Pillow on broken files; the targets judge the outcome
    rnd = random.Random(args.seed)
    seeds = seed_photos()
    findings_dir = Path(args.findings)
    counts: dict[str, int] = {}
    outcomes: dict[str, dict[str, int]] = {}
    findings: list[str] = []

    def record(target: str, data: bytes, suffix: str) -> None:
        name = f"{target}-{hashlib.sha1(data).hexdigest()[:12]}"
        findings_dir.mkdir(parents=True, exist_ok=True)
        (findings_dir / f"{name}{suffix}").write_bytes(data)
        (findings_dir / f"{name}.txt").write_text(traceback.format_exc(), encoding="utf-8")
        findings.append(f"{name}: {traceback.format_exc().strip().splitlines()[-1]}")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for target in ("decode", "query"):
            end, n = time.time() + 60 * args.minutes, 0
            seen = outcomes.setdefault(target, {})
            while time.time() < end:
                n += 1
                if target == "decode":
                    fmt = rnd.choice(FORMATS)
                    data = mutate(seeds[fmt], rnd) if rnd.random() < 0.9 else seeds[fmt][:16] + rnd.randbytes(rnd.randint(0, 2048))
                    try:
                        status = decode_target(data, SUFFIX[fmt], tmp)
                    except Exception:  # noqa: BLE001 - a finding
                        record("decode", data, SUFFIX[fmt])
                        continue
                    kind = "ok" if status == "ok" else status.split(" (")[0].split(":")[0][:40]
                else:
                    text = random_text(rnd)
                    try:
                        kind = query_target(text)
                    except Exception:  # noqa: BLE001 - a finding
                        record("query", text.encode("utf-8", "surrogatepass"), ".txt")
                        continue
                seen[kind] = seen.get(kind, 0) + 1
            counts[target] = n
            print(f"{target}: {n} executions in {args.minutes:g} min, {len(findings)} findings so far")

    lines = ["# Fuzzing the decode path and the query parser", "",
             f"Written by `python tools/fuzz.py --minutes {args.minutes:g} --seed {args.seed}` on {date.today()}; "
             f"{machine()}. "
             "Targets in tests/fuzz_targets.py (also run, bounded, by tests/test_fuzz.py in CI).", "",
             "| target | executions | per second | findings |", "|---|---:|---:|---:|"]
    for target, n in counts.items():
        k = sum(f.startswith(target) for f in findings)
        lines.append(f"| {target} | {n:,} | {n / (60 * args.minutes):.0f} | {k} |")
    lines += ["", "What the decode inputs came to (mutated JPEG/PNG/WebP/GIF/TIFF/BMP files and raw bytes "
              "behind a format's signature):", "", "| outcome | inputs |", "|---|---:|"]
    for kind, k in sorted(outcomes.get("decode", {}).items(), key=lambda kv: -kv[1])[:15]:
        lines.append(f"| {kind} | {k:,} |")
    lines += ["", "## Findings", ""] + ([f"- {f}" for f in findings] or ["None in this run."])
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 1 if findings else 0


if __name__ == "__main__":
    raise SystemExit(main())
