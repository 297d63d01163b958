"""Downloading MNIST from a public mirror, for users who want a copy outside the package.

aelab bundles MNIST, so this is never needed to run it. Each file is streamed
into a temporary file, its uncompressed SHA-256 is checked against the genuine
MNIST content, and only then is it renamed into place: a failed, truncated or
corrupted download never appears under the final name.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import IO, Sequence

from ..errors import DataError, OptionError
from ..fileio import atomic_write, ensure_dir
from .idx import GZIP_MAGIC

__all__ = ["download_mnist", "DEFAULT_MIRRORS", "EXPECTED_SHA256"]

DEFAULT_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

#: SHA-256 of the *uncompressed* genuine MNIST files (mirrors differ in their .gz bytes).
EXPECTED_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

BACKOFF_SECONDS = 1.0  # before the 2nd attempt; doubles after each failure, at most MAX_BACKOFF_SECONDS
MAX_BACKOFF_SECONDS = 8.0
_CHUNK = 1 << 16
_USER_AGENT = "aelab (MNIST download)"


class _AttemptFailed(Exception):
    """One download attempt failed; the message says why. Not an OSError on purpose:
    atomic_write would report an OSError as an unwritable output file."""


def download_mnist(dest_dir: str | os.PathLike, base_urls: Sequence[str] = DEFAULT_MIRRORS,
                   retries: int = 3, timeout: float = 30) -> Path:
    """Download the four MNIST ``.gz`` files into ``dest_dir``; return ``dest_dir``.

    A file already present (``name.gz`` or uncompressed ``name``) whose content
    checks out is kept. Otherwise the mirrors in ``base_urls`` are tried in
    turn, ``retries`` attempts in all per file (so with fewer attempts than
    mirrors the last mirrors are not tried), with a short growing pause between
    attempts; each attempt waits at most ``timeout`` seconds for the server.
    Raises :class:`DataError` listing every URL tried and why it failed.
    """
    mirrors = _checked_mirrors(base_urls)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 1:
        raise OptionError(f"retries must be an integer >= 1, got {retries!r}")
    if not timeout > 0:
        raise OptionError(f"timeout must be a positive number of seconds, got {timeout!r}")
    folder = ensure_dir(dest_dir)
    for name, expected in EXPECTED_SHA256.items():
        if not _present_and_valid(folder, name, expected):
            _download_file(folder / f"{name}.gz", name, expected, mirrors, retries, timeout)
    return folder


def _checked_mirrors(base_urls: Sequence[str]) -> list[str]:
    mirrors = [base_urls] if isinstance(base_urls, str) else list(base_urls)
    if not mirrors or not all(isinstance(url, str) and url for url in mirrors):
        raise OptionError(f"base_urls must be a non-empty list of URLs, got {base_urls!r}")
    return mirrors


def _present_and_valid(folder: Path, name: str, expected: str) -> bool:
    for candidate in (folder / f"{name}.gz", folder / name):
        if candidate.is_file():
            try:
                with open(candidate, "rb") as f:
                    if _content_sha256(f) == expected:
                        return True
            except (_AttemptFailed, OSError):
                pass  # damaged: download again
    return False


def _download_file(target: Path, name: str, expected: str, mirrors: list[str], retries: int,
                   timeout: float) -> None:
    failures: list[str] = []
    for attempt in range(retries):
        url = mirrors[attempt % len(mirrors)].rstrip("/") + f"/{name}.gz"
        if attempt:
            time.sleep(min(BACKOFF_SECONDS * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS))
        try:
            with atomic_write(target, "wb") as out:
                _fetch_verified(url, out, expected, timeout)
            return
        except _AttemptFailed as e:
            failures.append(f"{url} ({e})")
    raise DataError(f"could not download {name}.gz after {retries} attempt(s): " + "; ".join(failures),
                    path=target, hint="check the internet connection or pass other mirrors; or copy the "
                    "four MNIST files into this folder by hand")


def _fetch_verified(url: str, out: IO[bytes], expected: str, timeout: float) -> None:
    """Stream ``url`` into ``out``; raise _AttemptFailed unless its content is ``expected``."""
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        raise _AttemptFailed(f"HTTP {e.code} {e.reason}") from e
    except urllib.error.URLError as e:
        raise _AttemptFailed(f"cannot connect: {e.reason}") from e
    except (OSError, http.client.HTTPException, ValueError) as e:
        raise _AttemptFailed(f"cannot connect: {e}") from e
    with response:
        actual = _content_sha256(response, copy_to=out, require_gzip=True)
    if actual != expected:
        raise _AttemptFailed(f"content SHA-256 {actual[:12]}... is not the expected {expected[:12]}...; "
                             "the file is corrupted or not MNIST")


def _content_sha256(source: IO[bytes], copy_to: IO[bytes] | None = None,
                    require_gzip: bool = False) -> str:
    """SHA-256 of the uncompressed content of a gzip (or raw) stream; copies the bytes read."""
    digest = hashlib.sha256()
    inflater = None
    first = True
    while True:
        try:
            chunk = source.read(_CHUNK)
        except (OSError, http.client.HTTPException) as e:
            raise _AttemptFailed(f"connection broke: {e}") from e
        if not chunk:
            break
        if first:
            if chunk.startswith(GZIP_MAGIC):
                inflater = zlib.decompressobj(31)  # wbits=31: a gzip stream
            elif require_gzip:
                raise _AttemptFailed("not gzip data")
            first = False
        if copy_to is not None:
            copy_to.write(chunk)
        try:
            digest.update(inflater.decompress(chunk) if inflater else chunk)
        except zlib.error as e:
            raise _AttemptFailed(f"damaged gzip data: {e}") from e
    if inflater is not None and not inflater.eof:
        raise _AttemptFailed("truncated: the gzip stream ends early")
    return digest.hexdigest()
