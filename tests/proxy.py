"""A real MLflow server on loopback, and an HTTP proxy on loopback between genie and it for fault tests: it answers
503 for requests whose path contains one of `failing` (an outage of one endpoint), and, for a seeded share of the
rest, 503 or a stall before forwarding; everything else is forwarded as it came. It counts what it did."""
import random
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

from tests.ports import free_port


@dataclass
class Faults:
    url: str = ""
    failing: tuple[str, ...] = ()  # path parts answered 503 while set: an outage
    unavailable: float = 0.0  # the share of other requests answered 503 (a client's retries absorb it)
    stalled: float = 0.0  # the share stalled before forwarding
    stall: tuple[float, float] = (0.2, 1.0)  # seconds
    seed: int = 0
    counts: Counter = field(default_factory=Counter)
    refused: list[str] = field(default_factory=list)


@contextmanager
def faulty(upstream: str, failing: tuple[str, ...] = (), **shares):
    """Yields the proxy's Faults (its URL, what it refused and counted); change them while it runs."""
    faults = Faults(failing=failing, **shares)
    draw, lock = random.Random(faults.seed), threading.Lock()

    class Proxy(BaseHTTPRequestHandler):
        def forward(self):
            with lock:
                roll, pause = draw.random(), draw.uniform(*faults.stall)
            if any(part in self.path for part in faults.failing) or roll < faults.unavailable:
                faults.refused.append(self.path)
                faults.counts["503"] += 1
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if roll < faults.unavailable + faults.stalled:
                faults.counts["stalls"] += 1
                time.sleep(pause)
            faults.counts["forwarded"] += 1
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
            request = urllib.request.Request(upstream + self.path, body, headers, method=self.command)
            try:
                with urllib.request.urlopen(request, timeout=120) as answer:
                    status, content, kind = answer.status, answer.read(), answer.headers.get("Content-Type", "")
            except urllib.error.HTTPError as err:
                status, content, kind = err.code, err.read(), err.headers.get("Content-Type", "")
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = forward

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    faults.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield faults
    finally:
        server.shutdown()


@contextmanager
def tracking_server(store: Path, artifacts: Path | None = None):
    """`mlflow server` on a free loopback port over the SQLite store `store` (artifacts proxied into `artifacts`,
    where given); yields its URL."""
    port = free_port()
    served = ["--serve-artifacts", "--artifacts-destination", str(artifacts)] if artifacts else []
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{store}",
                               *served, "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url, deadline = f"http://127.0.0.1:{port}", time.time() + 120
    while time.time() < deadline and server.poll() is None:
        try:
            if requests.get(f"{url}/health", timeout=2).ok:
                break
        except requests.ConnectionError:
            time.sleep(0.5)
    try:
        yield url
    finally:
        server.terminate()
        server.wait(30)
