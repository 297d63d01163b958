"""download_mnist against a local HTTP server: verification, retries, fallback. No internet."""
from __future__ import annotations

import gzip
import hashlib
import http.server
import threading
from functools import partial

import numpy as np
import pytest

from aelab.data import download as download_module
from aelab.data import download_mnist, load_dataset
from aelab.data.idx import write_idx
from aelab.errors import DataError, OptionError

NAMES = list(download_module.EXPECTED_SHA256)


@pytest.fixture
def mirror_root(tmp_path, monkeypatch):
    """Mirrors 'good', 'corrupt', 'truncated' and 'gone' (empty) of tiny synthetic IDX files."""
    root = tmp_path / "www"
    rng = np.random.default_rng(2)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (5, 4, 4), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.array([0, 1, 2, 0, 1], np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (3, 4, 4), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.array([2, 1, 0], np.uint8),
    }
    expected = {}
    for name, array in arrays.items():
        raw = write_idx(tmp_path / name, array).read_bytes()
        expected[name] = hashlib.sha256(raw).hexdigest()
        packed = gzip.compress(raw, mtime=0)
        corrupt = bytearray(packed)
        corrupt[-12] ^= 0xFF  # inside the deflate data or CRC: the content no longer checks out
        for mirror, data in (("good", packed), ("corrupt", bytes(corrupt)),
                             ("truncated", packed[: len(packed) - 10])):
            (root / mirror).mkdir(parents=True, exist_ok=True)
            (root / mirror / f"{name}.gz").write_bytes(data)
    (root / "gone").mkdir()
    monkeypatch.setattr(download_module, "EXPECTED_SHA256", expected)
    monkeypatch.setattr(download_module, "BACKOFF_SECONDS", 0.0)
    return root


@pytest.fixture
def server(mirror_root):
    """A local HTTP server over mirror_root; .requests lists the paths asked for."""
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(mirror_root)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    httpd.requests = requests
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


def test_good_download_verifies_and_lands(tmp_path, server):
    dest = tmp_path / "dest"
    assert download_mnist(dest, [server.url + "/good/"], timeout=5) == dest
    assert _leftovers(dest) == sorted(f"{name}.gz" for name in NAMES)
    assert len(server.requests) == 4
    dataset = load_dataset(dest)
    assert dataset.train.n == 5 and dataset.test.labels.tolist() == [2, 1, 0]
    download_mnist(dest, [server.url + "/good"], timeout=5)  # already there and valid
    assert len(server.requests) == 4


@pytest.mark.parametrize("mirror", ["corrupt", "truncated", "gone"])
def test_bad_downloads_are_retried_then_refused(tmp_path, server, mirror):
    dest = tmp_path / "dest"
    with pytest.raises(DataError, match="after 3 attempt") as info:
        download_mnist(dest, [f"{server.url}/{mirror}"], retries=3, timeout=5)
    assert server.requests == [f"/{mirror}/{NAMES[0]}.gz"] * 3  # bounded, and stops at the first file
    assert f"{server.url}/{mirror}/{NAMES[0]}.gz" in str(info.value)
    expected_reason = {"corrupt": "gzip|SHA-256", "truncated": "truncated", "gone": "HTTP 404"}[mirror]
    assert any(word in str(info.value) for word in expected_reason.split("|"))
    assert _leftovers(dest) == []  # nothing at the final name, no temporary files


def test_fallback_to_the_second_mirror(tmp_path, server):
    dest = tmp_path / "dest"
    download_mnist(dest, [f"{server.url}/corrupt/", f"{server.url}/good/"], retries=3, timeout=5)
    assert _leftovers(dest) == sorted(f"{name}.gz" for name in NAMES)
    assert server.requests[:2] == [f"/corrupt/{NAMES[0]}.gz", f"/good/{NAMES[0]}.gz"]
    assert len(server.requests) == 8


def test_unreachable_mirror_then_good(tmp_path, server):
    import socket
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    dest = tmp_path / "dest"
    download_mnist(dest, [dead, f"{server.url}/good"], retries=2, timeout=5)
    assert len(_leftovers(dest)) == 4


def test_a_damaged_existing_file_is_replaced(tmp_path, server):
    dest = tmp_path / "dest"
    download_mnist(dest, [f"{server.url}/good"], timeout=5)
    target = dest / f"{NAMES[1]}.gz"
    target.write_bytes(target.read_bytes()[:-5])
    download_mnist(dest, [f"{server.url}/good"], timeout=5)
    assert server.requests[-1] == f"/good/{NAMES[1]}.gz" and len(server.requests) == 5
    assert load_dataset(dest).train.labels.tolist() == [0, 1, 2, 0, 1]


def test_an_existing_uncompressed_copy_counts(tmp_path, server):
    dest = tmp_path / "dest"
    download_mnist(dest, [f"{server.url}/good"], timeout=5)
    raw = dest / NAMES[0]
    raw.write_bytes(gzip.decompress((dest / f"{NAMES[0]}.gz").read_bytes()))
    (dest / f"{NAMES[0]}.gz").unlink()
    download_mnist(dest, [f"{server.url}/good"], timeout=5)
    assert len(server.requests) == 4


def test_arguments_are_validated(tmp_path):
    with pytest.raises(OptionError, match="retries"):
        download_mnist(tmp_path, ["http://127.0.0.1:9/"], retries=0)
    with pytest.raises(OptionError, match="base_urls"):
        download_mnist(tmp_path, [])
    with pytest.raises(OptionError, match="timeout"):
        download_mnist(tmp_path, ["http://127.0.0.1:9/"], timeout=0)


def test_default_mirrors_are_https():
    assert download_module.DEFAULT_MIRRORS and all(
        url.startswith("https://") for url in download_module.DEFAULT_MIRRORS)
