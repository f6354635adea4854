"""Fuzzing the two places where untrusted input is parsed: the photo decode path (mutated real
files of every format, and raw bytes) and the search-query parser (generated text) and search.

Bounded for CI (ESTATELENS_FUZZ_EXAMPLES per target, default 300); `python tools/fuzz.py --minutes
N` runs the same targets for longer and writes benchmarks/results/fuzz.md. Every crash a run
finds is added below as a regression example.
"""
from __future__ import annotations

import os
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz_targets import FORMATS, QUERY_WORDS, SUFFIX, decode_target, mutate, query_target, seed_photos

# Broken files make Pillow warn (corrupt EXIF, tags past the end); the targets judge the outcome.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
EXAMPLES = int(os.environ.get("ESTATELENS_FUZZ_EXAMPLES", "300"))
SEEDS = seed_photos()
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@FUZZ
@given(fmt=st.sampled_from(FORMATS), seed=st.integers(0, 2**32 - 1), n=st.integers(1, 8))
def test_mutated_photos_decode_or_say_why(tmp_path, fmt, seed, n):
    decode_target(mutate(SEEDS[fmt], random.Random(seed), n), SUFFIX[fmt], tmp_path)


@FUZZ
@given(data=st.binary(max_size=2048), fmt=st.sampled_from(FORMATS), header=st.booleans())
def test_arbitrary_bytes_decode_or_say_why(tmp_path, data, fmt, header):
    # with header: the format's first bytes, so the parser gets past its signature check
    decode_target((SEEDS[fmt][:16] if header else b"") + data, SUFFIX[fmt], tmp_path)


@FUZZ
@given(text=st.text(max_size=120) | st.lists(st.sampled_from(QUERY_WORDS), max_size=12).map("".join))
def test_search_queries_parse_or_say_why(text):
    query_target(text)


@pytest.mark.parametrize("text", ["price<1e999", "price<99999999999999999999999999", "area=-0", "fireplace>nan", "price" * 50 + "<1", "room!=", "<<<", "=",
                                  "area>=-inf", "fireplace>0.5 fireplace<0.2"])
def test_search_runs_odd_queries_against_an_index(index_copy, text):
    """The whole search (parser and SQL) on an index: an answer or a QueryError, never another error."""
    from estatelens.index import db
    from estatelens.index.search import QueryError, search

    engine = db.connect(str(index_copy), create=False)
    for level in ("photo", "listing"):
        try:
            out = search(engine, text, level=level)
        except QueryError:
            continue
        assert out["total"] >= 0
