"""The HTTP API of `estatelens serve`: every endpoint, and every refusal with its status code."""
from __future__ import annotations

import csv
import io

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from conftest import stripes
from estatelens.web import create_app

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def app(index_copy, tmp_path):
    return create_app(str(index_copy), token=TOKEN, upload_dir=tmp_path / "uploads", max_upload_bytes=200_000)


@pytest.fixture
def client(app):
    with TestClient(app) as c:
        yield c


def _jpeg(orientation="vertical", size=200, seed=3) -> bytes:
    buf = io.BytesIO()
    stripes(orientation, size, seed=seed).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _first_photo(client) -> dict:
    return client.get("/api/search", params={"per_page": 1}).json()["results"][0]


def test_openapi_schema_lists_every_endpoint(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths) == {"/api/health", "/api/vocabulary", "/api/search", "/api/photos/{photo_id}",
                          "/api/photos/{photo_id}/thumbnail", "/api/photos/{photo_id}/image",
                          "/api/photos/{photo_id}/heatmap/{target}", "/api/photos/{photo_id}/corrections/room_type",
                          "/api/photos/{photo_id}/corrections/{attribute}",
                          "/api/photos", "/api/listings/{listing_id}", "/api/export-labels", "/api/suggestions"}
    for path in ("/api/photos/{photo_id}/corrections/room_type", "/api/photos/{photo_id}/corrections/{attribute}"):
        assert set(paths[path]) == {"put", "delete"}


def test_the_schema_lists_the_values_a_target_takes(client):
    """Targets and corrected values are enums in the schema, from this index and model."""
    paths = client.get("/openapi.json").json()["paths"]
    comps = client.get("/openapi.json").json()["components"]["schemas"]

    def param(path, method, name):
        return next(p for p in paths[path][method]["parameters"] if p["name"] == name)["schema"]

    assert param("/api/photos/{photo_id}/corrections/{attribute}", "put", "attribute")["enum"] == ["balcony", "empty", "fireplace"]
    assert param("/api/photos/{photo_id}/heatmap/{target}", "get", "target")["enum"] == ["balcony", "empty", "fireplace",
                                                                                         "room_type"]
    assert param("/api/export-labels", "get", "target")["enum"] == ["all", "balcony", "empty", "fireplace", "room_type"]
    assert "kitchen" in comps["RoomCorrection"]["properties"]["value"]["enum"]
    assert comps["AttributeCorrection"]["properties"]["value"]["enum"] == ["yes", "no"]
    # every refusal an endpoint can answer is declared, with its body's shape
    upload = paths["/api/photos"]["post"]["responses"]
    assert {"201", "400", "401", "403", "411", "413", "415", "422"} <= set(upload)
    assert upload["415"]["content"]["application/json"]["schema"]["$ref"].endswith("/Problem")


def test_refusals_keep_their_declared_shapes(client):
    p = _first_photo(client)
    # a value the target does not take is a validation error in FastAPI's own shape, about the body
    bad = client.put(f"/api/photos/{p['id']}/corrections/room_type", json={"value": "garage"}, headers=AUTH)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "value"]
    bad = client.put(f"/api/photos/{p['id']}/corrections/fireplace", json={"value": "maybe"}, headers=AUTH)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "value"]
    # an unknown export target is refused as a parameter, never with a CLI flag's name
    bad = client.get("/api/export-labels", params={"target": "pool"}, headers=AUTH)
    assert bad.status_code == 422 and "--target" not in bad.text
    # a page number too large for SQL is a validation error, not a 500
    assert client.get("/api/search", params={"page": 10**27}).status_code == 422
    # a method the path does not take: 405, and Allow names every method the path does take
    r = client.post(f"/api/photos/{p['id']}/corrections/room_type", headers=AUTH)
    assert r.status_code == 405 and set(r.headers["allow"].split(", ")) == {"PUT", "DELETE"}
    assert client.get("/docs").status_code == 200


def test_health_vocabulary_and_page(client):
    h = client.get("/api/health").json()
    assert h["ok"] and (h["photos"], h["unusable"], h["listings"]) == (12, 0, 3) and h["model"] == "rooms"
    assert h["heatmaps"] == ["room_type", "balcony", "empty", "fireplace"]  # every head of `rooms` reads its embedding
    v = client.get("/api/vocabulary").json()
    assert "kitchen" in v["rooms"] and v["attributes"] == ["balcony", "empty", "fireplace"]
    assert v["listing_columns"] == ["area", "city", "price"] and "kök" in v["synonyms"]["kitchen"]
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]


def test_search_endpoint(client):
    r = client.get("/api/search", params={"q": "listings price<400000", "per_page": 10})
    assert r.status_code == 200
    body = r.json()
    assert body["level"] == "listing" and [x["id"] for x in body["results"]] == ["L1", "L2"]
    photo = client.get("/api/search", params={"q": "kök gott", "level": "photo"}).json()
    assert photo["interpreted"]["ignored"] == ["gott"]
    bad = client.get("/api/search", params={"q": "colour=red"})
    assert bad.status_code == 400 and "no field 'colour'" in bad.json()["detail"]
    assert client.get("/api/search", params={"per_page": 0}).status_code == 422
    assert client.get("/api/search", params={"page": 0}).status_code == 422
    assert client.get("/api/search", params={"level": "street"}).status_code == 422


def test_photo_thumbnail_image_heatmap(client):
    p = _first_photo(client)
    rec = client.get(f"/api/photos/{p['id']}").json()
    assert rec["id"] == p["id"] and set(rec["room_scores"]) >= {"kitchen", "bedroom"}
    thumb = client.get(f"/api/photos/{p['id']}/thumbnail")
    assert thumb.headers["content-type"] == "image/jpeg"
    assert min(Image.open(io.BytesIO(thumb.content)).size) == 320  # the photos are 320 px: never enlarged
    full = client.get(f"/api/photos/{p['id']}/image")
    assert Image.open(io.BytesIO(full.content)).size == (320, 320)
    heat = client.get(f"/api/photos/{p['id']}/heatmap/room_type")
    assert heat.status_code == 200 and Image.open(io.BytesIO(heat.content)).size == (320, 320)
    assert client.get(f"/api/photos/{p['id']}/heatmap/fireplace").status_code == 200
    assert client.get(f"/api/photos/{p['id']}/heatmap/pool").status_code == 422  # not a target the schema lists
    for suffix in ("", "/thumbnail", "/image", "/heatmap/room_type"):
        assert client.get(f"/api/photos/99999{suffix}").status_code == 404
    assert client.get("/api/photos/abc").status_code == 422
    assert client.get(f"/api/photos/{2**31}").status_code == 422  # beyond any id: refused, not a database error
    assert client.get("/api/photos/0/thumbnail").status_code == 422


def test_moved_photo_file_is_410(client, listing_index, index_copy, tmp_path):
    from sqlalchemy import update

    from estatelens.index import connect, db

    p = _first_photo(client)
    with connect(index_copy, create=False).begin() as conn:
        conn.execute(update(db.photos).where(db.photos.c.id == p["id"]).values(path_key=str(tmp_path / "gone.jpg")))
    assert client.get(f"/api/photos/{p['id']}/thumbnail").status_code == 410


def test_corrections_need_the_token(client):
    p = _first_photo(client)
    other = "kitchen" if p["room_type"] != "kitchen" else "bathroom"
    url = f"/api/photos/{p['id']}/corrections/room_type"
    no = client.put(url, json={"value": other})
    assert no.status_code == 401 and no.headers["www-authenticate"] == "Bearer"
    assert client.put(url, json={"value": other}, headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert client.delete(url).status_code == 401
    # Without the token a body is refused before it is read or parsed (not a 422 about its JSON).
    assert client.put(url, content=b"{" * 100_000, headers={"Content-Type": "application/json"}).status_code == 401
    assert client.put(url, content=b'{"value": "' + b"x" * 10_000 + b'"}', headers=AUTH).status_code == 413
    assert client.get(f"/api/photos/{p['id']}").json()["room_corrected"] is False  # nothing was written
    ok = client.put(url, json={"value": other}, headers={"X-Estatelens-Token": TOKEN})
    assert ok.status_code == 200 and ok.json()["room_type"] == other and ok.json()["room_corrected"]
    assert ok.json()["room_type_predicted"] == p["room_type"]
    attr = client.put(f"/api/photos/{p['id']}/corrections/fireplace", json={"value": "yes"}, headers=AUTH).json()
    assert attr["attributes"]["fireplace"] == {**p["attributes"]["fireplace"], "value": "yes", "corrected": True}
    assert client.put(url, json={"value": "garage"}, headers=AUTH).status_code == 422
    assert client.put(f"/api/photos/{p['id']}/corrections/pool", json={"value": "yes"}, headers=AUTH).status_code == 422
    assert client.put(url, json={}, headers=AUTH).status_code == 422
    assert client.put("/api/photos/99999/corrections/room_type", json={"value": other}, headers=AUTH).status_code == 404
    assert client.get("/api/export-labels").status_code == 401  # the export holds server paths
    exported = list(csv.DictReader(io.StringIO(client.get("/api/export-labels", headers=AUTH).text)))
    full_path = client.get(f"/api/photos/{p['id']}", headers=AUTH).json()["path"]
    assert exported == [{"path": full_path, "label": other, "fireplace": "yes", "group": p["listing_id"]}]
    assert client.get("/api/export-labels", params={"target": "colour"}, headers=AUTH).status_code == 422
    undone = client.delete(url, headers=AUTH)
    assert undone.status_code == 200 and undone.json()["room_type"] == p["room_type"]
    assert client.delete("/api/photos/99999/corrections/room_type", headers=AUTH).status_code == 404


def test_upload_tags_the_photo_under_a_name_of_our_own(client, app):
    files = {"file": ("../../../etc/evil.jpg", _jpeg(), "image/jpeg")}
    r = client.post("/api/photos", files=files, data={"listing_id": "L2"}, headers=AUTH)
    assert r.status_code == 201
    rec = r.json()
    uploads = app.state.upload_dir.resolve()
    saved = app.state.upload_dir.resolve() / rec["path"].rsplit("/", 1)[1]
    assert rec["path"] == str(saved) and saved.parent == uploads and saved.is_file()
    assert "evil" not in rec["path"] and rec["origin"] == "upload" and rec["listing_id"] == "L2"
    assert rec["status"] == "ok" and rec["room_type"] in rec["room_scores"]
    assert client.get("/api/listings/L2").json()["n_photos"] == 5
    slash = client.post("/api/photos", files={"file": ("b.jpg", _jpeg(seed=4), "image/jpeg")},
                        data={"listing_id": "Vasastan/12"}, headers=AUTH)
    assert slash.status_code == 201
    assert client.get("/api/listings/Vasastan/12").json()["photos"][0]["id"] == slash.json()["id"]
    assert client.get("/api/listings/Vasastan%2F12").json()["n_photos"] == 1
    png = io.BytesIO()
    stripes("horizontal", 128).save(png, format="PNG")
    r = client.post("/api/photos", files={"file": ("x.png", png.getvalue(), "image/png")}, headers=AUTH)
    assert r.status_code == 201 and r.json()["path"].endswith(".png") and r.json()["listing_id"] is None


def test_upload_refusals(client, app):
    good = {"file": ("a.jpg", _jpeg(), "image/jpeg")}
    assert client.post("/api/photos", files=good).status_code == 401
    assert client.post("/api/photos", files=good, headers={"Authorization": "Bearer nope"}).status_code == 403
    big = client.post("/api/photos", files={"file": ("big.jpg", _jpeg(size=1200) + b"\0" * 200_000, "image/jpeg")},
                      headers=AUTH)
    assert big.status_code == 413 and "too large" in big.json()["detail"]
    # Just over the limit: the body passes the early check (it allows for the form's overhead),
    # and the file itself is measured.
    limit = app.state.max_upload_bytes
    over = client.post("/api/photos", files={"file": ("s.jpg", b"\xff" * (limit + 10), "image/jpeg")}, headers=AUTH)
    assert over.status_code == 413
    # An upload that does not say its size is refused before its body is read.
    def chunks():
        yield b"--x\r\nContent-Disposition: form-data; name=file; filename=a.jpg\r\n\r\n" + _jpeg() + b"\r\n--x--\r\n"

    chunked = client.post("/api/photos", content=chunks(), headers={**AUTH, "Content-Type": "multipart/form-data; boundary=x"})
    assert chunked.status_code == 411
    text = client.post("/api/photos", files={"file": ("notes.jpg", b"just text, not a photo", "image/jpeg")},
                       headers=AUTH)
    assert text.status_code == 415 and "notes.jpg" in text.json()["detail"]
    gif = io.BytesIO()
    Image.new("RGB", (100, 100)).save(gif, format="GIF")
    assert client.post("/api/photos", files={"file": ("a.gif", gif.getvalue(), "image/gif")},
                       headers=AUTH).status_code == 415
    cut = _jpeg(size=400)
    tiny = io.BytesIO()
    stripes("vertical", 16).save(tiny, format="JPEG")
    r = client.post("/api/photos", files={"file": ("tiny.jpg", tiny.getvalue(), "image/jpeg")}, headers=AUTH)
    assert r.status_code == 422 and "too small" in r.json()["detail"][0]["msg"]
    assert client.post("/api/photos", files={"file": ("cut.jpg", cut[: len(cut) // 2], "image/jpeg")},
                       headers=AUTH).status_code in (415, 422)
    assert not any(app.state.upload_dir.glob("*")) if app.state.upload_dir.exists() else True  # nothing kept
    assert client.get("/api/health").json()["photos"] == 12


def test_suggestions_are_the_least_sure_of_each_room_type_and_the_most_unusual_and_skip_corrected_ones(client):
    everything = client.get("/api/search", params={"per_page": 200}).json()["results"]
    # The bundled model scores how unlike its training photos each one is; these stripes all are.
    assert all(r["unusual"] is not None for r in everything)
    got = client.get("/api/suggestions", params={"n": 6}).json()
    assert "least sure" in got["why"] and "unlike" in got["why"] and len(got["results"]) == 6
    reasons = [r["reason"] for r in got["results"]]
    assert reasons == ["least sure", "least sure", "unusual"] * 2  # every third place
    least = [r for r in got["results"] if r["reason"] == "least sure"]
    probs = [r["room_probability"] for r in least]
    assert probs == sorted(probs)
    by_room: dict = {}
    for r in sorted(everything, key=lambda r: (r["room_probability"], r["id"])):
        by_room.setdefault(r["room_type_predicted"], []).append(r["id"])
    # Each room type the model used gives its least sure photo before any gives a second one.
    turns = [ids[k] for k in range(6) for _, ids in sorted(by_room.items()) if k < len(ids)]
    most_unusual = [r["id"] for r in sorted(everything, key=lambda r: (-r["unusual"], r["id"]))][:2]
    assert [r["id"] for r in got["results"] if r["reason"] == "unusual"] == most_unusual
    assert {r["id"] for r in least} == set([i for i in turns if i not in most_unusual][:4])
    first = least[0]
    assert client.put(f"/api/photos/{first['id']}/corrections/room_type", json={"value": first["room_type"]},
                      headers=AUTH).status_code == 200
    again = client.get("/api/suggestions", params={"n": 200}).json()["results"]
    ids = [r["id"] for r in again]
    assert first["id"] not in ids and sorted(ids) == sorted(set(ids)) and len(ids) == len(everything) - 1
    assert client.get("/api/suggestions", params={"n": 0}).status_code == 422


def test_listing_endpoint(client):
    rec = client.get("/api/listings/L3").json()
    assert rec["facts"] == {"area": 70, "city": "Stockholm", "price": 450000} and rec["n_photos"] == 4
    assert all(p["listing_id"] == "L3" for p in rec["photos"])
    assert client.get("/api/listings/nope").status_code == 404


@pytest.mark.parametrize("url", [
    "/static/..%2F..%2F..%2Fpyproject.toml", "/static/..%2fapp.py", "/static/%2e%2e%2fapp.py",
    "/static/..%5c..%5capp.py", "/api/listings/..%2F..%2F..%2F..%2Fetc%2Fpasswd", "/api/listings/../../../etc/passwd",
    "/api/photos/1/heatmap/..%2F..%2F..%2Fetc%2Fpasswd", "/api/photos/1%2F..%2F..%2Fetc%2Fpasswd/image",
])
def test_path_traversal_attempts_reach_no_file(client, url):
    r = client.get(url)
    assert r.status_code in (404, 422)
    assert b"root:" not in r.content and b"[project]" not in r.content and b"import" not in r.content


def test_app_refuses_to_start_without_a_token_or_an_index(index_copy, tmp_path):
    with pytest.raises(ValueError, match="token"):
        create_app(str(index_copy), token="")
    with pytest.raises(FileNotFoundError, match="no such index"):
        create_app(str(tmp_path / "typo.db"), token=TOKEN)
    assert not (tmp_path / "typo.db").exists()


def test_thumbnails_are_cached_by_the_browser(client):
    """Cache-Control lets a browser keep a grid for an hour; after that it asks with the ETag and
    gets a 304 (no photo read) until the photo or its tags change."""
    p = _first_photo(client)
    first = client.get(f"/api/photos/{p['id']}/thumbnail")
    etag = first.headers["etag"]
    assert first.status_code == 200 and "max-age=3600" in first.headers["cache-control"]
    again = client.get(f"/api/photos/{p['id']}/thumbnail", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    assert client.get(f"/api/photos/{p['id']}/thumbnail", headers={"If-None-Match": '"other"'}).status_code == 200
    assert client.get(f"/api/photos/{p['id']}/image").headers["etag"] != etag  # another size, another tag
    # re-tagging the photo (an upload of the same file would too) changes the tag
    from estatelens.index import db
    from sqlalchemy import update

    engine = client.app.state.engine
    with engine.begin() as conn:
        conn.execute(update(db.photos).where(db.photos.c.id == p["id"]).values(tagged_at=db.now()))
    assert client.get(f"/api/photos/{p['id']}/thumbnail", headers={"If-None-Match": etag}).status_code == 200


def test_a_model_without_attributes_serves_no_attribute_paths(tmp_path, stripes_bundle):
    """An enum needs values: with no attribute in the index or model, those paths are left out."""
    from conftest import make_listing_folders
    from estatelens.cli import main

    photos = make_listing_folders(tmp_path / "photos", listings=1, per_listing=2, size=96)
    db = tmp_path / "plain.db"
    assert main(["index", str(photos), "--db", str(db), "--model", str(stripes_bundle), "--quiet"]) == 0
    app = create_app(str(db), model=str(stripes_bundle), token=TOKEN, upload_dir=tmp_path / "up")
    with TestClient(app) as c:
        paths = c.get("/openapi.json").json()["paths"]
        assert "/api/photos/{photo_id}/corrections/room_type" in paths
        assert "/api/photos/{photo_id}/corrections/{attribute}" not in paths
        assert c.put("/api/photos/1/corrections/fireplace", json={"value": "yes"}, headers=AUTH).status_code == 404
