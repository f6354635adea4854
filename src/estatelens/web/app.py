"""`estatelens serve`: the JSON API over the photo index, and the page that uses it.

Every endpoint takes ids, never paths: a photo's file is found through the index, so nothing a
request says reaches the file system except through a lookup by number. Uploads are written under
the upload folder with a name made here (a random hex and the extension of the format Pillow
found), whatever the client called the file. Writes (upload, corrections) and the labels export
need the write token given at start-up, as `Authorization: Bearer TOKEN` (or `X-Estatelens-Token:
TOKEN`): 401 without one, 403 with a wrong one.

Beyond this machine (`serve --host` other than loopback) reads are protected too, with a read
token (the same header, or a cookie the page sets from `/?token=...`), unless the server is
started `--public`. Photo paths on the server are shown in full only to a request that carries
the write token; others see the file's name. Every answer carries security headers (a Content
Security Policy without inline scripts, nosniff, no framing), and uploads are limited per client.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import secrets
import threading
import time
import uuid
import warnings
from collections import OrderedDict, deque
from pathlib import Path
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi import Path as FastAPIPath
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field, create_model
from sqlalchemy import func, select

from .. import __version__
from ..bundle import estatelens_home, load_bundle
from ..data.images import PhotoError, read_photo
from ..index import build, db, review
from ..index.search import MAX_PAGE, MAX_PER_PAGE, QueryError, Vocabulary, listing_record, photo_records
from ..index.search import search as run_search
from ..tagging.core import display_path, tag_photos

STATIC = Path(__file__).parent / "static"
THUMB_SIDE = 360
IMAGE_SIDE = 1600
UPLOAD_FORMATS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}
CACHE_ITEMS = 2000
MULTIPART_OVERHEAD = 16 * 1024  # form boundaries and the listing_id field around the file
MAX_JSON_BODY = 4096  # a correction is {"value": "living_room"}
PhotoId = Annotated[int, FastAPIPath(ge=1, le=2**31 - 1, description="the photo's id in the index")]


class AttributeCorrection(BaseModel):
    value: Literal["yes", "no"]


def _correction_model(name: str, values: list[str]) -> type[BaseModel]:
    """{"value": one of `values`}, listed as an enum in the schema."""
    return create_model(name, value=(str, _one_of(values, Field)))


class Problem(BaseModel):
    """The body of every refusal other than a malformed request (422): what went wrong."""
    detail: str


# The OpenAPI schema is the API's contract: each endpoint declares every status it can answer.
_WHY = {
    400: "the request cannot be read: a search query with an unknown field or a comparison that needs "
         "a number, or a body that is not well-formed JSON or multipart",
    401: "a write (or the export) without the write token, or, on a server with a read token, a read without it",
    403: "a wrong token",
    404: "no such photo, listing or heatmap target",
    409: "the photo's state does not allow it (it could not be tagged, has no such attribute, or its file no longer decodes)",
    410: "the photo's file is no longer where it was indexed",
    411: "an upload that does not say its Content-Length",
    429: "too many uploads from this client in the last minute; Retry-After says when to try again",
    413: "a body larger than the server takes",
    415: "an upload that is not a JPEG, PNG or WebP image",
    503: "heatmaps need PyTorch (the [train] extra) and the bundle's PyTorch weights",
}
_WRITE = (401, 403, 413)
READ_COOKIE = "estatelens_read"
# The page and its script come from this server only, and nothing may frame it. Swagger UI (/docs)
# is the one page with an inline script; it gets its own policy.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; object-src 'none'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
            "style-src 'self' https://cdn.jsdelivr.net; img-src 'self' data: https://fastapi.tiangolo.com; "
            "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
                    "Cross-Origin-Opener-Policy": "same-origin"}


def _problems(*codes: int) -> dict:
    return {c: {"model": Problem, "description": _WHY[c]} for c in codes}


def _bearer(request: Request) -> str | None:
    given = request.headers.get("x-estatelens-token")
    auth = request.headers.get("authorization", "")
    if given is None and auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    return given or None


def _same(given: str | None, token: str | None) -> bool:
    return bool(given and token) and secrets.compare_digest(given.encode(), token.encode())


def _file_names_only(data):
    """The records with each "path" cut to the file's name: what a client without the write token sees."""
    if isinstance(data, dict):
        return {k: (os.path.basename(v) if k == "path" and isinstance(v, str) else _file_names_only(v))
                for k, v in data.items()}
    if isinstance(data, list):
        return [_file_names_only(v) for v in data]
    return data


class _RateLimit:
    """At most `n` events per client in any `window` seconds (a sliding window of timestamps)."""

    def __init__(self, n: int, window: float = 60.0):
        self.n, self.window, self.lock = n, window, threading.Lock()
        self.events: dict[str, deque] = {}

    def retry_after(self, client: str) -> int | None:
        """None, and the event is counted, when `client` may go on; else seconds to wait."""
        now = time.monotonic()
        with self.lock:
            q = self.events.setdefault(client, deque())
            while q and q[0] <= now - self.window:
                q.popleft()
            if len(q) >= self.n:
                return max(1, int(q[0] + self.window - now + 0.999))
            q.append(now)
            if len(self.events) > 10_000:  # forget idle clients
                for k in [k for k, v in self.events.items() if not v]:
                    del self.events[k]
            return None


def _invalid(loc: tuple, message: str, value) -> RequestValidationError:
    """A 422 in the shape the schema declares for validation errors."""
    return RequestValidationError([{"type": "value_error", "loc": loc, "msg": message, "input": value}])


def _one_of(values, where=FastAPIPath, **kw):
    """A path or query parameter (or, with where=Field, a body field) that takes one of `values`:
    listed as an enum in the schema, anything else refused with a 422 before the endpoint runs."""
    values = sorted(set(values))
    return where(pattern="^(" + "|".join(re.escape(v) for v in values) + ")$", json_schema_extra={"enum": values}, **kw)


class _Cache:
    """A small thread-safe LRU of rendered JPEG bytes (thumbnails, heatmaps)."""

    def __init__(self, items: int):
        self.items, self.data, self.lock = items, OrderedDict(), threading.Lock()

    def get(self, key):
        with self.lock:
            if key in self.data:
                self.data.move_to_end(key)
                return self.data[key]
        return None

    def put(self, key, value) -> None:
        with self.lock:
            self.data[key] = value
            self.data.move_to_end(key)
            while len(self.data) > self.items:
                self.data.popitem(last=False)


def default_upload_dir(db_arg: str) -> Path:
    url = db.database_url(db_arg)
    if url.startswith("sqlite:///"):
        p = Path(url[len("sqlite:///"):])
        return p.with_name(p.name + ".uploads")
    return estatelens_home() / "uploads"


def create_app(database: str, *, model: str = "rooms", token: str, read_token: str | None = None,
               upload_dir: str | os.PathLike | None = None, max_upload_bytes: int = 20 * 1024 * 1024,
               threads: int | None = None, uploads_per_minute: int = 30) -> FastAPI:
    """The app over index `database`; `model` tags uploads and draws heatmaps. With `read_token`,
    reads need it (or the write token) too."""
    if not token:
        raise ValueError("a write token is required (serve makes one up when none is given)")
    if read_token is not None and len(read_token) < 8:
        raise ValueError("a read token needs at least 8 characters")
    upload_limit = _RateLimit(uploads_per_minute)
    reads = _problems(401) if read_token else {}  # what a read may answer besides its own refusals
    engine = db.connect(database, create=False)  # a mistyped --db is an error, not an empty index
    bundle = load_bundle(model)
    bundle.session(threads)
    model_name, model_version = build.model_identity(bundle)
    with engine.connect() as conn:
        vocab = Vocabulary.of(conn)
    # What a parameter that names a target takes: this index's and this model's (uploads add the
    # model's attributes to the index).
    rooms = sorted(set(vocab.rooms) | set(bundle.classes))
    attributes = sorted(set(vocab.attributes) | {h.name for h in bundle.attributes})
    heatmap_targets = [db.ROOM_TYPE, *(h.name for h in bundle.attributes if h.explainable)]
    export_targets = [*review.EXPORT_TARGETS, *attributes]
    uploads = Path(upload_dir) if upload_dir else default_upload_dir(database)
    thumbs, heatmaps = _Cache(CACHE_ITEMS), _Cache(200)
    explain_lock = threading.Lock()
    explainer: dict = {}

    app = FastAPI(title="estatelens", version=__version__, description=(
        "Search, browse and correct the tags of an estatelens photo index. Reads are open; uploads "
        "and corrections need `Authorization: Bearer TOKEN`."))

    def require_token(request: Request) -> None:
        given = _bearer(request)
        if not given:
            raise HTTPException(401, "this needs the write token (Authorization: Bearer TOKEN)",
                                headers={"WWW-Authenticate": "Bearer"})
        if not _same(given, token):
            raise HTTPException(403, "wrong write token")

    def shown(request: Request, data):
        """Full server paths for a request with the write token; file names for everyone else."""
        return data if _same(_bearer(request), token) else _file_names_only(data)

    def may_read(request: Request) -> bool:
        if read_token is None:
            return True
        given = _bearer(request)
        return (_same(given, read_token) or _same(given, token)
                or _same(request.cookies.get(READ_COOKIE), read_token))

    def photo_or_404(photo_id: int) -> dict:
        with engine.connect() as conn:
            recs = photo_records(conn, [photo_id])
        if not recs:
            raise HTTPException(404, f"no photo {photo_id}")
        return recs[0]

    def photo_file(photo_id: int) -> tuple[dict, Path]:
        """({status, tagged_at}, the file) from one row: every thumbnail of a grid asks, so not
        the whole record."""
        with engine.connect() as conn:
            row = conn.execute(select(db.photos.c.path_key, db.photos.c.status, db.photos.c.tagged_at)
                               .where(db.photos.c.id == photo_id)).first()
        if row is None:
            raise HTTPException(404, f"no photo {photo_id}")
        path = Path(row.path_key)
        if not path.is_file():
            raise HTTPException(410, f"photo {photo_id}: its file is no longer where it was indexed")
        return {"status": row.status, "tagged_at": row.tagged_at}, path

    @app.middleware("http")
    async def refuse_writes_early(request: Request, call_next):
        """The token and the declared size of every write are checked before its body is read, so
        that nobody without the token can make the server receive and parse a body. On a server
        with a read token, reads without it are refused here too (the page and its script are not
        data: they load, and ask for the token)."""
        if read_token is not None and not request.url.path.startswith("/static/"):
            if request.url.path == "/" and _same(request.query_params.get("token"), read_token):
                # The link people are given; the token moves into a cookie and out of the address bar.
                response = RedirectResponse("/", status_code=303)
                response.set_cookie(READ_COOKIE, read_token, httponly=True, samesite="strict")
                return response
            if request.method in ("GET", "HEAD") and not may_read(request):
                return JSONResponse({"detail": "this server needs its read token: open /?token=READ_TOKEN once, "
                                               "or send Authorization: Bearer READ_TOKEN"}, status_code=401,
                                    headers={"WWW-Authenticate": "Bearer"})
        if request.method not in ("GET", "HEAD", "OPTIONS") and request.url.path.startswith("/api/"):
            try:
                require_token(request)
            except HTTPException as e:
                return JSONResponse({"detail": e.detail}, status_code=e.status_code, headers=e.headers)
            upload = request.method == "POST" and request.url.path == "/api/photos"
            if upload and (wait := upload_limit.retry_after(request.client.host if request.client else "?")):
                return JSONResponse({"detail": f"too many uploads from this client: at most {uploads_per_minute} "
                                               f"a minute; try again in {wait} s"}, status_code=429,
                                    headers={"Retry-After": str(wait)})
            limit = max_upload_bytes + MULTIPART_OVERHEAD if upload else MAX_JSON_BODY
            declared = request.headers.get("content-length")
            if declared is None and (upload or request.headers.get("transfer-encoding")):
                return JSONResponse({"detail": "a request with a body must say its Content-Length"}, status_code=411)
            if declared is not None and (not declared.isdigit() or int(declared) > limit):
                what = f"upload too large: over {max_upload_bytes} bytes" if upload else "request body too large"
                return JSONResponse({"detail": what}, status_code=413)
        return await call_next(request)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        """Outermost (declared last): every answer gets the headers, the early refusals too."""
        response = await call_next(request)
        docs = request.url.path in (app.docs_url, app.redoc_url)
        response.headers["Content-Security-Policy"] = DOCS_CSP if docs else CSP
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        """As FastAPI answers, but a 405 names every method of the path in Allow: PUT and DELETE of
        one path are two routes, and Starlette only names the first one's."""
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            allowed = set()
            for route in app.router.routes:
                match, _ = route.matches({**request.scope, "method": "GET"})
                if match != Match.NONE and getattr(route, "methods", None):
                    allowed |= route.methods
            if allowed:
                headers["Allow"] = ", ".join(sorted(allowed))
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)

    @app.get("/api/health", summary="Is the service up; what it serves", responses=reads)
    def health() -> dict:
        with engine.connect() as conn:
            n = conn.execute(select(func.count()).select_from(db.photos)).scalar()
            n_ok = conn.execute(select(func.count()).select_from(db.photos).where(db.photos.c.status == "ok")).scalar()
            n_listings = conn.execute(select(func.count()).select_from(db.listings)).scalar()
        return {"ok": True, "version": __version__, "photos": n_ok, "unusable": n - n_ok, "listings": n_listings,
                "model": model_name, "model_version": model_version, "max_upload_bytes": max_upload_bytes,
                "heatmaps": heatmap_targets}

    @app.get("/api/vocabulary", summary="Room types, attributes, listing columns and synonyms of this index",
             responses=reads)
    def vocabulary() -> dict:
        with engine.connect() as conn:
            return Vocabulary.of(conn).to_dict()

    @app.get("/api/search", summary="Search photos or listings (words, filters, ranked, paged)",
             responses={**reads, **_problems(400)})
    def search(request: Request, q: str = "", level: str | None = Query(None, pattern="^(photo|listing)$"),
               page: int = Query(1, ge=1, le=MAX_PAGE), per_page: int = Query(24, ge=1, le=MAX_PER_PAGE)) -> dict:
        try:
            return shown(request, run_search(engine, q, level=level, page=page, per_page=per_page))
        except QueryError as e:
            raise HTTPException(400, str(e)) from None

    @app.get("/api/suggestions", summary="Photos to label next: those the model is least sure of, across room types, "
                                         "and the most unusual",
             responses=reads)
    def suggestions(request: Request, n: int = Query(24, ge=1, le=MAX_PER_PAGE)) -> dict:
        return {"results": shown(request, review.suggest_for_labelling(engine, n)),
                "why": "the model is least sure of these, or they are unlike anything it was trained on (each "
                       "photo's `reason`); correct them, then `estatelens export-labels` and "
                       "`estatelens adapt` learn most from them"}

    @app.get("/api/photos/{photo_id}", summary="One photo: tags, probabilities, corrections, listing",
             responses={**reads, **_problems(404)})
    def photo(request: Request, photo_id: PhotoId) -> dict:
        return shown(request, photo_or_404(photo_id))

    @app.get("/api/photos/{photo_id}/thumbnail", summary="The photo, at most 360 px on its short side (JPEG)",
             response_class=Response, responses={200: _JPEG, 304: _NOT_MODIFIED, **reads, **_problems(404, 409, 410)})
    def thumbnail(request: Request, photo_id: PhotoId) -> Response:
        return _photo_response(request, photo_id, THUMB_SIDE, thumbs)

    @app.get("/api/photos/{photo_id}/image", summary="The photo, at most 1600 px on its long side (JPEG)",
             response_class=Response, responses={200: _JPEG, 304: _NOT_MODIFIED, **reads, **_problems(404, 409, 410)})
    def image(request: Request, photo_id: PhotoId) -> Response:
        return _photo_response(request, photo_id, IMAGE_SIDE, None)

    def _photo_response(request: Request, photo_id: int, side: int, cache: _Cache | None) -> Response:
        """The rendered JPEG with an ETag (the photo, its file and when it was tagged), so that a
        browser keeps a grid of thumbnails for an hour and then asks again with If-None-Match: a
        304, without reading the photo, when nothing changed."""
        rec, path = photo_file(photo_id)
        st = path.stat()
        etag = '"' + hashlib.sha1(f"{photo_id}:{side}:{rec['tagged_at']}:{st.st_size}:{st.st_mtime_ns}".encode()
                                  ).hexdigest()[:20] + '"'
        headers = {"ETag": etag, "Cache-Control": "private, max-age=3600"}
        asked = {t.strip().removeprefix("W/") for t in request.headers.get("if-none-match", "").split(",")}
        if etag in asked or "*" in asked:
            return Response(status_code=304, headers=headers)
        return Response(_rendered(photo_id, side, cache, rec, path), media_type="image/jpeg", headers=headers)

    def _rendered(photo_id: int, side: int, cache: _Cache | None, rec: dict, path: Path) -> bytes:
        key = (photo_id, side, rec["tagged_at"])
        if cache is not None and (hit := cache.get(key)) is not None:
            return hit
        try:
            im, _ = read_photo(path, side if side == THUMB_SIDE else None)
        except PhotoError as e:
            raise HTTPException(409, f"photo {photo_id}: its file no longer decodes ({e.reason})") from None
        if side == THUMB_SIDE:
            im.thumbnail((side * 4, side), resample=3) if im.height <= im.width else im.thumbnail((side, side * 4), resample=3)
        else:
            im.thumbnail((side, side), resample=3)
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=85)
        data = buf.getvalue()
        if cache is not None:
            cache.put(key, data)
        return data

    @app.get("/api/photos/{photo_id}/heatmap/{target}", response_class=Response,
             responses={200: _JPEG, **reads, **_problems(404, 409, 410, 503)},
             summary="Where the model looked: Grad-CAM overlay for the room type or an attribute (JPEG)")
    def heatmap(photo_id: PhotoId, target: str = _one_of(heatmap_targets)) -> Response:
        rec, path = photo_file(photo_id)
        if rec["status"] != "ok":
            raise HTTPException(409, f"photo {photo_id} could not be tagged ({rec['status']})")
        if (hit := heatmaps.get((photo_id, target, rec["tagged_at"]))) is not None:
            return Response(hit, media_type="image/jpeg")
        with explain_lock:  # one PyTorch pass at a time; the model is loaded on first use
            if (hit := heatmaps.get((photo_id, target, rec["tagged_at"]))) is not None:
                return Response(hit, media_type="image/jpeg")  # drawn while this request waited
            try:
                from ..explain import Explainer, render_overlay

                if "x" not in explainer:
                    explainer["x"] = Explainer(bundle)
                ex = explainer["x"].explain(path, every_attribute=True)
                photo, _ = read_photo(path)
            except FileNotFoundError:  # a bundle without weights.pt
                raise HTTPException(503, "heatmaps are not available: the model bundle has no PyTorch "
                                         "weights (weights.pt)") from None
            except ImportError:  # the base install: no PyTorch
                raise HTTPException(503, "heatmaps are not available: they need PyTorch, which comes with "
                                         "the [train] extra (pip install 'estatelens[train]')") from None
            except PhotoError as e:
                raise HTTPException(409, f"photo {photo_id}: its file no longer decodes ({e.reason})") from None
            # One pass gives every target's map: keep them all, the next button is then instant.
            photo.thumbnail((IMAGE_SIDE, IMAGE_SIDE), resample=3)
            for hm in ex.heatmaps:
                buf = io.BytesIO()
                render_overlay(ex.path, hm, bundle.preprocessing.crop_fraction, photo).save(buf, format="JPEG", quality=85)
                heatmaps.put((photo_id, hm.target, rec["tagged_at"]), buf.getvalue())
        if (hit := heatmaps.get((photo_id, target, rec["tagged_at"]))) is None:
            raise HTTPException(404, f"no heatmap for {target}")
        return Response(hit, media_type="image/jpeg")

    # Two paths, so that each declares the values it takes: the room type takes a room type of
    # the index, an attribute yes or no. Same URLs as one {target} path would have.
    RoomCorrection = _correction_model("RoomCorrection", rooms)

    def put_room_type(photo_id: PhotoId, body: RoomCorrection) -> dict:
        return _correct(photo_id, db.ROOM_TYPE, body.value)

    put_room_type.__annotations__["body"] = RoomCorrection  # a model made here, not a module name
    app.put("/api/photos/{photo_id}/corrections/room_type", dependencies=[Depends(require_token)],
            responses=_problems(*_WRITE, 400, 404, 409), summary="Correct the room type")(put_room_type)

    def if_attributes(route):
        """The attribute paths exist where the index or model has attributes (an enum needs values)."""
        return route if attributes else (lambda f: f)

    @if_attributes(app.put("/api/photos/{photo_id}/corrections/{attribute}", dependencies=[Depends(require_token)],
                           responses=_problems(*_WRITE, 400, 404, 409), summary="Correct an attribute: yes or no"))
    def put_attribute(body: AttributeCorrection, photo_id: PhotoId,
                      attribute: str = _one_of(attributes, description="an attribute of this index")) -> dict:
        return _correct(photo_id, attribute, body.value)

    def _correct(photo_id: int, target: str, value: str) -> dict:
        try:
            review.correct(engine, photo_id, target, value)
        except review.NotFound as e:
            raise HTTPException(404, str(e)) from None
        except review.BadValue as e:  # a room type the schema lists but this index no longer has
            raise _invalid(("body", "value"), str(e), value) from None
        except review.Conflict as e:
            raise HTTPException(409, str(e)) from None
        return photo_or_404(photo_id)

    @app.delete("/api/photos/{photo_id}/corrections/room_type", dependencies=[Depends(require_token)],
                responses=_problems(*_WRITE, 404), summary="Remove a room-type correction")
    def delete_room_type(photo_id: PhotoId) -> dict:
        return _uncorrect(photo_id, db.ROOM_TYPE)

    @if_attributes(app.delete("/api/photos/{photo_id}/corrections/{attribute}", dependencies=[Depends(require_token)],
                              responses=_problems(*_WRITE, 404), summary="Remove an attribute correction"))
    def delete_attribute(photo_id: PhotoId,
                         attribute: str = _one_of(attributes, description="an attribute of this index")) -> dict:
        return _uncorrect(photo_id, attribute)

    def _uncorrect(photo_id: int, target: str) -> dict:
        """The model's prediction holds again."""
        try:
            review.uncorrect(engine, photo_id, target)
        except review.NotFound as e:
            raise HTTPException(404, str(e)) from None
        return photo_or_404(photo_id)

    @app.post("/api/photos", status_code=201, dependencies=[Depends(require_token)],
              responses=_problems(*_WRITE, 400, 411, 415, 429),
              summary="Upload a photo (JPEG, PNG or WebP) to tag and add to the index")
    async def upload(file: UploadFile = File(...), listing_id: str | None = Form(None, max_length=200)) -> dict:
        data = await file.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            raise HTTPException(413, f"upload too large: over {max_upload_bytes} bytes")
        ext = _image_extension(data)
        if ext is None:
            raise HTTPException(415, f"{display_path(file.filename or 'upload')}: not a JPEG, PNG or WebP image")
        listing_id = (listing_id or "").strip() or None
        # Decoding, the network and the database run in a worker thread: the server keeps answering.
        return await run_in_threadpool(store_upload, data, ext, listing_id, file.filename or "upload")

    checkers: dict[tuple[bool, bool, bool], object] = {}

    def upload_checker():
        """The checks the index holds, run on an upload too (one checker per combination, made once)."""
        from ..checks.photo import make_checker

        held = build.checks_held(engine)
        if held not in checkers:
            checks, faces, watermarks = held
            try:
                checkers[held] = make_checker(checks, faces=faces, watermarks=watermarks)
            except ImportError as e:  # a server without the [checks] extra still tags uploads
                warnings.warn(f"uploads are tagged without the listing checks this index holds: {e}", stacklevel=1)
                checkers[held] = None
        return checkers[held]

    def store_upload(data: bytes, ext: str, listing_id: str | None, filename: str) -> dict:
        uploads.mkdir(parents=True, exist_ok=True)
        dest = uploads / f"{uuid.uuid4().hex}{ext}"  # our name, never the client's
        tmp = dest.with_name("." + dest.name + ".part")
        tmp.write_bytes(data)
        os.replace(tmp, dest)
        checker = upload_checker()
        rows = list(tag_photos(bundle, [str(dest)], batch_size=1, workers=1, checks=checker))
        if not rows[0].ok:
            dest.unlink(missing_ok=True)
            raise _invalid(("body", "file"), f"{display_path(filename)}: {rows[0].status}", None)
        st = dest.stat()
        info = {build.path_key(str(dest)): (listing_id, (st.st_size, st.st_mtime))}
        (pid,) = build.write_rows(engine, rows, info, model_name, model_version,
                                  {h.name: h.threshold for h in bundle.attributes}, origin="upload")
        if checker is not None:
            build.link_duplicates(engine, pid)
        return photo_or_404(pid)

    @app.get("/api/listings/{listing_id:path}", summary="One listing: its columns and photos (an id may hold /)",
             responses={**reads, **_problems(404)})
    def listing(request: Request, listing_id: str) -> dict:
        with engine.connect() as conn:
            rec = listing_record(conn, listing_id)
        if rec is None:
            raise HTTPException(404, f"no listing {listing_id!r}")
        return shown(request, rec)

    @app.get("/api/export-labels", summary="The corrections as a training CSV (path,label,<attributes>,group)",
             dependencies=[Depends(require_token)],
             response_class=Response, responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}},
                                                       "description": "the CSV"}, **_problems(401, 403)})
    def export(target: str = _one_of(export_targets, Query, default="all",
                                     description="all, room_type or one attribute")) -> Response:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "labels.csv"
            review.export_labels(engine, out, target)
            data = out.read_bytes()
        return Response(data, media_type="text/csv",
                        headers={"Content-Disposition": 'attachment; filename="labels.csv"'})

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.state.engine, app.state.bundle, app.state.upload_dir = engine, bundle, uploads
    app.state.max_upload_bytes = max_upload_bytes
    return app


_JPEG = {"content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}, "description": "a JPEG"}
_NOT_MODIFIED = {"description": "the copy the client holds (If-None-Match) is current"}


def _image_extension(data: bytes) -> str | None:
    """The extension for the format Pillow finds in `data`, when it is one we accept and its
    structure checks out; None otherwise (the tagger then judges size and decoding)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = im.format
            im.verify()
    except Exception:  # noqa: BLE001 - whatever Pillow refuses is not an image we take
        return None
    if fmt not in UPLOAD_FORMATS:
        return None
    return UPLOAD_FORMATS[fmt]

