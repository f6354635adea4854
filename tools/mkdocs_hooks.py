"""MkDocs hooks (mkdocs.yml `hooks:`): pages made from the repository rather than written twice.

- docs/cli.md's `<!-- cli-reference -->` becomes every command's --help, from the argparse parser
  the `estatelens` command itself uses;
- README.md becomes the home page (index.md);
- benchmarks/results/*.md become pages under benchmarks/, data/labels/README.md becomes
  data-labels.md, and docs/benchmarks.md's `<!-- benchmark-list -->` lists them.
"""
from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _title(md: Path) -> str:
    for line in md.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return md.stem


def _repo_links(text: str) -> str:
    """Links from a moved page to files of the repository become code spans naming the file (the
    site holds pages, not the repository); links to other benchmark pages stay links."""
    def repl(m):
        label, target = m.group(1), m.group(2)
        if target.startswith(("http://", "https://", "#")) or (target.endswith(".md") and "/" not in target):
            return m.group(0)
        return f"{label} (`{target}`)"
    return re.sub(r"\[([^\]]*)\]\(([^)\s]+)\)", repl, text)


def _front_page() -> str:
    """README.md, the repository's front page, as the site's: its links to docs/ and to benchmark
    results point at the site's pages."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    text = re.sub(r"\]\(docs/([^)]+)\)", r"](\1)", text)
    return re.sub(r"\]\(benchmarks/results/([^)/]+\.md)\)", r"](benchmarks/\1)", text)


def on_files(files, config):
    files.append(File.generated(config, "index.md", content=_front_page()))
    for md in sorted(RESULTS.glob("*.md")):
        files.append(File.generated(config, f"benchmarks/{md.name}", content=_repo_links(md.read_text(encoding="utf-8"))))
    labels = (ROOT / "data" / "labels" / "README.md").read_text(encoding="utf-8")
    files.append(File.generated(config, "data-labels.md", content=_repo_links(labels)))
    return files


def cli_reference() -> str:
    import argparse

    from estatelens.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {a.dest: a.help for a in sub._choices_actions}
    out = ["```text", parser.format_help().strip(), "```", ""]
    for name, p in sub.choices.items():
        out += [f"## estatelens {name}", "", helps.get(name) or "", "", "```text", p.format_help().strip(), "```", ""]
    return "\n".join(out)


def benchmark_list() -> str:
    rows = ["| page | written by |", "|---|---|"]
    for md in sorted(RESULTS.glob("*.md")):
        script = ROOT / "benchmarks" / f"{md.stem}.py"
        rows.append(f"| [{_title(md)}](benchmarks/{md.name}) | "
                    + (f"`python benchmarks/{script.name}`" if script.exists() else "see the page") + " |")
    return "\n".join(rows)


def on_page_markdown(markdown, page, config, files):
    if "<!-- cli-reference -->" in markdown:
        markdown = markdown.replace("<!-- cli-reference -->", cli_reference())
    if "<!-- benchmark-list -->" in markdown:
        markdown = markdown.replace("<!-- benchmark-list -->", benchmark_list())
    return markdown
