"""`serve` beyond this machine: reads protected or declared public, server paths shown only with
the write token, security headers on every answer, uploads limited per client, and no parameter
that names a file reaching a file the index does not hold."""
from __future__ import annotations

import io
import re

import pytest
from fastapi.testclient import TestClient

from conftest import stripes
from estatelens.cli import main
from estatelens.commands.indexing import check_exposure
from estatelens.web import create_app

TOKEN, READ = "write-token-123", "read-token-456"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _client(index_copy, tmp_path, **kw) -> TestClient:
    app = create_app(str(index_copy), token=TOKEN, upload_dir=tmp_path / "uploads", max_upload_bytes=200_000, **kw)
    return TestClient(app)


def _jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    stripes("vertical", 200, seed=seed).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_this_machine_needs_no_read_token(host):
    check_exposure(host, None, False)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "myserver.example.org"])
def test_other_hosts_need_a_read_token_or_public(host):
    with pytest.raises(ValueError, match="--read-token"):
        check_exposure(host, None, False)
    check_exposure(host, READ, False)
    check_exposure(host, None, True)
    with pytest.raises(ValueError, match="contradict"):
        check_exposure(host, READ, True)


def test_serve_refuses_to_start_exposed(listing_index, capsys, monkeypatch):
    monkeypatch.delenv("ESTATELENS_READ_TOKEN", raising=False)
    assert main(["serve", "--db", str(listing_index[0]), "--host", "0.0.0.0"]) == 2
    assert "--read-token" in capsys.readouterr().err


def test_a_read_token_guards_every_read(index_copy, tmp_path):
    with _client(index_copy, tmp_path, read_token=READ) as c:
        for url in ("/api/search", "/api/health", "/api/photos/1", "/api/photos/1/thumbnail", "/api/listings/L1",
                    "/openapi.json", "/"):
            assert c.get(url).status_code == 401, url
            assert c.get(url, headers={"Authorization": "Bearer wrong-token"}).status_code == 401, url
        refused = c.get("/api/search")
        assert "frame-ancestors 'none'" in refused.headers["content-security-policy"]  # refusals carry them too
        assert c.get("/api/search", headers={"Authorization": f"Bearer {READ}"}).status_code == 200
        assert c.get("/api/search", headers=AUTH).status_code == 200  # the write token reads too
        assert c.get("/static/app.js").status_code == 200  # the script holds no data
        # the link people are given: the token goes into a cookie and out of the address bar
        r = c.get(f"/?token={READ}", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/"
        assert "httponly" in r.headers["set-cookie"].lower() and "samesite=strict" in r.headers["set-cookie"].lower()
        assert c.get("/api/photos/1/thumbnail").status_code == 200  # the cookie now goes with every request
        assert c.get("/").status_code == 200


def test_server_paths_only_with_the_write_token(index_copy, tmp_path):
    with _client(index_copy, tmp_path) as c:
        anon = c.get("/api/search", params={"per_page": 50}).json()["results"]
        full = c.get("/api/search", params={"per_page": 50}, headers=AUTH).json()["results"]
        assert all("/" not in r["path"] for r in anon) and all(r["path"].startswith("/") for r in full)
        assert [r["path"] for r in anon] == [p.rsplit("/", 1)[1] for p in (r["path"] for r in full)]
        listing = c.get("/api/search", params={"q": "listings"}).json()["results"][0]
        assert all("/" not in p["path"] for p in listing["photos"])
        for url in ("/api/photos/1", "/api/listings/L1", "/api/suggestions"):
            assert str(tmp_path.parent) not in c.get(url).text, url
        assert c.get("/api/photos/99999/thumbnail").status_code == 404


def test_security_headers_on_every_answer(index_copy, tmp_path):
    with _client(index_copy, tmp_path) as c:
        for url in ("/", "/api/health", "/static/app.js", "/api/photos/99999", "/api/photos/1/thumbnail"):
            r = c.get(url)
            csp = r.headers["content-security-policy"]
            assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp, url
            assert re.search(r"script-src 'self'(;|$)", csp), csp
            assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-frame-options"] == "DENY"
        page = c.get("/").text
        # the policy allows no inline script or style: the page has none
        assert all('src="' in tag for tag in re.findall(r"<script[^>]*>", page)) and "<style" not in page
        assert " style=" not in page and " onclick=" not in page


def test_uploads_are_limited_per_client(index_copy, tmp_path):
    with _client(index_copy, tmp_path, uploads_per_minute=2) as c:
        codes = [c.post("/api/photos", files={"file": (f"{i}.jpg", _jpeg(i), "image/jpeg")}, headers=AUTH).status_code
                 for i in range(3)]
        assert codes == [201, 201, 429]
        r = c.post("/api/photos", files={"file": ("x.jpg", _jpeg(9), "image/jpeg")}, headers=AUTH)
        assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 60
        assert len(list((tmp_path / "uploads").iterdir())) == 2


@pytest.mark.parametrize("url", [
    "/static/../../../../etc/passwd", "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/static/..%2f..%2f..%2fetc%2fpasswd",
    "/api/photos/..%2f..%2fetc%2fpasswd", "/api/photos/1/..%2f..%2f..%2fetc%2fpasswd",
    "/api/photos/1/heatmap/..%2f..%2fetc%2fpasswd", "/api/listings/../../../etc/passwd",
    "/api/listings/..%2f..%2f..%2fetc%2fpasswd", "/api/export-labels?target=../../etc/passwd",
    "/api/photos/1/thumbnail/../../../../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd",
])
def test_no_parameter_that_names_a_file_reaches_another_file(index_copy, tmp_path, url):
    with _client(index_copy, tmp_path) as c:
        r = c.get(url, headers=AUTH)
        assert r.status_code in (404, 405, 422), (url, r.status_code)
        assert "root:" not in r.text


def test_an_upload_name_never_becomes_a_path(index_copy, tmp_path):
    with _client(index_copy, tmp_path) as c:
        r = c.post("/api/photos", files={"file": ("../../../outside.jpg", _jpeg(1), "image/jpeg")}, headers=AUTH)
        assert r.status_code == 201
        saved = list((tmp_path / "uploads").iterdir())
        assert len(saved) == 1 and re.fullmatch(r"[0-9a-f]{32}\.jpg", saved[0].name)
        assert not (tmp_path / "outside.jpg").exists() and not (tmp_path.parent / "outside.jpg").exists()
