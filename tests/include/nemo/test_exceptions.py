"""Error messages lead with the object, carry method/URL/status/body, and end with what to do."""

from __future__ import annotations

from include.nemo.exceptions import NemoApiError, NemoNotFoundError, default_hint, truncate_body


def test_message_shape():
    exc = NemoNotFoundError(method="get", url="http://x/v1/models/a/b", status_code=404, body=b'{"detail":"gone"}',
                            object_id="model a/b", attempts=1, reason="Not Found")
    message = str(exc)
    assert message == (
        'model a/b: GET http://x/v1/models/a/b returned HTTP 404 (Not Found); response body: {"detail":"gone"}. '
        + default_hint(404)
    )


def test_retries_are_counted_in_the_message():
    exc = NemoApiError(method="POST", url="http://x", status_code=503, attempts=4)
    assert "The request failed 4 times. Giving up." in str(exc)
    assert str(exc).endswith(default_hint(503))


def test_no_response_message():
    exc = NemoApiError(method="GET", url="http://x", reason="ConnectError: refused", attempts=2)
    assert "GET http://x failed: ConnectError: refused" in str(exc)
    assert exc.to_dict()["status_code"] is None


def test_truncation():
    assert truncate_body("abc") == "abc"
    assert truncate_body(b"\xff") == "\ufffd"
    cut = truncate_body("x" * 1500)
    assert cut.startswith("x" * 1000) and cut.endswith("[500 more characters]")


def test_every_hint_says_what_to_do():
    for status in (None, 400, 401, 403, 404, 409, 422, 429, 500, 418):
        assert default_hint(status).endswith(".")
