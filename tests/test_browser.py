"""The page of `estatelens serve`, end to end in a real browser (Debian's chromium, driven by Playwright).

One server over a private copy of the `listing_index` index (3 listings L1..L3, 4 stripes photos
each, tagged by the bundled model) and one browser serve the whole module; each test opens its own
browser context, so its localStorage (where the page keeps the write token) starts empty. What the
model calls these synthetic photos is read from the API, never assumed.
"""
from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.is_file():
    why = f"browser tests need Debian's chromium at {CHROMIUM} (not found; tools/test.sh installs it as root)"
    if os.environ.get("ESTATELENS_REQUIRE_BROWSER") == "1":  # CI: a missing browser is a failure, not a skip
        pytest.fail(why, pytrace=False)
    pytest.skip(why, allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need the playwright package")
expect = sync_api.expect

TOKEN = "test-token"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
MAX_UPLOAD = 1_000_000


def label(name: str) -> str:
    return name.replace("_", " ")


@pytest.fixture(scope="module")
def server(listing_index, tmp_path_factory):
    """(base URL, database path): the app on a free port, in a background thread."""
    import uvicorn

    from estatelens.web import create_app

    root = tmp_path_factory.mktemp("browser")
    db = root / "listings.db"
    with sqlite3.connect(listing_index[0]) as src, sqlite3.connect(db) as out:  # index_copy, for the whole module
        src.backup(out)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ESTATELENS_HOME", str(root / "home"))
        app = create_app(str(db), token=TOKEN, upload_dir=str(root / "uploads"), max_upload_bytes=MAX_UPLOAD, threads=1)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=srv.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not srv.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", db
        srv.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(20_000)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def api(base: str, path: str, **params):
    url = base + path + ("?" + urllib.parse.urlencode(params) if params else "")
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def open_page(page, url: str) -> None:
    """Load the page and wait until its controls are wired (vocabulary read, listeners attached)."""
    page.goto(url)
    expect(page.locator("body")).to_have_attribute("data-ready", "1")


def wait_results(page, total: int, query: str | None = None, level: str | None = None) -> None:
    """Wait for the answer to one search: the query and level the page sent, then its total.

    The total alone is not enough: an older answer can have the same count as the one awaited.
    """
    count = page.get_by_test_id("result-count")
    if query is not None:
        expect(count).to_have_attribute("data-query", query)
    if level is not None:
        expect(count).to_have_attribute("data-level", level)
    expect(count).to_have_attribute("data-total", str(total))


def common_room(base: str) -> str:
    """The room type the model gave most of the index's photos."""
    everything = api(base, "/api/search", q="", per_page=200)["results"]
    return Counter(p["room_type"] for p in everything).most_common(1)[0][0]


def image_loaded(page, testid: str, part: str = "", timeout: float = 20_000) -> None:
    page.wait_for_function(
        """([id, part]) => { const i = document.querySelector(`[data-testid="${id}"]`);
            return i && i.src.includes(part) && i.complete && i.naturalWidth > 0; }""",
        arg=[testid, part], timeout=timeout)


def test_search_words_count_terms_and_warnings(server, page):
    base, _ = server
    room = common_room(base)
    total = api(base, "/api/search", q=label(room))["total"]
    open_page(page, base + "/")
    wait_results(page, api(base, "/api/search", q="")["total"], query="")

    page.get_by_test_id("search-input").fill(label(room))
    page.get_by_test_id("search-input").press("Enter")
    wait_results(page, total, query=label(room))
    cards = page.get_by_test_id("results").get_by_test_id("photo-card")
    expect(cards).to_have_count(min(total, 24))
    assert set(cards.evaluate_all("cs => cs.map(c => c.dataset.room)")) == {room}
    expect(page.get_by_test_id("interpreted")).to_contain_text(f"room: {label(room)}")
    expect(page.get_by_test_id("ignored-warning")).to_have_count(0)
    # Thumbnails are lazy and do load.
    assert cards.first.locator("img").get_attribute("loading") == "lazy"
    expect(cards.first.get_by_test_id("card-prob")).to_have_text(f"{math.floor(cards_prob(base, room) * 100 + 0.5)}%")

    # A word the index does not know is shown as ignored, not silently dropped (button submits too).
    page.get_by_test_id("search-input").fill(f"{label(room)} zzqx")
    page.get_by_test_id("search-button").click()
    expect(page.get_by_test_id("ignored-warning")).to_contain_text("zzqx")
    wait_results(page, total, query=f"{label(room)} zzqx")

    # A filter the server cannot run: its 400 message is shown.
    page.get_by_test_id("search-input").fill("nosuchfield=3")
    page.get_by_test_id("search-input").press("Enter")
    expect(page.get_by_test_id("search-error")).to_contain_text("no field 'nosuchfield'")

    # The search lives in the URL: back returns to the previous one, reload keeps it.
    page.go_back()
    expect(page.get_by_test_id("ignored-warning")).to_contain_text("zzqx")
    page.reload()
    expect(page.get_by_test_id("search-input")).to_have_value(f"{label(room)} zzqx")
    wait_results(page, total, query=f"{label(room)} zzqx")


def test_paging(server, page):
    base, _ = server
    total = api(base, "/api/search", q="")["total"]
    per_page = 5
    pages = -(-total // per_page)
    open_page(page, f"{base}/#/search?per_page={per_page}")
    expect(page.get_by_test_id("page-info")).to_have_text(f"page 1 of {pages}")
    expect(page.get_by_test_id("prev-page")).to_be_disabled()
    first = page.get_by_test_id("photo-card").evaluate_all("cs => cs.map(c => c.dataset.id)")
    page.get_by_test_id("next-page").click()
    expect(page.get_by_test_id("page-info")).to_have_text(f"page 2 of {pages}")
    assert "page=2" in page.url
    second = page.get_by_test_id("photo-card").evaluate_all("cs => cs.map(c => c.dataset.id)")
    assert len(first) == len(second) == per_page and not set(first) & set(second)
    want = [str(r["id"]) for r in api(base, "/api/search", q="", page=2, per_page=per_page)["results"]]
    assert second == want
    page.go_back()
    expect(page.get_by_test_id("page-info")).to_have_text(f"page 1 of {pages}")


def test_label_next_lists_the_least_sure_photos_and_opens_one(server, page):
    base, _ = server
    got = api(base, "/api/suggestions", n=24)["results"]
    want = [str(r["id"]) for r in got]
    odd = [str(r["id"]) for r in got if r["reason"] == "unusual"]
    assert odd and len(odd) < len(want)  # the bundled model finds these stripes unlike its photos
    open_page(page, base + "/")
    page.get_by_test_id("label-next-link").click()
    expect(page.get_by_test_id("suggestions-title")).to_have_text("Label next")
    cards = page.get_by_test_id("suggestions").get_by_test_id("photo-card")
    expect(cards).to_have_count(len(want))
    assert cards.evaluate_all("cs => cs.map(c => c.dataset.id)") == want
    expect(page.get_by_test_id("suggestions-why")).to_contain_text("estatelens adapt")
    marked = page.get_by_test_id("suggestions").locator("[data-testid=photo-card]:has([data-testid=unusual-badge])")
    assert marked.evaluate_all("cs => cs.map(c => c.dataset.id)") == odd
    cards.first.click()
    page.wait_for_url(f"**/#/photo/{want[0]}")
    expect(page.get_by_test_id("set-room-kitchen")).to_be_visible()


def cards_prob(base: str, room: str) -> float:
    return api(base, "/api/search", q=label(room), per_page=1)["results"][0]["room_probability"]


def test_filter_controls_and_listing_search(server, page):
    base, _ = server
    vocab = api(base, "/api/vocabulary")
    room = common_room(base)
    open_page(page, base + "/")
    wait_results(page, api(base, "/api/search", q="")["total"], query="")

    page.get_by_test_id("filter-room").select_option(room)
    wait_results(page, api(base, "/api/search", q=f"room={room}")["total"], query=f"room={room}")
    assert "room=" + room in page.url
    attr = vocab["attributes"][0]
    page.get_by_test_id(f"filter-attr-{attr}").select_option("no")
    wait_results(page, api(base, "/api/search", q=f"room={room} {attr}=no")["total"], query=f"room={room} {attr}=no")
    expect(page.get_by_test_id("interpreted")).to_contain_text(f"{label(attr)}: no")
    page.get_by_test_id("filter-clear").click()
    expect(page.get_by_test_id("filter-room")).to_have_value("")
    wait_results(page, api(base, "/api/search", q="")["total"], query="", level="photo")

    # Listings under 400 000: L1 (150 000) and L2 (300 000).
    page.get_by_test_id("level-listing").click()
    page.get_by_test_id("search-input").fill("price<400000")
    page.get_by_test_id("search-input").press("Enter")
    wait_results(page, 2, query="price<400000", level="listing")
    expect(page.get_by_test_id("level-listing")).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_test_id("interpreted")).to_contain_text("price < 400000")
    ids = page.get_by_test_id("listing-card").evaluate_all("cs => cs.map(c => c.dataset.id)")
    assert sorted(ids) == ["L1", "L2"]

    # With a room word too, the photos that matched are highlighted in the listing's view.
    want = api(base, "/api/search", q=f"{label(room)} price<400000", level="listing")
    page.get_by_test_id("search-input").fill(f"{label(room)} price<400000")
    page.get_by_test_id("search-input").press("Enter")
    wait_results(page, want["total"], query=f"{label(room)} price<400000", level="listing")
    first = want["results"][0]
    page.locator(f'[data-testid="listing-card"][data-id="{first["id"]}"]').get_by_test_id("listing-link").click()
    expect(page.get_by_test_id("listing-title")).to_have_text(f"Listing {first['id']}")
    expect(page.get_by_test_id("facts-table")).to_contain_text(f"{first['facts']['price']:,}")
    expect(page.get_by_test_id("listing-photos").get_by_test_id("photo-card")).to_have_count(first["n_photos"])
    expect(page.get_by_test_id("matched-badge")).to_have_count(sum(p["matched"] for p in first["photos"]))


def test_actions_faster_than_the_page_are_read_in_order(server, page):
    """A user quicker than the page (or a page on a busy machine): "Listings", then a query typed
    and submitted at once, while the answer for "all listings" is still on its way. The search run
    is the last one asked for, at the level clicked, and the older answer, arriving last, is dropped."""
    base, _ = server
    held = []

    def hold_all_listings(route):
        url = urllib.parse.unquote_plus(route.request.url)
        if "level=listing" in url and "price" not in url:
            held.append(route)
        else:
            route.continue_()

    open_page(page, base + "/")
    wait_results(page, api(base, "/api/search", q="")["total"], query="")
    page.route("**/api/search?*", hold_all_listings)
    page.evaluate("""() => {  // one task: no event of the page can run between these steps
        document.querySelector('[data-testid="level-listing"]').click();
        document.querySelector('[data-testid="search-input"]').value = "price<400000";
        document.querySelector('[data-testid="search-form"]').requestSubmit();
    }""")
    wait_results(page, 2, query="price<400000", level="listing")
    expect(page.get_by_test_id("level-listing")).to_have_attribute("aria-pressed", "true")
    assert "level=listing" in page.url and "price" in urllib.parse.unquote(page.url)
    assert len(held) == 1, "the click on Listings searched at once, before the query was submitted"
    held[0].continue_()
    expect(page.locator("body")).to_have_attribute("data-pending", "0")  # the older answer is in
    wait_results(page, 2, query="price<400000", level="listing")
    expect(page.get_by_test_id("search-input")).to_have_value("price<400000")
    page.unroute("**/api/search?*")


def test_photo_view_bars_and_heatmap(server, page):
    base, _ = server
    open_page(page, base + "/")
    first = page.get_by_test_id("photo-card").first
    photo_id = first.get_attribute("data-id")
    first.click()
    page.wait_for_url(f"**/#/photo/{photo_id}")
    rec = api(base, f"/api/photos/{photo_id}")
    image_loaded(page, "photo-image", "/image")
    expect(page.get_by_test_id("room-bar")).to_have_count(len(rec["room_scores"]))
    expect(page.get_by_test_id("photo-title")).to_have_text(label(rec["room_type"]).capitalize())
    expect(page.get_by_test_id("attr-row")).to_have_count(len(rec["attributes"]))

    page.get_by_test_id("heatmap-room_type").click()
    expect(page.get_by_test_id("image-loading")).to_be_visible()
    image_loaded(page, "photo-image", "/heatmap/room_type", timeout=120_000)  # PyTorch loads on first use
    expect(page.get_by_test_id("image-loading")).to_be_hidden()
    expect(page.get_by_test_id("image-error")).to_be_hidden()

    page.get_by_test_id("photo-listing-link").click()
    expect(page.get_by_test_id("listing-title")).to_have_text(f"Listing {rec['listing_id']}")


def test_correct_with_token_prompt_reload_and_undo(server, page):
    base, _ = server
    rooms = api(base, "/api/vocabulary")["rooms"]
    rec = api(base, "/api/search", q="", per_page=1)["results"][0]
    pid, predicted = rec["id"], rec["room_type"]
    other = next(r for r in rooms if r != predicted)
    attr, a = next(iter(rec["attributes"].items()))
    flip = "no" if a["value"] == "yes" else "yes"

    page.goto(f"{base}/#/photo/{pid}")
    page.get_by_test_id(f"set-room-{other}").click()
    expect(page.get_by_test_id("token-panel")).to_be_visible()  # no token yet: the page asks for it
    page.get_by_test_id("token-input").fill(TOKEN)
    page.get_by_test_id("token-submit").click()
    expect(page.get_by_test_id("room-corrected")).to_be_visible()
    expect(page.get_by_test_id("photo-title")).to_have_text(label(other).capitalize())
    expect(page.get_by_test_id("model-said")).to_contain_text(label(predicted))
    assert page.evaluate("localStorage.getItem('estatelens.token')") == TOKEN

    page.get_by_test_id(f"set-attr-{attr}-{flip}").click()  # the token is kept: no second prompt
    expect(page.locator(f'[data-testid="attr-row"][data-attr="{attr}"]').get_by_test_id("attr-corrected")).to_be_visible()
    expect(page.get_by_test_id("token-panel")).to_be_hidden()

    page.reload()
    expect(page.get_by_test_id("room-corrected")).to_be_visible()
    expect(page.get_by_test_id(f"set-room-{other}")).to_have_attribute("aria-pressed", "true")
    now = api(base, f"/api/photos/{pid}")
    assert now["room_type"] == other and now["room_corrected"] and now["room_type_predicted"] == predicted
    assert now["corrections"]["room_type"]["value"] == other
    assert now["attributes"][attr]["value"] == flip and now["attributes"][attr]["corrected"]

    # The grid marks it, and "corrected only" finds just this photo.
    open_page(page, base + "/#/search")
    page.get_by_test_id("filter-corrected").check()
    wait_results(page, 1, query="corrected=yes")
    card = page.get_by_test_id("photo-card")
    expect(card).to_have_attribute("data-id", str(pid))
    expect(card.get_by_test_id("corrected-mark").first).to_be_visible()

    card.click()
    page.get_by_test_id("undo-room_type").click()
    expect(page.get_by_test_id("room-corrected")).to_be_hidden()
    expect(page.get_by_test_id("photo-title")).to_have_text(label(predicted).capitalize())
    page.get_by_test_id(f"undo-{attr}").click()
    expect(page.get_by_test_id(f"undo-{attr}")).to_have_count(0)
    now = api(base, f"/api/photos/{pid}")
    assert now["room_type"] == predicted and not now["room_corrected"] and now["corrections"] == {}
    assert now["attributes"][attr]["value"] == a["value"]


def test_wrong_token_from_url_is_an_error(server, page):
    base, _ = server
    rec = api(base, "/api/search", q="", per_page=1)["results"][0]
    other = next(r for r in api(base, "/api/vocabulary")["rooms"] if r != rec["room_type"])
    page.goto(f"{base}/?token=wrong#/photo/{rec['id']}")
    expect(page.get_by_test_id("photo-title")).to_be_visible()
    assert "token" not in page.url and page.url.endswith(f"#/photo/{rec['id']}")
    assert page.evaluate("localStorage.getItem('estatelens.token')") == "wrong"

    page.get_by_test_id(f"set-room-{other}").click()
    expect(page.get_by_test_id("token-error")).to_contain_text("wrong write token")
    page.get_by_test_id("token-cancel").click()
    expect(page.get_by_test_id("notice")).to_contain_text("wrong write token")
    expect(page.get_by_test_id("notice")).to_have_class("notice error")
    expect(page.get_by_test_id("room-corrected")).to_have_count(0)
    assert not api(base, f"/api/photos/{rec['id']}")["room_corrected"]


def test_upload_opens_the_new_photo_and_shows_refusals(server, page, tmp_path):
    base, _ = server
    rng = np.random.default_rng(0)
    photo = tmp_path / "garden.jpg"
    arr = np.linspace(0, 255, 320 * 240 * 3).reshape(240, 320, 3) + rng.normal(0, 20, (240, 320, 3))
    Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(photo, quality=90)
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo\n")
    big = tmp_path / "big.png"
    Image.fromarray(rng.integers(0, 256, (700, 700, 3), dtype=np.uint8)).save(big)
    assert big.stat().st_size > MAX_UPLOAD
    listing = 'L9<img src=x onerror="window.__xss=1">'  # must show as text, never run

    open_page(page, f"{base}/?token={TOKEN}")
    page.get_by_test_id("upload-toggle").click()
    form = page.get_by_test_id("upload-form")
    form.get_by_test_id("upload-file").set_input_files(str(text))
    form.get_by_test_id("upload-submit").click()
    expect(form.get_by_test_id("upload-error")).to_contain_text("not a JPEG, PNG or WebP")
    form.get_by_test_id("upload-file").set_input_files(str(big))
    form.get_by_test_id("upload-submit").click()
    expect(form.get_by_test_id("upload-error")).to_contain_text("too large")

    form.get_by_test_id("upload-file").set_input_files(str(photo))
    form.get_by_test_id("upload-listing").fill(listing)
    form.get_by_test_id("upload-submit").click()
    page.wait_for_url("**/#/photo/*")
    image_loaded(page, "photo-image", "/image")
    pid = page.url.rsplit("/", 1)[1]
    rec = api(base, f"/api/photos/{pid}")
    assert rec["origin"] == "upload" and rec["listing_id"] == listing
    expect(page.get_by_test_id("photo-title")).to_have_text(label(rec["room_type"]).capitalize())
    expect(page.get_by_test_id("photo-listing-link")).to_have_text(f"Listing {listing} →")
    expect(page.get_by_test_id("upload-panel")).to_be_hidden()
    page.get_by_test_id("photo-listing-link").click()
    expect(page.get_by_test_id("listing-title")).to_have_text(f"Listing {listing}")
    expect(page.get_by_test_id("listing-photos").get_by_test_id("photo-card")).to_have_count(1)
    assert page.evaluate("window.__xss") is None


def test_narrow_phone_width(server, browser):
    base, _ = server
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        pg = context.new_page()
        open_page(pg, base + "/")
        expect(pg.get_by_test_id("photo-card").first).to_be_visible()
        assert pg.evaluate("document.documentElement.scrollWidth") <= 390
        pg.get_by_test_id("photo-card").first.click()
        expect(pg.get_by_test_id("room-bars")).to_be_visible()
        assert pg.evaluate("document.documentElement.scrollWidth") <= 390
    finally:
        context.close()


def test_listing_page_shows_the_value_estimate(server, page):
    """What `index --value-model` stores (index/values.py) shows as its own box, not as facts."""
    base, db = server
    facts = {"value": 180000.0, "value_low": 150000.0, "value_high": 216000.0, "value_basis": "facts and photos",
             "value_drivers": "area +12 %, photos +5 %, city -3 %", "price_to_value": 0.8333}
    with sqlite3.connect(db) as conn:
        conn.executemany("INSERT INTO listing_facts (listing_id, name, num, text, key) VALUES ('L1', ?, ?, ?, ?)",
                         [(k, v if isinstance(v, float) else None, str(v), str(v).lower()) for k, v in facts.items()])
    try:
        open_page(page, base + "/#/listing/L1")
        box = page.get_by_test_id("value-estimate")
        expect(box.get_by_test_id("value")).to_have_text("180,000")
        expect(box.get_by_test_id("value-interval")).to_contain_text("150,000 – 216,000")
        expect(box.get_by_test_id("price-to-value")).to_have_text("The price is 83 % of the estimate.")
        expect(box.get_by_test_id("value-drivers")).to_contain_text("photos +5 %")
        expect(page.get_by_test_id("facts-table")).to_contain_text("150,000")  # the price
        expect(page.get_by_test_id("facts-table")).not_to_contain_text("value")
    finally:
        with sqlite3.connect(db) as conn:
            conn.execute("DELETE FROM listing_facts WHERE listing_id = 'L1' AND name LIKE '%value%'")


def test_open_plan_photos_show_their_second_room_type(server, page):
    """A photo with `also` (open plan, also.py) shows it on its card and page, and a search for that
    room type finds it."""
    base, db = server
    first = api(base, "/api/search", per_page=1)["results"][0]
    rooms = api(base, "/api/vocabulary")["rooms"]
    other = next(r for r in rooms if r != first["room_type"] and r != "uncertain")
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE photos SET also = ?, also_probability = 0.93 WHERE id = ?", (other, first["id"]))
    try:
        open_page(page, base + f"/#/search?q={label(other).replace(' ', '+')}&per_page=100")
        card = page.locator(f"[data-testid=photo-card][data-id='{first['id']}']")
        expect(card.get_by_test_id("card-also")).to_have_text(f"+ {label(other)}")
        card.click()
        page.wait_for_url(f"**/#/photo/{first['id']}")
        expect(page.get_by_test_id("photo-also")).to_contain_text(f"also shows a {label(other)} (93%)")
    finally:
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE photos SET also = NULL, also_probability = NULL WHERE id = ?", (first["id"],))


def test_listing_checks_show_as_badges_a_filter_and_publishability(server, page):
    """What `index --checks` stores (checks/, index/build.py) on cards, the photo page, the Checks
    filter and a listing's publishability line. The checks are written into the index here: the
    stripes photos have nothing for them to find but their size."""
    base, db = server
    l1 = api(base, "/api/listings/L1")["photos"]
    l2 = api(base, "/api/listings/L2")["photos"]
    blurred, face, copied, original = l1[0]["id"], l1[1]["id"], l1[2]["id"], l2[0]["id"]
    columns = ("quality", "quality_reasons", "sharpness", "exposure", "tilt_degrees", "colour_cast", "faces",
               "hashes", "duplicate_group")
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE photos SET quality = 'pass', sharpness = 120, exposure = 0.2, tilt_degrees = 0.5, "
                     "colour_cast = 4, faces = 0, hashes = '0;0;0;0'")
        conn.execute("UPDATE photos SET quality = 'fail', quality_reasons = 'blurred (sharpness 12.0 < 40)', "
                     "sharpness = 12 WHERE id = ?", (blurred,))
        conn.execute("UPDATE photos SET faces = 1, face_boxes = '0.400 0.200 0.600 0.500' WHERE id = ?", (face,))
        conn.execute(f"UPDATE photos SET duplicate_group = 1 WHERE id IN ({copied}, {original})")
    try:
        open_page(page, base + "/")
        wait_results(page, api(base, "/api/search", q="")["total"], query="")
        page.get_by_test_id("filter-check").select_option("quality=fail")
        wait_results(page, 1, query="quality=fail")
        expect(page.get_by_test_id("interpreted")).to_contain_text("quality: fail")
        expect(page.get_by_test_id("check-quality")).to_have_text("blurred")

        page.get_by_test_id("filter-check").select_option("duplicates=across")
        wait_results(page, 2, query="duplicates=across")
        card = page.locator(f"[data-testid=photo-card][data-id='{copied}']")
        expect(card.get_by_test_id("check-duplicate")).to_have_text("also in listing L2")
        card.click()
        page.wait_for_url(f"**/#/photo/{copied}")
        expect(page.get_by_test_id("photo-checks")).to_contain_text("passes")
        page.get_by_test_id("photo-duplicates").get_by_role("link", name=f"#{original}").click()
        page.wait_for_url(f"**/#/photo/{original}")
        expect(page.get_by_test_id("photo-duplicates")).to_contain_text("also in listing L1")

        open_page(page, base + "/#/listing/L1")
        expect(page.get_by_test_id("publishability")).to_have_text(
            "Not ready to publish: 1 photo fail quality, 1 show faces, 1 also in other listings.")
        expect(page.get_by_test_id("listing-photos").get_by_test_id("check-faces")).to_have_text("1 face")
        open_page(page, base + "/#/listing/L3")
        expect(page.get_by_test_id("publishability")).to_have_text("Ready to publish: all 4 checked photos pass.")
    finally:
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE photos SET " + ", ".join(f"{c} = NULL" for c in columns + ("face_boxes",)))
