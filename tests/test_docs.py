"""The documentation: the README is a front page, and the site builds with no broken link."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_readme_is_a_front_page_that_opens_with_the_two_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = text.splitlines()
    assert len(lines) <= 150, len(lines)
    block = text.split("```bash", 1)[1].split("```", 1)[0].strip().splitlines()
    assert [line.split("#")[0].strip() for line in block] == ["bash tools/demo.sh", "bash tools/test.sh"]
    # every link to a file of the repository points at one that exists
    for target in re.findall(r"\]\(([^)#\s]+)[^)]*\)", text):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), target
    # .ci/run calls the README's test command
    assert "tools/test.sh" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_the_cli_reference_covers_every_command():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        pytest.importorskip("mkdocs")
        from mkdocs_hooks import cli_reference
    finally:
        sys.path.pop(0)
    ref = cli_reference()
    for name in ("tag", "train", "compare", "adapt", "index", "search", "serve", "train-attribute", "explain"):
        assert f"## estatelens {name}\n" in ref, name
    assert "--read-token" in ref and "--attribute" in ref


def test_the_site_builds_strictly(tmp_path):
    """`mkdocs build --strict`: a broken link, a page missing from the nav or an API docstring that
    does not render fails the build (and CI)."""
    if shutil.which("mkdocs") is None and os.environ.get("ESTATELENS_REQUIRE_BROWSER") != "1":
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]')")
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                       cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    site = tmp_path / "site"
    assert (site / "index.html").is_file() and (site / "cli" / "index.html").is_file()
    assert "estatelens tag" in (site / "cli" / "index.html").read_text(encoding="utf-8")
    assert "Tagger" in (site / "python-api" / "index.html").read_text(encoding="utf-8")
