"""Mount the dashboard on a FastAPI app: the page at ``/``, its assets, the validation endpoint."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from affectlens import __version__
from affectlens.web.validation_report import load_validation_summary

WEB_DIR = Path(__file__).resolve().parent
STATIC_PREFIX = "/dashboard/static"
# Everything the page loads or calls is on this server: the browser enforces it too.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)

NO_REPORT = (
    "No validation report beside the vectors artifact: run `affectlens validate --vectors "
    "<artifact> --out <artifact dir>/validation` to add one."
)

_templates = Environment(
    loader=FileSystemLoader(WEB_DIR / "templates"),
    autoescape=select_autoescape(["html"]),
)


def render_page() -> str:
    """The dashboard's HTML (the same for every visitor: all data comes from the API)."""
    return _templates.get_template("index.html").render(static=STATIC_PREFIX, version=__version__)


def mount_dashboard(
    app: FastAPI, vectors_path: str | Path | Callable[[], str | Path | None] | None = None
) -> None:
    """Serve the dashboard at ``/`` and ``GET /v1/affectlens/validation`` on ``app``.

    ``vectors_path`` is the artifact the server holds (or a callable returning it, for apps that
    load it at start-up); the validation endpoint reports the ``report.json`` found beside it,
    or ``{"found": false, "message"}`` when there is none.
    """
    page = render_page()

    @app.get("/", include_in_schema=False)
    def dashboard_page() -> HTMLResponse:
        return HTMLResponse(
            page, headers={"Cache-Control": "no-cache", "Content-Security-Policy": CSP}
        )

    @app.get(
        "/v1/affectlens/validation",
        summary="Headline figures and PCA map of the validation report beside the artifact",
    )
    def validation() -> JSONResponse:
        # "no report" is an answer, not an error: the page asks every time it opens Vectors
        path = vectors_path() if callable(vectors_path) else vectors_path
        summary = load_validation_summary(path)
        if summary is None:
            return JSONResponse({"found": False, "message": NO_REPORT})
        return JSONResponse({"found": True, **summary})

    app.mount(STATIC_PREFIX, StaticFiles(directory=WEB_DIR / "static"), name="dashboard-static")
