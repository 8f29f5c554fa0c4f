"""The ASGI app: the page (served from the package, nothing from outside), the JSON/PNG API, and errors.

Every error a client can cause is a 4xx with `{"error": "<one line>"}`; an unexpected failure is a 500
with the same shape and no traceback (the traceback goes to the server's log only).
"""

from __future__ import annotations

import logging
import re
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from stylemri import __version__
from stylemri.data.decode import AXES, IMAGE_EXTENSIONS, NIFTI_EXTENSIONS
from stylemri.errors import UserError
from stylemri.explore.formats import DIFF_RANGE, FORMATS, difference_map, png_bytes
from stylemri.explore.nearest import TrainingNeighbours
from stylemri.explore.service import ModelService
from stylemri.explore.views import VIEWS, ApiError, Query, View

log = logging.getLogger("stylemri.explore")

DEFAULT_MAX_UPLOAD = 64 * 2**20
MAX_STEPS = 2000
DEFAULT_STEPS = 200
UPLOAD_EXTENSIONS = IMAGE_EXTENSIONS + NIFTI_EXTENSIONS
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8", ".png": "image/png"}
# The page may load only what this server serves (and images it builds itself as data:/blob: URLs).
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'")
COMMON = ("format", "diff")


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split()) or "error"}, status_code=status)


def static_files() -> dict[str, tuple[bytes, str]]:
    """name -> (bytes, media type) of every file in the package's static/ folder, read once: requests
    are answered from this table, so no request path ever reaches the file system."""
    root = resources.files("stylemri.explore") / "static"
    out = {}
    for entry in root.iterdir():
        suffix = Path(entry.name).suffix
        if entry.is_file() and suffix in STATIC_TYPES:
            out[entry.name] = (entry.read_bytes(), STATIC_TYPES[suffix])
    return out


def create_app(service: ModelService, neighbours: TrainingNeighbours | None = None, *,
               max_upload_bytes: int = DEFAULT_MAX_UPLOAD) -> FastAPI:
    """The explorer of one loaded model (and, optionally, its training images)."""
    app = FastAPI(title="stylemri explore", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url=None)
    files = static_files()
    _add_error_handlers(app)

    @app.middleware("http")
    async def headers(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        body, media = files["index.html"]
        return Response(body, media_type=media)

    @app.get("/static/{name:path}", include_in_schema=False)
    def static(name: str) -> Response:
        if name not in files:
            raise ApiError(f"/static/{name}: no such file", 404)
        body, media = files[name]
        return Response(body, media_type=media)

    @app.get("/api/model")
    def model_info() -> dict[str, Any]:
        info = service.info()
        info["views"] = {v.name: {"params": list(v.params), "summary": v.summary} for v in VIEWS.values()}
        info["formats"] = list(FORMATS)
        info["max_upload_bytes"] = max_upload_bytes
        info["diff_range"] = DIFF_RANGE
        info["data"] = None if neighbours is None else neighbours.info()
        info["version"] = __version__
        return info

    for view in VIEWS.values():
        app.add_api_route(f"/api/{view.name}", _view_endpoint(service, view), methods=["GET"], name=view.name)

    _add_data_routes(app, service, neighbours)

    @app.post("/api/project")
    async def project(request: Request) -> dict[str, Any]:
        form = await _read_upload_form(request, max_upload_bytes)
        try:
            return await run_in_threadpool(_project, service, form)
        finally:
            await form.close()

    return app


def _add_data_routes(app: FastAPI, service: ModelService, neighbours: TrainingNeighbours | None) -> None:
    """/api/nearest and /api/training: the training images given with --data."""

    @app.get("/api/nearest")
    def nearest(request: Request) -> dict[str, Any]:
        data = _need_data(neighbours)
        params = dict(request.query_params)
        name = params.pop("view", "generate")
        if name not in VIEWS:
            raise ApiError(f"view {name!r}: expected one of {', '.join(VIEWS)}")
        view = VIEWS[name]
        _check_params(params, view.params, f"/api/nearest?view={name}")
        rendered = view.render(service, Query(params, service))
        return data.nearest(rendered.image)

    @app.get("/api/training")
    def training(request: Request) -> Response:
        data = _need_data(neighbours)
        params = dict(request.query_params)
        _check_params(params, ("index", "flip"), "/api/training")
        raw = params.get("index", "")
        if not re.fullmatch(r"\d{1,12}", raw.strip()):
            raise ApiError(f"index {raw!r}: expected a training image index from 0 to {data.source.num - 1}")
        index = int(raw)
        if index >= data.source.num:
            raise ApiError(f"index {index}: out of range; the training set has {data.source.num} images", 404)
        flip = Query(params, service).choice("flip", ("0", "1"), "0") == "1"
        return Response(png_bytes(data.image(index, flip)), media_type="image/png")


# ------------------------------------------------------------------------------------------------ views


def _check_params(params: dict[str, str], allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ApiError(f"parameter {unknown[0]!r}: unknown for {where}; expected {', '.join(allowed)}")


def _view_endpoint(service: ModelService, view: View) -> Any:
    def endpoint(request: Request) -> Response:
        params = dict(request.query_params)
        _check_params(params, view.params + COMMON, f"/api/{view.name}")
        q = Query(params, service)
        fmt = q.choice("format", tuple(FORMATS), "png")
        diff = q.choice("diff", ("0", "1"), "0") == "1"
        if diff and fmt != "png":
            raise ApiError(f"diff 1: the difference map is an 8-bit colour PNG; drop format={fmt}")
        rendered = view.render(service, q)
        if diff:
            if rendered.reference is None:
                raise ApiError(f"diff 1: /api/{view.name} has no starting image to compare with")
            body, media, ext = difference_map(rendered.image, rendered.reference), "image/png", "png"
        else:
            out = FORMATS[fmt]
            body, media, ext = out.encode(rendered.image), out.media_type, out.extension
        stem = "_".join(f"{k}-{v}" for k, v in sorted(params.items()) if k not in COMMON)
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{view.name}_{stem}" if stem else view.name)[:120]
        name += "_diff" if diff else ""
        return Response(body, media_type=media,
                        headers={"Content-Disposition": f'inline; filename="{name}.{ext}"'})

    endpoint.__name__ = f"view_{view.name}"
    endpoint.__doc__ = view.summary
    return endpoint


def _need_data(neighbours: TrainingNeighbours | None) -> TrainingNeighbours:
    if neighbours is None:
        raise ApiError("nearest training image: this server was started without --data SOURCE", 409)
    return neighbours


# ----------------------------------------------------------------------------------------------- upload


async def _read_upload_form(request: Request, limit: int) -> Any:
    """The multipart form of an upload, refused before reading when its declared size is over the limit."""
    declared = request.headers.get("content-length")
    if declared is None:
        raise ApiError("upload: no Content-Length; send the file as multipart/form-data", 411)
    if not declared.isdigit():
        raise ApiError(f"upload: Content-Length {declared!r} is not a number", 400)
    if int(declared) > limit:
        raise ApiError(f"upload of {int(declared):,} bytes: too large; the limit is {limit:,} bytes "
                       f"({limit / 2**20:g} MiB, --max-upload-mb)", 413)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise ApiError("upload: expected multipart/form-data with a 'file' field", 415)
    try:
        return await request.form(max_files=1, max_fields=8, max_part_size=64 * 1024)
    except Exception as exc:  # starlette raises MultiPartException / HTTPException for malformed bodies
        raise ApiError(f"upload: malformed multipart/form-data ({getattr(exc, 'detail', exc)})") from None


def _project(service: ModelService, form: Any) -> dict[str, Any]:
    if service.covariates is not None:  # stylemri project refuses these models too (docs/covariates.md)
        raise ApiError(f"POST /api/project: projection is not available for a covariate model yet (conditioned on "
                       f"{', '.join(service.covariates.names)}); expected a class or unconditional model", 409)
    upload = form.get("file")
    if upload is None or isinstance(upload, str) or not hasattr(upload, "file"):
        raise ApiError("file: missing; expected an uploaded PNG/JPEG slice or a NIfTI volume in field 'file'")
    allowed = ("file", "slice", "axis", "class", "steps")
    _check_params({k: "" for k in form.keys()}, allowed, "POST /api/project")
    name = Path(str(upload.filename or "upload")).name or "upload"
    suffix = next((e for e in sorted(UPLOAD_EXTENSIONS, key=len, reverse=True) if name.lower().endswith(e)), None)
    if suffix is None:
        raise ApiError(f"file {name!r}: not an image; expected PNG/JPEG/BMP/TIFF or NIfTI (.nii, .nii.gz)", 415)
    params = {k: str(v) for k, v in form.items() if k != "file"}
    q = Query(params, service)
    steps = q.integer("steps", DEFAULT_STEPS, 1, MAX_STEPS, "projection steps")
    class_index = q.class_index(default=0) if service.class_names else q.class_index()
    slice_index = None
    if q.raw("slice") is not None:
        if suffix not in NIFTI_EXTENSIONS:
            raise ApiError(f"slice: only for NIfTI volumes; {name!r} is one image")
        slice_index = q.integer("slice", 0, 0, 100_000, "a slice index")
    axis = q.choice("axis", AXES, service.default_axis)
    with tempfile.TemporaryDirectory(prefix="stylemri-upload-") as tmp:
        path = Path(tmp) / f"upload{suffix}"
        with open(path, "wb") as f:
            upload.file.seek(0)
            while chunk := upload.file.read(1 << 20):
                f.write(chunk)
        try:
            target = service.load_target(path, slice_index, axis)
        except UserError as exc:
            status = 415 if "not an image" in str(exc) or "not a readable" in str(exc) else 400
            raise ApiError(str(exc).replace(str(path), name), status) from None
    record = service.project(target, class_index, steps, name)
    base = f"/api/projection?id={record.id}"
    return {"id": record.id, "name": name, "steps": record.steps, "initial_loss": record.initial_loss,
            "final_loss": record.final_loss, "ms_ssim": record.ms_ssim,
            "class": None if record.class_index is None else service.class_names[record.class_index],
            "target": f"{base}&show=target", "reconstruction": base}


# ----------------------------------------------------------------------------------------------- errors


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error(exc.status, str(exc))

    @app.exception_handler(UserError)
    async def user_error(request: Request, exc: UserError) -> JSONResponse:
        return error(400, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, f"{request.url.path}: {exc.detail}")

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()))
        return error(400, f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return error(500, f"internal error ({type(exc).__name__}); see the server's log")


__all__ = ["create_app", "DEFAULT_MAX_UPLOAD", "MAX_STEPS", "DEFAULT_STEPS", "static_files"]
