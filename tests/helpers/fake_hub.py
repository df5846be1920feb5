"""A loopback HTTP server that serves model folders in the Hugging Face hub's URL layout.

Enough of the hub for ``huggingface_hub.snapshot_download`` and ``verify_repo_checksums``:
``/api/models/REPO/revision/REV`` (repo info), ``/api/models/REPO/tree/REV`` (the file
listing with git blob ids and, for weights, LFS sha256), and ``HEAD``/``GET
/REPO/resolve/REV/PATH`` (with ``Range`` for resumed downloads). Point ``HF_ENDPOINT`` at
``FakeHub.url``.

Faults, to test failed pulls: ``cut_after[path] = n`` drops the connection after ``n`` bytes
of that file, on every request until the entry is removed (``cut_once``: on the next request
only), and ``corrupt.add(path)`` serves altered bytes of
the right length (the listing keeps the true checksum).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

COMMIT = "0123456789abcdef0123456789abcdef01234567"
_LFS_SUFFIXES = (".safetensors", ".bin")


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    """Serve ``repos`` (hub id -> local folder) on 127.0.0.1 until ``close()``."""

    def __init__(self, repos: dict[str, Path]) -> None:
        self.repos = {rid: Path(folder) for rid, folder in repos.items()}
        self.cut_after: dict[str, int] = {}
        self.cut_once: dict[str, int] = {}
        self.corrupt: set[str] = set()
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_HEAD(self):
                hub._handle(self, body=False)

            def do_GET(self):
                hub._handle(self, body=True)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeHub:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- files -----------------------------------------------------------------------------------
    def _files(self, repo: str) -> dict[str, Path]:
        root = self.repos[repo]
        return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}

    def _entry(self, rel: str, path: Path) -> dict:
        data = path.read_bytes()
        entry = {"type": "file", "oid": git_blob_sha1(data), "size": len(data), "path": rel}
        if rel.endswith(_LFS_SUFFIXES):
            entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        return entry

    # -- requests --------------------------------------------------------------------------------
    def _handle(self, req: BaseHTTPRequestHandler, *, body: bool) -> None:
        path = unquote(urlparse(req.path).path)
        self.requests.append(f"{req.command} {path}" + (f" {req.headers['Range']}" if req.headers.get("Range") else ""))
        m = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/(revision|tree)/([^/]+)(/.*)?)?", path)
        if m:
            repo, what = m.group(1), m.group(2) or "revision"
            if repo not in self.repos:
                return self._json(req, {"error": "Repository not found"}, 404, {"X-Error-Code": "RepoNotFound"})
            files = self._files(repo)
            if what == "revision":
                return self._json(
                    req, {"id": repo, "modelId": repo, "sha": COMMIT, "siblings": [{"rfilename": f} for f in files]}
                )
            return self._json(req, [self._entry(rel, p) for rel, p in files.items()])
        m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if not m or m.group(1) not in self.repos:
            return self._json(req, {"error": "Repository not found"}, 404, {"X-Error-Code": "RepoNotFound"})
        repo, rel = m.group(1), m.group(3)
        files = self._files(repo)
        if rel not in files:
            return self._json(req, {"error": "Entry not found"}, 404, {"X-Error-Code": "EntryNotFound"})
        data = files[rel].read_bytes()
        entry = self._entry(rel, files[rel])
        etag = entry["lfs"]["oid"] if "lfs" in entry else entry["oid"]
        if body and rel in self.corrupt:
            data = bytes(b ^ 0xFF for b in data[:16]) + data[16:]
        start = 0
        rng = req.headers.get("Range")
        if rng and (rm := re.fullmatch(r"bytes=(\d+)-", rng.strip())):
            start = int(rm.group(1))
        status = 206 if start else 200
        req.send_response(status)
        req.send_header("X-Repo-Commit", COMMIT)
        req.send_header("ETag", f'"{etag}"')
        if "lfs" in entry:
            req.send_header("X-Linked-Etag", f'"{etag}"')
            req.send_header("X-Linked-Size", str(len(data)))
        req.send_header("Content-Length", str(len(data) - start))
        if start:
            req.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        req.send_header("Accept-Ranges", "bytes")
        req.end_headers()
        if not body:
            return
        payload = data[start:]
        cut = self.cut_once.pop(rel, None) or self.cut_after.get(rel)
        if cut is not None:
            req.wfile.write(payload[:cut])
            req.wfile.flush()
            req.close_connection = True
            try:
                req.connection.shutdown(2)
            except OSError:
                pass
            return
        req.wfile.write(payload)

    @staticmethod
    def _json(req: BaseHTTPRequestHandler, obj, status: int = 200, headers: dict | None = None) -> None:
        raw = json.dumps(obj).encode()
        req.send_response(status)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(raw)))
        req.send_header("X-Repo-Commit", COMMIT)
        for k, v in (headers or {}).items():
            req.send_header(k, v)
        req.end_headers()
        if req.command != "HEAD":
            req.wfile.write(raw)
