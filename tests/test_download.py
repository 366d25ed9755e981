"""Downloading a checkpoint by URL, against a local HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from t2ibench import cli_download
from t2ibench.errors import InputError
from t2ibench.models.download import ProgressPrinter, download_model

HTML = b"<!DOCTYPE html><html><body>Please log in</body></html>"


@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("src") / "model.safetensors"
    save_file({"w": torch.arange(2048, dtype=torch.float32), "b": torch.ones(3)}, str(path))
    return path.read_bytes()


class Handler(BaseHTTPRequestHandler):
    """Each path is one server behaviour; `server.requests` records (path, Range) pairs."""

    timeout = 5  # a stuck client never keeps a handler thread alive for long

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.requests.append((self.path, self.headers.get("Range")))
        route = self.path.split("?")[0].strip("/")
        body = self.server.body
        if route == "missing.safetensors":
            self.send_error(404)
        elif route == "page.safetensors":
            self._send(HTML, content_type="text/html; charset=utf-8")
        elif route == "sniffed.safetensors":
            self._send(HTML)
        elif route == "garbage.safetensors":
            self._send(b"\x00" * 64)
        elif route == "cd":
            disposition = "attachment; filename*=UTF-8''My%20Model.safetensors; filename=\"x\""
            self._send(body, disposition=disposition)
        elif route == "cd-plain":
            self._send(body, disposition='attachment; filename="plain.safetensors"')
        elif route == "evil":
            self._send(body, disposition='attachment; filename="../../evil.safetensors"')
        elif route == "drop.safetensors" and not self.headers.get("Range"):
            self._send(body, cut=len(body) // 2)
        elif route == "stall.safetensors" and not self.headers.get("Range"):
            self._send(body, cut=len(body) // 2, stall=True)
        elif route == "norange.safetensors":
            self._send(body)
        else:
            self._send_range(body)

    def _send(
        self, body, content_type="application/octet-stream", disposition=None, cut=None, stall=False
    ):
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if disposition:
            self.send_header("Content-Disposition", disposition)
        self.end_headers()
        self.wfile.write(body[:cut])
        if cut is not None:
            self.wfile.flush()
            if stall:  # hold the connection open, silent, until the client gives up
                self.server.stop.wait(3)
            self.close_connection = True

    def _send_range(self, body):
        """Honour ``Range: bytes=N-`` like a CDN: a 206 with the rest of the file."""
        wanted = self.headers.get("Range")
        if not wanted:
            return self._send(body)
        start = int(wanted.removeprefix("bytes=").rstrip("-"))
        if start >= len(body):
            return self.send_error(416)
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start:])


@pytest.fixture(scope="module")
def server(model_bytes):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.body = model_bytes
    httpd.requests = []
    httpd.stop = threading.Event()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    yield httpd
    httpd.stop.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture
def url(server):
    server.requests.clear()
    return lambda route: f"http://127.0.0.1:{server.server_port}/{route}"


def only_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_downloads_named_file_with_sidecar(tmp_path, url, model_bytes):
    seen = []
    path = download_model(
        url("model.safetensors"),
        tmp_path,
        name="mine",
        source_tag="HuggingFace",
        progress=lambda done, total: seen.append((done, total)),
    )
    assert path == tmp_path / "mine.safetensors"
    assert path.read_bytes() == model_bytes
    sidecar = json.loads((tmp_path / "mine.safetensors.json").read_text())
    assert sidecar["url"] == url("model.safetensors")
    assert sidecar["source_tag"] == "HuggingFace"
    assert sidecar["sha256"] == hashlib.sha256(model_bytes).hexdigest()
    assert sidecar["size"] == len(model_bytes)
    assert sidecar["downloaded_at"].endswith("+00:00")
    assert seen[-1] == (len(model_bytes), len(model_bytes))
    assert only_files(tmp_path) == ["mine.safetensors", "mine.safetensors.json"]


def test_existing_file_is_reused_without_a_request(tmp_path, url, server, model_bytes):
    download_model(url("model.safetensors"), tmp_path, name="m")
    server.requests.clear()
    digest = hashlib.sha256(model_bytes).hexdigest()
    assert download_model(url("model.safetensors"), tmp_path, name="m", sha256=digest)
    assert server.requests == []
    with pytest.raises(InputError, match="already exists with sha256"):
        download_model(url("model.safetensors"), tmp_path, name="m", sha256="0" * 64)


@pytest.mark.parametrize(
    ("route", "expected"),
    [
        ("model.safetensors", "model.safetensors"),
        ("cd", "My_Model.safetensors"),
        ("cd-plain", "plain.safetensors"),
    ],
)
def test_name_from_disposition_else_url(tmp_path, url, route, expected):
    assert download_model(url(route + "?token=abc"), tmp_path).name == expected


@pytest.mark.parametrize(
    ("route", "name", "message"),
    [
        ("missing.safetensors", None, "HTTP 404"),
        ("page.safetensors", None, "HTML page"),
        ("sniffed.safetensors", None, "HTML page"),
        ("garbage.safetensors", None, "downloaded file refused"),
        ("evil", None, "'../../evil.safetensors' is not a plain file name"),
        ("model.ckpt", None, "expected a .safetensors checkpoint"),
        ("model.safetensors", "../up", "is not a plain file name"),
        ("model.safetensors", "has space!", "expected only A-Z"),
    ],
)
def test_refusals_leave_nothing(tmp_path, url, route, name, message):
    with pytest.raises(InputError, match=message) as caught:
        download_model(url(route), tmp_path / "models", name=name)
    assert "\n" not in str(caught.value)
    assert only_files(tmp_path / "models") == []


def test_non_web_url_is_refused(tmp_path):
    with pytest.raises(InputError, match="expected an https://"):
        download_model("file:///etc/passwd", tmp_path)


def test_sha256_mismatch_removes_part(tmp_path, url, model_bytes):
    with pytest.raises(InputError, match=f"expected {'0' * 64}, got ") as caught:
        download_model(url("model.safetensors"), tmp_path, name="m", sha256="0" * 64)
    assert hashlib.sha256(model_bytes).hexdigest() in str(caught.value)
    assert only_files(tmp_path) == []


def test_dropped_connection_keeps_part_and_resumes(tmp_path, url, server, model_bytes):
    with pytest.raises(InputError, match="re-running the same command resumes"):
        download_model(url("drop.safetensors"), tmp_path)
    part = tmp_path / ".drop.safetensors.part"
    assert part.read_bytes() == model_bytes[: len(model_bytes) // 2]
    assert not (tmp_path / "drop.safetensors").exists()

    digest = hashlib.sha256(model_bytes).hexdigest()
    path = download_model(url("drop.safetensors"), tmp_path, sha256=digest)
    assert path.read_bytes() == model_bytes
    assert ("/drop.safetensors", f"bytes={len(model_bytes) // 2}-") in server.requests
    assert not part.exists()
    assert json.loads((tmp_path / "drop.safetensors.json").read_text())["sha256"] == digest


def test_stalled_download_times_out_and_resumes(tmp_path, url, model_bytes):
    with pytest.raises(InputError, match=r"interrupted after \d+ of \d+ bytes \(timed out\)"):
        download_model(url("stall.safetensors"), tmp_path, timeout=0.3)
    assert (tmp_path / ".stall.safetensors.part").exists()
    assert not (tmp_path / "stall.safetensors").exists()
    assert download_model(url("stall.safetensors"), tmp_path).read_bytes() == model_bytes


def test_server_ignoring_range_restarts_from_zero(tmp_path, url, model_bytes):
    (tmp_path / ".n.safetensors.part").write_bytes(b"stale bytes from another file")
    path = download_model(url("norange.safetensors"), tmp_path, name="n")
    assert path.read_bytes() == model_bytes


def test_part_longer_than_file_restarts_after_416(tmp_path, url, model_bytes):
    (tmp_path / ".n.safetensors.part").write_bytes(b"x" * (len(model_bytes) + 10))
    path = download_model(url("model.safetensors"), tmp_path, name="n")
    assert path.read_bytes() == model_bytes


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_host(tmp_path):
    with pytest.raises(InputError, match="cannot connect"):
        download_model(f"http://127.0.0.1:{closed_port()}/m.safetensors", tmp_path, timeout=2)
    assert only_files(tmp_path) == []


def test_cli_prints_path(tmp_path, url, capsys, model_bytes):
    argv = [url("model.safetensors"), "--name", "c", "--source", "CivitAI"]
    assert cli_download.main([*argv, "--models-dir", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(tmp_path / "c.safetensors")
    assert err.splitlines()[-1].startswith("c: 100% ")
    assert json.loads((tmp_path / "c.safetensors.json").read_text())["source_tag"] == "CivitAI"


def test_cli_error_is_one_line(tmp_path, url, capsys):
    argv = [url("missing.safetensors"), "--models-dir", str(tmp_path)]
    assert cli_download.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("t2ibench: error: http://127.0.0.1:")
    assert "HTTP 404" in err


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_progress_printer_log_lines_every_tenth():
    stream, now = io.StringIO(), [0.0]
    printer = ProgressPrinter("m", stream=stream, clock=lambda: now[0])
    for done in range(0, 2_600_000_001, 100_000_000):
        now[0] += 1
        printer(done, 2_600_000_000)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 11
    assert lines[5] == "m: 50% 1.3/2.6 GB 100.0 MB/s"
    assert lines[-1].startswith("m: 100% 2.6/2.6 GB")


def test_progress_printer_redraws_tty_at_most_every_half_second():
    stream, now = FakeTTY(), [0.0]
    printer = ProgressPrinter("m", stream=stream, clock=lambda: now[0])
    for done in range(10):
        now[0] += 0.1
        printer(done * 1000, None)
    printer(10_000, 10_000)
    printer.close()
    text = stream.getvalue()
    assert text.count("\r") == 3  # first call, 0.5 s later, and the final 100 %
    assert text.endswith("\n")
    assert "m: 100% 10.0/10.0 kB" in text
