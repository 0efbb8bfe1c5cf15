#!/usr/bin/env python3
"""Proxy memory per client connection: idle, and after one request on each.

Starts a control plane (temporary SQLite database), a keep-alive origin and one proxy
(`--workers 1`) on free 127.0.0.1 ports, configures one route, then reads the proxy's VmRSS:
at rest, with N idle client connections open, and after one request on each of them (one at
a time, so a single upstream connection serves them all and only client-side state grows).
Every process it starts is stopped by its PID; the run is bounded (about 20 s for N = 1,000).

    bench/conn-memory.py [--connections N] [--bin-dir target-bench/release]

Build first: `CARGO_TARGET_DIR=target-bench cargo build --release -p proxy -p control-plane`.
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ORIGIN = """
import http.server, socketserver, sys
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def do_GET(self):
        self.send_response(200)
        self.send_header('content-length', '2')
        self.end_headers()
        self.wfile.write(b'ok')
    def log_message(self, *args):
        pass
class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
Server(('127.0.0.1', int(sys.argv[1])), Handler).serve_forever()
"""


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(url, what, seconds=15):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(url, timeout=1).status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit(f"conn-memory: {what} did not answer 200 on {url}")


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def put(admin, path, body):
    request = urllib.request.Request(
        f"http://127.0.0.1:{admin}{path}",
        data=json.dumps(body).encode(),
        method="PUT",
        headers={"content-type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=5)


def one_request(sock):
    sock.sendall(b"GET / HTTP/1.1\r\nhost: bench\r\n\r\n")
    data = b""
    while not data.endswith(b"ok"):
        chunk = sock.recv(4096)
        if not chunk:
            return False
        data += chunk
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1000)
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--bin-dir", default=os.path.join(here, "..", "target-bench", "release"))
    args = parser.parse_args()
    admin, xds, listen, proxy_admin, origin_port = (free_port() for _ in range(5))
    started = []
    work = tempfile.mkdtemp(prefix="conn-memory-")
    try:
        started.append(subprocess.Popen([sys.executable, "-c", ORIGIN, str(origin_port)]))
        started.append(subprocess.Popen(
            [os.path.join(args.bin_dir, "control-plane"), "--database-url",
             f"sqlite://{work}/cp.db", "--admin-addr", f"127.0.0.1:{admin}",
             "--xds-addr", f"127.0.0.1:{xds}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_for(f"http://127.0.0.1:{admin}/healthz", "the control plane")
        put(admin, "/api/v1/clusters/origin", {"endpoints": [{"address": f"127.0.0.1:{origin_port}"}]})
        put(admin, "/api/v1/routes/all", {"match": {"path_prefix": "/"}, "cluster": "origin"})
        proxy = subprocess.Popen(
            [os.path.join(args.bin_dir, "proxy"), "--control-plane", f"http://127.0.0.1:{xds}",
             "--listen", f"127.0.0.1:{listen}", "--admin-addr", f"127.0.0.1:{proxy_admin}",
             "--workers", "1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "warn"})
        started.append(proxy)
        wait_for(f"http://127.0.0.1:{listen}/", "the proxy")
        time.sleep(1)
        at_rest = rss_kb(proxy.pid)
        clients = [socket.create_connection(("127.0.0.1", listen), timeout=5)
                   for _ in range(args.connections)]
        time.sleep(2)  # every connection accepted and parked in its read
        idle = rss_kb(proxy.pid)
        failed = sum(not one_request(sock) for sock in clients)
        time.sleep(1)
        used = rss_kb(proxy.pid)
        n = args.connections
        print(f"proxy RSS at rest: {at_rest} KB")
        print(f"{n} idle client connections: +{(idle - at_rest) * 1024 / n:.0f} B each")
        print(f"after one request on each: +{(used - at_rest) * 1024 / n:.0f} B each "
              f"(RSS {used} KB; {failed} requests failed)")
        for sock in clients:
            sock.close()
    finally:
        for process in reversed(started):
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


if __name__ == "__main__":
    main()
