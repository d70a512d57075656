"""`GET /dashboard` and its assets: served from the package with the right types, and nothing from outside.

The page itself is tested in a browser by tests/test_dashboard_browser.py; these run without one.
"""

from __future__ import annotations

import re

import pytest

from taskhub.gateway.dashboard import STATIC

TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
URL = re.compile(r"(?:https?:)?//[a-z0-9.-]+", re.IGNORECASE)


def _assets() -> list[str]:
    return sorted(path.name for path in STATIC.iterdir() if path.is_file())


def test_the_assets_are_html_css_and_javascript_only():
    assert {name.rsplit(".", 1)[1] for name in _assets()} == {"html", "css", "js"}


async def test_the_page_loads_its_assets_from_the_gateway_under_a_strict_policy(http):
    response = await http.get("/dashboard")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy and "script-src 'self'" in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    page = response.text
    assert '<script type="module" src="/dashboard/static/app.js"></script>' in page
    assert '<link rel="stylesheet" href="/dashboard/static/style.css">' in page
    assert (await http.get("/dashboard/")).text == page  # a trailing slash is the same page


async def test_the_root_sends_browsers_to_the_dashboard(http):
    response = await http.get("/")
    assert (response.status_code, response.headers["location"]) == (307, "/dashboard")


@pytest.mark.parametrize("name", _assets())
async def test_every_asset_is_served_with_its_type(http, name):
    response = await http.get(f"/dashboard/static/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"] == TYPES["." + name.rsplit(".", 1)[1]]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.text == (STATIC / name).read_text()


async def test_every_module_the_page_imports_is_served(http):
    """Each `import ... from './x.js'` resolves to an asset the gateway serves."""
    for name in _assets():
        for imported in re.findall(r"""from '\./([\w-]+\.js)'""", (STATIC / name).read_text()):
            assert imported in _assets(), f"{name} imports {imported}"
            assert (await http.get(f"/dashboard/static/{imported}")).status_code == 200


@pytest.mark.parametrize("name", _assets())
def test_no_asset_points_outside_the_gateway(name):
    """No URL to any host: no CDN, no font, no analytics. Every request goes to the page's own origin."""
    text = (STATIC / name).read_text()
    assert URL.findall(text) == []
    assert "@import" not in text and "url(" not in text


async def test_an_unknown_asset_is_a_json_404(http):
    response = await http.get("/dashboard/static/nope.js")
    assert response.status_code == 404
    assert response.json()["code"] == "bad_request"
