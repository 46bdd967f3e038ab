"""The single request function: retries, backoff, Retry-After, errors, auth, connection parsing."""

from __future__ import annotations

import email.utils
import logging
import socket
import time

import httpx
import pytest

from include.nemo.exceptions import (
    NemoApiError,
    NemoAuthError,
    NemoConfigurationError,
    NemoConflictError,
    NemoConnectionError,
    NemoNotFoundError,
    NemoTimeoutError,
)
from include.nemo.hooks import NemoHook


def make_hook(script, sleeps, **kwargs):
    kwargs.setdefault("retry_limit", 4)
    kwargs.setdefault("retry_delay", 0.01)
    return NemoHook(transport=script.transport(), sleep=sleeps, **kwargs)


# -- retries ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_retried_with_exponential_backoff_then_succeeds(nemo_conn, script, sleeps, status):
    peer = script(status, status, (200, {"ok": True}))
    hook = make_hook(peer, sleeps)

    assert hook._request("GET", "/v1/namespaces") == {"ok": True}
    assert len(peer.requests) == 3
    assert sleeps.waits == [0.01, 0.02]


def test_backoff_is_capped(nemo_conn, script, sleeps):
    peer = script(503, 503, 503, 503, (200, {}))
    hook = make_hook(peer, sleeps, retry_limit=5, retry_delay=1.0, retry_max_delay=3.0)

    hook._request("GET", "/v1/namespaces")
    assert sleeps.waits == [1.0, 2.0, 3.0, 3.0]


def test_429_honours_retry_after_seconds(nemo_conn, script, sleeps):
    peer = script((429, {"detail": "slow down"}, {"Retry-After": "7"}), (200, {"ok": 1}))
    hook = make_hook(peer, sleeps)

    assert hook._request("GET", "/v1/namespaces") == {"ok": 1}
    assert sleeps.waits == [7.0]


def test_retry_after_is_capped(nemo_conn, script, sleeps):
    peer = script((429, {}, {"Retry-After": "3600"}), (200, {}))
    hook = make_hook(peer, sleeps, max_retry_after=5.0)

    hook._request("GET", "/v1/namespaces")
    assert sleeps.waits == [5.0]


def test_retry_after_as_http_date(nemo_conn, script, sleeps):
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    peer = script((503, {}, {"Retry-After": when}), (200, {}))
    hook = make_hook(peer, sleeps, max_retry_after=600)

    hook._request("GET", "/v1/namespaces")
    # The date is about 120 s ahead; the wait must come from it, not from the 0.01 s backoff.
    assert len(sleeps.waits) == 1 and 100 < sleeps.waits[0] <= 121


def test_connection_error_is_retried_then_succeeds(nemo_conn, script, sleeps):
    peer = script(httpx.ConnectError, httpx.RemoteProtocolError, (200, {"ok": True}))
    hook = make_hook(peer, sleeps)

    assert hook._request("GET", "/v1/namespaces") == {"ok": True}
    assert len(peer.requests) == 3


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, NemoApiError), (401, NemoAuthError), (403, NemoAuthError), (404, NemoNotFoundError),
     (409, NemoConflictError), (422, NemoApiError)],
)
def test_4xx_fails_at_once_with_its_own_exception(nemo_conn, script, sleeps, status, error):
    peer = script((status, {"detail": f"the server says {status}"}), (200, {}))
    hook = make_hook(peer, sleeps)

    with pytest.raises(error) as info:
        hook._request("POST", "/v1/customization/jobs", json={"name": "j"}, object_id="customization job j")

    assert len(peer.requests) == 1
    assert sleeps.waits == []
    exc = info.value
    assert exc.status_code == status
    assert exc.attempts == 1
    message = str(exc)
    assert message.startswith("customization job j: POST http://nemo.test:8000/v1/customization/jobs")
    assert f"HTTP {status}" in message
    assert f"the server says {status}" in message
    assert "Giving up" not in message
    assert message.endswith(".") and exc.hint in message


def test_retries_exhausted_message_has_status_body_and_count(nemo_conn, script, sleeps):
    peer = script((503, {"detail": "backend down"}))
    hook = make_hook(peer, sleeps, retry_limit=3)

    with pytest.raises(NemoApiError) as info:
        hook._request("GET", "/v1/evaluation/jobs/eval-1", object_id="evaluation job eval-1")

    assert len(peer.requests) == 3
    exc = info.value
    assert (exc.status_code, exc.attempts, exc.method) == (503, 3, "GET")
    assert exc.url == "http://nemo.test:8000/v1/evaluation/jobs/eval-1"
    assert "backend down" in str(exc)
    assert "failed 3 times. Giving up." in str(exc)
    assert str(exc).startswith("evaluation job eval-1: ")


def test_long_bodies_are_truncated(nemo_conn, script, sleeps):
    peer = script((400, "x" * 5000))
    hook = make_hook(peer, sleeps)

    with pytest.raises(NemoApiError) as info:
        hook._request("GET", "/v1/namespaces")
    assert len(info.value.body) < 1100
    assert "4000 more characters" in info.value.body


def test_timeouts_are_retried_then_reported_clearly(nemo_conn, script, sleeps):
    peer = script(httpx.ReadTimeout)
    hook = make_hook(peer, sleeps, retry_limit=2, timeout=3)

    with pytest.raises(NemoTimeoutError) as info:
        hook._request("GET", "/v1/namespaces", object_id="namespaces")

    assert len(peer.requests) == 2
    message = str(info.value)
    assert "ReadTimeout" in message and "read=3" in message
    assert "failed 2 times. Giving up." in message
    assert "raise the timeout" in message and "nemo_default" in message


def test_refused_connection_to_a_real_closed_port(set_connection, sleeps):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # The socket is closed: nothing listens on the port any more.
    set_connection("nemo_default", conn_type="nemo", host=f"http://127.0.0.1:{port}")
    hook = NemoHook(retry_limit=2, retry_delay=0.0, sleep=sleeps)

    with pytest.raises(NemoConnectionError) as info:
        hook._request("GET", "/v1/namespaces")
    assert info.value.status_code is None
    assert "ConnectError" in str(info.value)
    assert "failed 2 times. Giving up." in str(info.value)
    assert sleeps.waits == [0.0]


def test_retry_false_sends_once(nemo_conn, script, sleeps):
    peer = script(503, (200, {}))
    hook = make_hook(peer, sleeps)

    with pytest.raises(NemoApiError):
        hook._request("GET", "/v1/namespaces", retry=False)
    assert len(peer.requests) == 1


def test_recover_returns_what_a_lost_attempt_created(nemo_conn, script, sleeps):
    # The first POST's answer is lost (503); the look-up finds the job, so no second POST is sent.
    peer = script(503, (200, {"never": "sent"}))
    hook = make_hook(peer, sleeps)

    result = hook._request("POST", "/v1/customization/jobs", json={"name": "j"}, recover=lambda: {"id": "cust-1"})
    assert result == {"id": "cust-1"}
    assert peer.paths == ["POST /v1/customization/jobs"]


def test_recover_finding_nothing_sends_again(nemo_conn, script, sleeps):
    peer = script(503, (201, {"id": "cust-2"}))
    hook = make_hook(peer, sleeps)

    assert hook._request("POST", "/v1/customization/jobs", json={}, recover=lambda: None) == {"id": "cust-2"}
    assert len(peer.requests) == 2


def test_non_json_success_is_a_clear_error(nemo_conn, script, sleeps):
    peer = script((200, "<html>login</html>"))
    hook = make_hook(peer, sleeps)

    with pytest.raises(NemoApiError, match="not JSON.*API base URL"):
        hook._request("GET", "/v1/namespaces")


def test_unexpected_2xx_is_an_error(nemo_conn, script, sleeps):
    peer = script((206, {}))
    hook = make_hook(peer, sleeps)
    with pytest.raises(NemoApiError, match="HTTP 206"):
        hook._request("GET", "/v1/namespaces", expected=(200,))


def test_empty_body_returns_none(nemo_conn, script, sleeps):
    peer = script(204)
    assert make_hook(peer, sleeps)._request("DELETE", "/v1/datasets/a/b") is None


def test_one_client_is_reused_across_calls(nemo_conn, script, sleeps):
    hook = make_hook(script((200, {})), sleeps)
    hook._request("GET", "/v1/namespaces")
    client = hook.get_conn()
    hook._request("GET", "/v1/namespaces")
    assert hook.get_conn() is client
    hook.close()
    assert hook.get_conn() is not client


# -- auth and headers -------------------------------------------------------------------------------------


def test_api_key_is_sent_as_bearer(nemo_conn, script, sleeps):
    peer = script((200, {}))
    make_hook(peer, sleeps)._request("GET", "/v1/namespaces")
    assert peer.requests[0].headers["Authorization"] == "Bearer secret-key-123"


def test_no_authorization_header_without_password(set_connection, script, sleeps):
    set_connection("nemo_default", conn_type="nemo", host="http://nemo.test")
    peer = script((200, {}))
    make_hook(peer, sleeps)._request("GET", "/v1/namespaces")
    assert "Authorization" not in peer.requests[0].headers


def test_api_key_never_appears_in_errors(nemo_conn, script, sleeps):
    peer = script((401, {"detail": "bad token"}))
    with pytest.raises(NemoAuthError) as info:
        make_hook(peer, sleeps)._request("GET", "/v1/namespaces")
    assert "secret-key-123" not in str(info.value)
    assert "secret-key-123" not in repr(info.value.to_dict())
    assert "API key" in str(info.value)


def test_extra_headers_are_sent(set_connection, script, sleeps):
    set_connection("nemo_default", conn_type="nemo", host="http://nemo.test", extra={"headers": {"X-Team": "ml"}})
    peer = script((200, {}))
    make_hook(peer, sleeps)._request("GET", "/v1/namespaces")
    assert peer.requests[0].headers["X-Team"] == "ml"


# -- connection parsing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "base_url"),
    [
        ({"host": "https://nemo.example.com/"}, "https://nemo.example.com"),
        ({"host": "https://nemo.example.com/prefix/"}, "https://nemo.example.com/prefix"),
        ({"host": "http://nemo.example.com", "port": 8080}, "http://nemo.example.com:8080"),
        ({"host": "nemo.example.com"}, "http://nemo.example.com"),
        ({"host": "nemo.example.com", "schema": "https"}, "https://nemo.example.com"),
        ({"host": "nemo.example.com", "port": 443}, "https://nemo.example.com:443"),
        ({"host": "nemo.example.com", "schema": "http", "port": 8000}, "http://nemo.example.com:8000"),
    ],
)
def test_base_url_from_connection_fields(set_connection, fields, base_url):
    set_connection("nemo_default", conn_type="nemo", **fields)
    assert NemoHook().base_url == base_url


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({}, "has no host"),
        ({"host": "nemo.example.com", "schema": "api"}, "not http or https"),
        ({"host": "https://nemo.example.com:8000", "port": 9000}, "port field says 9000"),
        ({"host": "https://nemo.example.com", "schema": "http"}, "Leave schema empty"),
        ({"host": "ftp://nemo.example.com"}, r"not an http\(s\) URL"),
        ({"host": "nemo.example.com/api"}, "has a path but no scheme"),
        ({"host": "http://x", "extra": {"timeout": "soon"}}, "timeout must be a number"),
        ({"host": "http://x", "extra": {"timeout": -1}}, "must be > 0"),
        ({"host": "http://x", "extra": {"timeout": {"red": 3}}}, "unknown key"),
        ({"host": "http://x", "extra": {"verify": "/no/such/ca.pem"}}, "CA bundle"),
    ],
)
def test_unusable_connections_get_clear_errors(set_connection, fields, complaint):
    set_connection("nemo_default", conn_type="nemo", **fields)
    with pytest.raises(NemoConfigurationError, match=complaint) as info:
        NemoHook().endpoint
    assert "nemo_default" in str(info.value)


def test_timeout_and_verify_from_extra(set_connection):
    set_connection("nemo_default", conn_type="nemo", host="http://x",
                   extra={"timeout": {"connect": 2, "read": 300}, "verify": "false"})
    endpoint = NemoHook().endpoint
    assert (endpoint.timeout.connect, endpoint.timeout.read) == (2.0, 300.0)
    assert endpoint.verify is False


def test_hook_timeout_overrides_the_connection(set_connection):
    set_connection("nemo_default", conn_type="nemo", host="http://x", extra={"timeout": 300})
    assert NemoHook(timeout=5).endpoint.timeout.read == 5.0
    assert NemoHook().endpoint.timeout.read == 300.0


def test_unknown_extra_keys_are_reported(set_connection, caplog):
    set_connection("nemo_default", conn_type="nemo", host="http://x", extra={"timout": 3})
    with caplog.at_level(logging.WARNING):
        NemoHook().endpoint
    assert "timout" in caplog.text


def test_invalid_retry_settings_are_rejected():
    with pytest.raises(NemoConfigurationError, match="retry_limit"):
        NemoHook(retry_limit=0)
    with pytest.raises(NemoConfigurationError, match="retry_delay"):
        NemoHook(retry_delay=-1)


# -- test_connection --------------------------------------------------------------------------------------


def test_test_connection_ok(nemo_conn, script, sleeps):
    peer = script((200, {"data": []}))
    ok, message = make_hook(peer, sleeps).test_connection()
    assert ok, message
    assert peer.paths == ["GET /v1/namespaces"]
    assert "nemo_default" in message


def test_test_connection_reports_auth_failure_without_retrying(nemo_conn, script, sleeps):
    peer = script((401, {"detail": "no"}), (200, {}))
    ok, message = make_hook(peer, sleeps).test_connection()
    assert not ok
    assert "HTTP 401" in message and "API key" in message
    assert len(peer.requests) == 1


def test_test_connection_reports_a_bad_connection(set_connection):
    set_connection("nemo_default", conn_type="nemo")
    ok, message = NemoHook().test_connection()
    assert not ok and "no host" in message


def test_missing_connection_names_the_conn_id(script, sleeps):
    hook = NemoHook("does_not_exist", transport=script().transport())
    with pytest.raises(Exception, match="does_not_exist"):
        hook._request("GET", "/v1/namespaces")
