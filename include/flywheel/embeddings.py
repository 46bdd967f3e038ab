"""A small client for OpenAI-compatible ``POST {base_url}/v1/embeddings`` endpoints (NIM, OpenAI, emulator).

Used by semantic in-context example selection. Plain ``requests``: explicit timeout,
batching, retries with exponential backoff on connection errors, timeouts, 5xx and 429
only, and errors that carry the HTTP status and the response body.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import requests

log = logging.getLogger(__name__)

# NVIDIA retrieval embedding models (nv-embedqa, nv-embed, ...) are asymmetric and reject a
# request without ``input_type``; OpenAI rejects unknown fields. So the NIM fields are sent only
# to models known to need them. "query" on both sides: ICL compares prompts with prompts;
# ``truncate: END`` because a long prompt would otherwise be an HTTP 400, not a vector.
_NVIDIA_RETRIEVAL_MARKERS = ("embedqa", "nv-embed", "nvclip", "arctic-embed", "bge-m3")

_MAX_BODY_IN_ERROR = 500
_MAX_RETRY_AFTER = 30.0


@runtime_checkable
class Embedder(Protocol):
    """Anything that turns texts into vectors (one per text, same order)."""

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Return one embedding per text."""
        ...


class EmbeddingError(RuntimeError):
    """The embeddings endpoint failed; the message has the URL, status and body, and what to do."""

    def __init__(self, message: str, *, status: int | None = None, body: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


def default_extra_body(model: str) -> dict[str, Any]:
    """Extra request fields a model needs beyond the OpenAI shape (``input_type`` for NVIDIA retrievers)."""
    lowered = model.lower()
    if any(marker in lowered for marker in _NVIDIA_RETRIEVAL_MARKERS):
        return {"input_type": "query", "truncate": "END"}
    return {}


class EmbeddingClient:
    """Embeds texts through an OpenAI-compatible embeddings endpoint.

    Args:
        base_url: The server root, e.g. ``http://nim:8000`` (``/v1/embeddings`` is appended;
            a trailing ``/v1`` is accepted too).
        model: The embedding model id.
        api_key: Sent as a bearer token when set (never logged).
        batch_size: Texts per request.
        timeout: Seconds per request (connect and read).
        max_retries: Retries after the first attempt, on retryable failures only.
        backoff: First retry delay in seconds; doubles on each retry (``Retry-After`` wins if longer).
        extra_body: Fields merged into every request body. Default: :func:`default_extra_body`.
        session: A ``requests.Session`` to reuse (one is created otherwise).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        batch_size: int = 64,
        timeout: float = 30.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        *,
        extra_body: Mapping[str, Any] | None = None,
        session: requests.Session | None = None,
    ) -> None:
        if not base_url:
            raise ValueError("base_url is empty: set the host of the embedding connection (e.g. http://nim:8000)")
        if not model:
            raise ValueError("model is empty: set icl.similarity.embedding_model")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        root = base_url.rstrip("/")
        if root.endswith("/v1"):
            root = root[: -len("/v1")]
        self.url = f"{root}/v1/embeddings"
        self.model = model
        self.batch_size = batch_size
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.extra_body = dict(default_extra_body(model) if extra_body is None else extra_body)
        self._api_key = api_key
        self._session = session or requests.Session()

    def __repr__(self) -> str:
        return f"EmbeddingClient(url={self.url!r}, model={self.model!r})"

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Embed ``texts`` in batches of ``batch_size``.

        Args:
            texts: The texts (non-empty strings are best; empty ones are sent as they are).

        Returns:
            One vector per text, in the input order.

        Raises:
            EmbeddingError: a non-retryable HTTP error, retries exhausted, or a malformed reply.
        """
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start : start + self.batch_size])
            vectors.extend(self._embed_batch(batch))
        return vectors

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _embed_batch(self, batch: list[str]) -> list[list[float]]:
        payload: dict[str, Any] = {"model": self.model, "input": batch, **self.extra_body}
        attempts = self.max_retries + 1
        last_problem = ""
        last_status: int | None = None
        last_body: str | None = None
        for attempt in range(1, attempts + 1):
            delay = self.backoff * (2 ** (attempt - 1))
            try:
                response = self._session.post(self.url, json=payload, headers=self._headers(), timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout) as exc:
                last_problem = f"{type(exc).__name__}: {exc}"
                last_status, last_body = None, None
            else:
                status = response.status_code
                if status < 300:
                    return self._parse(response, len(batch))
                body = response.text[:_MAX_BODY_IN_ERROR]
                if status != 429 and status < 500:
                    raise EmbeddingError(
                        f"POST {self.url} (model {self.model}) failed with HTTP {status}: {body}. "
                        "Check the model name, the API key of the embedding connection, and the request fields "
                        f"{sorted(payload)}.",
                        status=status,
                        body=body,
                    )
                last_problem = f"HTTP {status}: {body}"
                last_status, last_body = status, body
                retry_after = _retry_after_seconds(response.headers.get("Retry-After"))
                if retry_after is not None:
                    # Honour the server's hint, within reason: a task must not sleep for an hour.
                    delay = max(delay, min(retry_after, _MAX_RETRY_AFTER))
            if attempt < attempts:
                log.warning(
                    "Embedding request to %s failed (%s); retry %s of %s in %.2fs.",
                    self.url,
                    last_problem,
                    attempt,
                    self.max_retries,
                    delay,
                )
                time.sleep(delay)
        raise EmbeddingError(
            f"POST {self.url} (model {self.model}) failed {attempts} times. Giving up. Last error: {last_problem}. "
            "Check that the embedding service is up and reachable, or raise max_retries/timeout.",
            status=last_status,
            body=last_body,
        )

    def _parse(self, response: requests.Response, expected: int) -> list[list[float]]:
        try:
            document = response.json()
            data = document["data"]
            ordered = sorted(data, key=lambda item: item.get("index", 0))
            vectors = [[float(value) for value in item["embedding"]] for item in ordered]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            body = response.text[:_MAX_BODY_IN_ERROR]
            raise EmbeddingError(
                f"POST {self.url} returned HTTP {response.status_code} but not an OpenAI embeddings reply "
                f"({type(exc).__name__}: {exc}): {body}",
                status=response.status_code,
                body=body,
            ) from None
        if len(vectors) != expected:
            raise EmbeddingError(
                f"POST {self.url} returned {len(vectors)} embeddings for {expected} inputs",
                status=response.status_code,
            )
        return vectors

    def close(self) -> None:
        """Close the HTTP session."""
        self._session.close()


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
