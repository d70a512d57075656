"""The browser dashboard: `GET /dashboard`, its static assets, and `GET /` sending browsers there.

`app` adds `routes()` to its own. The page is plain HTML, CSS and JavaScript from
the `static/` folder beside this module (shipped inside the package); it calls the
gateway's own JSON routes and event stream with the user's key, so serving it needs
no key and no gRPC call. A strict Content-Security-Policy keeps the page from
reaching any other origin.
"""

from __future__ import annotations

import os
import pathlib

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC = pathlib.Path(__file__).parent / "static"
PATH = "/dashboard"
ASSETS = PATH + "/static"

# Everything from this origin only: no CDN, no outside request of any kind, no inline script or style.
# `img-src data:` is for the empty favicon, which spares the browser a /favicon.ico request.
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:;"
    " base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "content-security-policy": POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    # Revalidated on every load (ETag/Last-Modified), so an upgraded gateway serves its new page at once.
    "cache-control": "no-cache",
}


class Assets(StaticFiles):
    """StaticFiles with the dashboard's headers, and fixed JavaScript and CSS types whatever /etc/mime.types says."""

    TYPES = {
        ".js": "text/javascript; charset=utf-8",
        ".css": "text/css; charset=utf-8",
        ".html": "text/html; charset=utf-8",
    }

    def file_response(
        self, full_path: os.PathLike | str, stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(HEADERS)
        media_type = self.TYPES.get(pathlib.PurePath(full_path).suffix)
        if media_type and response.status_code != 304:
            response.headers["content-type"] = media_type
        return response


async def page(request: Request) -> Response:
    """The dashboard itself; it asks for a key when the API wants one, so it needs none to load."""
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8", headers=HEADERS)


async def root(request: Request) -> Response:
    return RedirectResponse(PATH, status_code=307)


def routes() -> list[Route | Mount]:
    return [
        Route("/", root, methods=["GET"]),
        Route(PATH, page, methods=["GET"]),
        Mount(ASSETS, app=Assets(directory=STATIC), name="dashboard-static"),
    ]
