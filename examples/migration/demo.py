"""``make demo``: the migration example on ASGI, against asgiref and a2wsgi.

1. Starts ``asgigreen serve examples.migration.app:application``: the WSGI
   app of examples/migration/app.py, unchanged, in a gevent-patched process
   under uvicorn.
2. Starts the same app under the same uvicorn, in the same kind of patched
   process, behind asgiref's ``WsgiToAsgi`` and behind a2wsgi's
   ``WSGIMiddleware``: what a team would try first.
3. Drives each with the same load (100 keep-alive clients x 5 requests to
   ``/items/42``, 3 rounds, from a separate process) and prints a table.
4. Leaves the asgigreen server running and prints its URL until Ctrl-C;
   without a terminal, with ``CI`` set or with ``DEMO_NO_WAIT=1`` it stops
   after the table.

Run from the repository root: ``python examples/migration/demo.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
LOAD = ROOT / "benchmarks" / "_load.py"
PATH = "/items/42"
CLIENTS, REQUESTS, ROUNDS = 100, 5, 3
START_TIMEOUT = 60.0


def serve_baseline(library: str, port: int) -> None:
    """Child (gevent-patched by its command line): uvicorn + a baseline adapter."""
    import uvicorn

    from examples.migration.app import application

    if library == "asgiref":
        from asgiref.wsgi import WsgiToAsgi

        asgi: Any = WsgiToAsgi(application)
    else:
        from a2wsgi import WSGIMiddleware

        asgi = WSGIMiddleware(application)
    uvicorn.run(asgi, host="127.0.0.1", port=port, log_level="warning", loop="asyncio")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self, label: str, argv: list[str], port: int, env: dict[str, str]) -> None:
        self.label = label
        self.port = port
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited:\n{self.output()[-2000:]}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock,
            ):
                sock.sendall(f"GET {PATH} HTTP/1.1\r\nHost: demo\r\n\r\n".encode())
                if sock.recv(64).startswith(b"HTTP/1.1"):
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{self.label} did not start:\n{self.output()[-2000:]}")

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.log.close()


def load(port: int) -> dict[str, Any]:
    argv = [
        sys.executable, str(LOAD), "--port", str(port), "--path", PATH,
        "--clients", str(CLIENTS), "--requests", str(REQUESTS), "--timeout", "60",
    ]  # fmt: skip
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return result
    except (subprocess.TimeoutExpired, IndexError, ValueError) as exc:
        return {"ok": 0, "failed": CLIENTS * REQUESTS, "rps": 0.0, "first_error": repr(exc)}


HEADER = f"{'server (uvicorn, patched)':28}  {'ok':>5}  {'failed':>6}  {'req/s':>6}  " + (
    f"{'p50 ms':>6}  {'p99 ms':>6}"
)
RULE = "  ".join("-" * width for width in (28, 5, 6, 6, 6, 6))


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def waiting_allowed() -> bool:
    if os.environ.get("DEMO_NO_WAIT") == "1" or os.environ.get("CI"):
        return False
    return sys.stdin is not None and sys.stdin.isatty() and sys.stdout.isatty()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--serve-baseline", choices=["asgiref", "a2wsgi"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_baseline:
        serve_baseline(args.serve_baseline, args.port)
        return 0

    data = tempfile.mkdtemp(prefix="asgigreen-demo-")
    env = {k: v for k, v in os.environ.items() if k != "ASGIGREEN_HUB"}
    env["PYTHONPATH"] = str(ROOT)
    env["MIGRATION_DB"] = os.path.join(data, "items.sqlite3")
    print("asgigreen demo: the WSGI app of examples/migration/app.py (SQLite, 50 ms of I/O")
    print("per request), unchanged, served on ASGI by uvicorn in gevent-patched processes.")
    print()
    port = free_port()
    servers = {
        "asgigreen serve": Server(
            "asgigreen serve",
            [sys.executable, "-m", "asgigreen", "serve", "examples.migration.app:application",
             "--port", str(port), "--log-level", "warning"],
            port,
            env,
        ),
    }  # fmt: skip
    for library, label in (("asgiref", "asgiref WsgiToAsgi"), ("a2wsgi", "a2wsgi WSGIMiddleware")):
        baseline_port = free_port()
        argv = [
            sys.executable, "-m", "gevent.monkey", str(Path(__file__).resolve()),
            "--serve-baseline", library, "--port", str(baseline_port),
        ]  # fmt: skip
        servers[label] = Server(label, argv, baseline_port, env)
    keep: Server | None = None
    try:
        for server in servers.values():
            server.wait_ready()
            load(server.port)  # warm-up
        print(
            f"Load: {CLIENTS} keep-alive clients x {REQUESTS} requests to {PATH}, "
            f"{ROUNDS} rounds, from a separate process; req/s: median round"
        )
        results: dict[str, list[dict[str, Any]]] = {label: [] for label in servers}
        for _ in range(ROUNDS):
            for label, server in servers.items():
                results[label].append(load(server.port))
        print()
        print(HEADER)
        print(RULE)
        errors = []
        for label, rounds in results.items():
            ordered = sorted(rounds, key=lambda r: r["rps"])
            median = ordered[len(ordered) // 2]
            ok = sum(r["ok"] for r in rounds)
            failed = sum(r["failed"] for r in rounds)
            rps = statistics.median(r["rps"] for r in rounds)
            p50, p99 = _ms(median.get("p50_ms")), _ms(median.get("p99_ms"))
            print(f"{label:28}  {ok:>5}  {failed:>6}  {rps:>6.0f}  {p50:>6}  {p99:>6}")
            error = next((r["first_error"] for r in rounds if r.get("first_error")), None)
            if error:
                errors.append(f"  {label}: first failure: {error}")
        for line in errors:
            print(line)
        keep = servers.pop("asgigreen serve")
        for server in servers.values():
            server.stop()
        servers.clear()
        print()
        url = f"http://127.0.0.1:{keep.port}"
        if not waiting_allowed():
            print(f"asgigreen serve was on {url}; stopping it (no terminal, CI or DEMO_NO_WAIT=1).")
            return 0
        print(f"asgigreen serve is still up: {url}{PATH}  (try {url}/ too)")
        print("Press Ctrl-C to stop it.")
        # Ctrl-C must reach us even if our parent started us with SIGINT ignored.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        while keep.proc.poll() is None:
            time.sleep(0.5)
        print(f"asgigreen serve exited ({keep.proc.returncode}):\n{keep.output()[-2000:]}")
        return 1
    except KeyboardInterrupt:
        print("\nstopping.")
        return 0
    finally:
        for server in servers.values():
            server.stop()
        if keep is not None:
            keep.stop()
        with contextlib.suppress(OSError):
            for name in os.listdir(data):
                os.unlink(os.path.join(data, name))
            os.rmdir(data)


if __name__ == "__main__":
    sys.exit(main())
