"""``/api/docs`` without the internet: Swagger UI's own files, served by the app.

FastAPI's default page loads Swagger UI from a CDN (jsdelivr), so on a platform without internet access — or
a reader's laptop behind a strict proxy — ``/api/docs`` is a blank page. The files come from the
``fastapi-offline`` package (Swagger UI 5's dist in a wheel: 5.x, because FastAPI writes OpenAPI 3.1, which
Swagger UI 4 cannot render) and are served under ``/api/docs/assets/``; only the three files the page uses are
reachable. The package's own app factory is not used: only its files.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

DOCS_URL = "/api/docs"
ASSETS_URL = f"{DOCS_URL}/assets"
ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css", "favicon.png": "image/png"}
CACHE = {"Cache-Control": "public, max-age=86400"}


def assets_dir() -> Path:
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


def docs_router(openapi_url: str, title: str) -> APIRouter:
    """The docs page (``GET /api/docs``) and its assets, for the app's OpenAPI document at ``openapi_url``."""
    router = APIRouter(include_in_schema=False)

    @router.get(DOCS_URL, response_class=HTMLResponse)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url, title=f"{title} - Swagger UI", swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css", swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
        )  # fmt: skip

    @router.get(f"{ASSETS_URL}/{{name}}")
    def asset(name: str) -> FileResponse:
        if name not in ASSETS:
            raise HTTPException(404, f"no asset {name[:60]}")
        return FileResponse(assets_dir() / name, media_type=ASSETS[name], headers=CACHE)

    return router
