"""Error answers: plain styled pages, the right status, no traceback, no detail of the failure."""

import re

import pytest
from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.core.handlers.exception import response_for_exception
from django.test import Client
from django.views import defaults

from feedback.models import Feedback
from web.errors import bad_request

pytestmark = pytest.mark.django_db

FIVE_MB = 5 * 1024 * 1024


def assert_plain_error_page(response, status: int, heading: str) -> str:
    assert response.status_code == status
    html = response.content.decode()
    assert "<!doctype html>" in html
    assert heading in html
    assert "/static/css/app.css" in html  # styled like the rest of the site
    for leak in ("Traceback", "secret detail", "DEBUG", "Django", "<script"):
        assert leak not in html
    return html


def test_404(client):
    assert_plain_error_page(client.get("/no/such/page/"), 404, "Nothing here")


def test_400_for_a_foreign_host_header(client):
    assert_plain_error_page(
        client.get("/", headers={"host": "evil.example"}), 400, "could not be understood"
    )


def test_403(rf):
    response = defaults.permission_denied(rf.get("/"), PermissionDenied())
    assert_plain_error_page(response, 403, "You may not do that")


def test_403_for_a_post_without_the_csrf_token():
    client = Client(enforce_csrf_checks=True)
    client.get("/")  # the CSRF cookie is set, but the form field is left out
    response = client.post("/", {"email": "ada@example.com", "message": "Hi"})
    assert_plain_error_page(response, 403, "Please reload the page")
    # htmx requests too: the header is the only other place the token may come from.
    response = client.post(
        "/", {"email": "ada@example.com", "message": "Hi"}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 403
    assert not Feedback.objects.exists()


def test_the_csrf_token_is_in_the_form_and_on_every_htmx_request():
    client = Client(enforce_csrf_checks=True)
    html = client.get("/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
    assert re.search(r'<body hx-headers=\'\{"X-CSRFToken": "[^"]+"\}\'>', html)
    response = client.post(
        "/", {"email": "ada@example.com", "message": "Hi", "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 303
    header_token = re.search(r'"X-CSRFToken": "([^"]+)"', html).group(1)
    response = client.post(
        "/",
        {"email": "bob@example.com", "message": "Hi"},
        headers={"HX-Request": "true", "X-CSRFToken": header_token},
    )
    assert response.status_code == 200
    assert Feedback.objects.count() == 2


def test_500(client, settings):
    settings.ROOT_URLCONF = "tests.support.error_urls"
    client.raise_request_exception = False
    assert_plain_error_page(client.get("/crash/"), 500, "something broke on our side")


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "multipart"])
def test_a_5_mb_body_is_a_413_and_stores_nothing(client, content_type):
    message = "x" * FIVE_MB
    if content_type == "multipart":
        response = client.post("/", {"email": "ada@example.com", "message": message})
    else:
        body = f"email=ada%40example.com&message={message}"
        response = client.post("/", body, content_type=content_type)
    assert_plain_error_page(response, 413, "too much to send")
    assert not Feedback.objects.exists()


def test_a_body_found_too_large_while_read_is_a_413_too(rf):
    # Without a Content-Length (a chunked upload) the limit is only hit while
    # Django reads the body; its RequestDataTooBig (a 400 by default) is the same 413.
    request = rf.post("/")
    assert bad_request(request, RequestDataTooBig()).status_code == 413
    assert response_for_exception(request, RequestDataTooBig()).status_code == 413
    assert response_for_exception(request, SuspiciousOperation()).status_code == 400


def test_pages_carry_a_csp_and_no_inline_script_or_style(client):
    feedback_page = client.post("/", {"email": "ada@example.com", "message": "Hi"}, follow=True)
    for response in [client.get("/"), feedback_page, client.get("/nope/")]:
        policy = response["Content-Security-Policy"]
        assert "script-src 'self'" in policy
        assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy
        html = response.content.decode()
        for script in re.findall(r"<script[^>]*>", html):
            assert " src=" in script, script
        assert "<style" not in html and " style=" not in html
        assert not re.search(r" on[a-z]+=", html)  # no inline event handlers either
    # htmx's own scripts carry the request's nonce.
    response = client.get("/")
    nonce = re.search(r"'nonce-([^']+)'", response["Content-Security-Policy"]).group(1)
    assert f'<script src="/static/django_htmx/htmx-2.min.js" defer nonce="{nonce}">' in (
        response.content.decode()
    )
