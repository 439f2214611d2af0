"""The favicon: /favicon.ico (asked for by every page without an icon link, the admin's
say) and the SVG our own pages link to, both answered by a real daphne."""

import re

import httpx
import pytest

pytestmark = pytest.mark.django_db(transaction=True)


def test_favicon_ico_and_svg_are_answered(start_daphne):
    daphne = start_daphne()
    with httpx.Client(base_url=daphne.url, timeout=10) as http:
        asked = http.get("/favicon.ico")
        assert asked.status_code == 301
        icon = http.get(asked.headers["location"])
        assert icon.status_code == 200
        assert icon.headers["content-type"] == "image/x-icon"
        assert icon.content[:4] == b"\x00\x00\x01\x00"  # an ICO file's header
        assert int.from_bytes(icon.content[4:6], "little") >= 1  # with at least one image

        page = http.get("/")
        [svg_url] = re.findall(r'<link rel="icon" href="([^"]+)" type="image/svg\+xml">', page.text)
        svg = http.get(svg_url)
        assert svg.status_code == 200
        assert svg.headers["content-type"].startswith("image/svg+xml")
        assert svg.text.startswith("<svg ")
