"""A local HTTP file server for remote-read tests: 127.0.0.1 only, HTTP Range requests, fault modes.

:func:`serve_folder` serves a folder from a thread of this process and always stops it (also
when the test fails). ``mode`` chooses how it answers:

* ``"range"``: a well-behaved static server: ``206 Partial Content`` for ``Range: bytes=a-b``
  (what GDAL's ``/vsicurl/`` asks for), ``200`` for a plain GET, ``404`` for a missing file;
* ``"drop"``: sends the status line and headers of a valid answer, then closes the socket
  without a byte of the body (a connection dropped mid-response);
* ``"drop-data"``: answers requests starting in the first ``keep`` bytes (a GeoTIFF's header)
  normally and drops those starting later like ``"drop"`` (the file opens, reading pixels fails);
* ``"stall"``: sends the headers, then nothing until the server stops (a hung connection: the
  client's timeout must end it);
* ``"no-range"``: ignores ``Range`` and answers ``200`` with the whole file (a server without
  range support).

With ``tls=(cert, key)`` the server speaks HTTPS (:func:`self_signed` makes a certificate for
127.0.0.1; GDAL accepts it with ``GDAL_HTTP_UNSAFESSL=YES``).

A folder gets ``404``, as from object storage without listing rights or a server without
index pages; with ``listing=True`` it gets an Apache-style "Index of" page, which GDAL's
``/vsicurl/`` parses to list the folder.

Every request is recorded in ``server.requests`` as ``(method, path, Range header or None, status)``.

:func:`serve_folder_process` runs the same server in a child process (``python -m
tests.foundation._http_server ROOT MODE``), for reads through pyogrio (vector labels, GDAL's
directory listing of a remote zip): pyogrio holds the GIL while GDAL waits for the answer, so
a server thread of the same process would never answer. Its requests are not recorded.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as GDAL (libcurl) expects from a file server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        pass  # quiet: pytest shows the requests through server.requests when needed

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's name
        self._answer(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        server: Any = self.server
        rel = self.path.split("?", 1)[0].lstrip("/")
        path = (server.root / rel).resolve()
        wanted = self.headers.get("Range")
        if server.listing and path.is_dir() and (path == server.root or server.root in path.parents):
            if not self.path.endswith("/"):  # as Apache does: the folder's address ends with a slash
                server.requests.append((self.command, self.path, wanted, 301))
                self._headers(301, 0, {"Location": self.path + "/"})
                return
            self._index(path, body)
            return
        if not path.is_file() or server.root not in path.parents:
            server.requests.append((self.command, self.path, wanted, 404))
            self._headers(404, 0, extra={"Content-Type": "text/plain"})
            if body:
                self.wfile.write(b"")
            return
        size = path.stat().st_size
        start, end, status = 0, size - 1, 200
        match = _RANGE.match(wanted or "")
        if match and server.mode != "no-range":
            first, last = match.groups()
            if first:
                start, end = int(first), min(int(last) if last else size - 1, size - 1)
            else:  # bytes=-N: the last N bytes
                start, end = max(0, size - int(last)), size - 1
            if start >= size:
                server.requests.append((self.command, self.path, wanted, 416))
                self._headers(416, 0, extra={"Content-Range": f"bytes */{size}"})
                return
            status = 206
        server.requests.append((self.command, self.path, wanted, status))
        extra = {"Content-Type": "image/tiff"}
        if server.mode != "no-range":  # a server without range support says nothing about it
            extra["Accept-Ranges"] = "bytes"
        if status == 206:
            extra["Content-Range"] = f"bytes {start}-{end}/{size}"
        self._headers(status, end - start + 1, extra)
        if server.mode == "drop" or (server.mode == "drop-data" and start >= server.keep):
            self._drop()
            return
        if server.mode == "stall":
            server.stopping.wait(60)
            self._drop()
            return
        if body:
            with path.open("rb") as f:
                f.seek(start)
                self.wfile.write(f.read(end - start + 1))

    def _index(self, folder: Path, body: bool) -> None:
        """An Apache-style "Index of /folder" page (GDAL's /vsicurl/ lists folders from such pages)."""
        server: Any = self.server
        shown = "/" + folder.relative_to(server.root).as_posix().strip(".")
        rows = "".join(
            f'<img src="/icons/{"folder" if p.is_dir() else "unknown"}.gif" alt="[{"DIR" if p.is_dir() else "   "}]"> '
            f'<a href="{p.name}{"/" if p.is_dir() else ""}">{p.name}{"/" if p.is_dir() else ""}</a>'
            f"  01-Jan-2024 00:00  {'-' if p.is_dir() else p.stat().st_size}\n" for p in sorted(folder.iterdir()))
        parent = '<img src="/icons/back.gif" alt="[PARENTDIR]"> <a href="../">Parent Directory</a>  -\n'
        page = (f"<html><head><title>Index of {shown}</title></head><body><h1>Index of {shown}</h1><pre>"
                f"{parent}{rows}</pre></body></html>").encode()
        server.requests.append((self.command, self.path, None, 200))
        self._headers(200, len(page), {"Content-Type": "text/html"})
        if body:
            self.wfile.write(page)

    def _headers(self, status: int, length: int, extra: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(length))
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.flush()

    def _drop(self) -> None:
        """Close the connection after the headers, mid-response."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
        self.connection.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a stuck handler thread never keeps the test process alive
    allow_reuse_address = True


@contextlib.contextmanager
def serve_folder(root: str | os.PathLike[str], mode: str = "range", keep: int = 16384,
                 listing: bool = False, tls: tuple[Path, Path] | None = None) -> Iterator[_Server]:
    """Serve ``root`` on ``http://127.0.0.1:<server.server_port>/`` in a thread until the block ends.

    The server is shut down and its socket closed in a ``finally``, whatever the test does.
    """
    if mode not in ("range", "drop", "drop-data", "stall", "no-range"):
        raise ValueError(f"unknown mode {mode!r}")
    server = _Server(("127.0.0.1", 0), _Handler)
    server.root, server.mode, server.keep = Path(root).resolve(), mode, keep  # type: ignore[attr-defined]
    server.listing = listing  # type: ignore[attr-defined]
    server.scheme = "https" if tls else "http"  # type: ignore[attr-defined]
    if tls is not None:  # the handshake happens in the handler's thread, on the first read
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    server.requests = []  # type: ignore[attr-defined]
    server.stopping = threading.Event()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name=f"http-{mode}", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()  # type: ignore[attr-defined]  # releases stalled handlers
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def url(server: Any, name: str) -> str:
    """``http://127.0.0.1:PORT/name`` (``https://`` from a TLS server) of a file served by ``server``."""
    return f"{getattr(server, 'scheme', 'http')}://127.0.0.1:{server.server_port}/{name}"


def self_signed(folder: Path) -> tuple[Path, Path] | None:
    """(certificate, key) for 127.0.0.1 made with the ``openssl`` command, valid one day; None without openssl."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@dataclass(frozen=True)
class ProcessServer:
    """A server running in a child process: its port (for :func:`url`) and the process."""

    server_port: int
    process: subprocess.Popen


@contextlib.contextmanager
def serve_folder_process(root: str | os.PathLike[str], mode: str = "range",
                         listing: bool = False) -> Iterator[ProcessServer]:
    """:func:`serve_folder` in a child process, terminated (then killed) when the block ends, pass or fail."""
    repo = Path(__file__).resolve().parents[2]
    process = subprocess.Popen([sys.executable, "-m", "tests.foundation._http_server", str(root), mode,
                                "listing" if listing else "no-listing"],
                               stdout=subprocess.PIPE, text=True, cwd=repo,
                               env={**os.environ, "PYTHONPATH": str(repo)})
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # the port, once the socket listens
        if not line.strip().isdigit():
            raise RuntimeError(f"the HTTP server process did not start (exit code {process.poll()})")
        yield ProcessServer(int(line), process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        if process.stdout is not None:
            process.stdout.close()


if __name__ == "__main__":  # python -m tests.foundation._http_server ROOT MODE [no-]listing: serve until terminated
    with serve_folder(sys.argv[1], mode=sys.argv[2], listing=sys.argv[3] == "listing") as running:
        print(running.server_port, flush=True)
        threading.Event().wait()
