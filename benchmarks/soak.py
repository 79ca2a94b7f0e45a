"""Soak: steady keep-alive load for minutes, server memory sampled every 10 s.

One command, one table::

    python benchmarks/soak.py               # 10 minutes (+ ~15 s to start and stop)
    python benchmarks/soak.py --minutes 2
    python benchmarks/soak.py --quick       # 1 minute, 20 s warm-up

Four servers run side by side on 127.0.0.1, each under the same steady load
(``--clients`` keep-alive connections, ``--rate`` requests a second each),
for the whole window, so that a busy moment of the machine lands on all:

=====  =========  ====================================================================
app    library    server
=====  =========  ====================================================================
wsgi   asgigreen  ``asgigreen serve soak:wsgi_app`` (gevent-patched, ``WsgiToAsgi``)
wsgi   asgiref    plain uvicorn serving asgiref's ``WsgiToAsgi(wsgi_app)``
asgi   asgigreen  ``asgigreen serve --factory soak:asgi_asgigreen``
asgi   asgiref    plain uvicorn serving the same ASGI app on asgiref's bridges
=====  =========  ====================================================================

The WSGI app answers a small JSON body; the ASGI app makes 20
``sync_to_async`` calls per request (thread-sensitive and not, in turn).
Every server answers ``/_soak/stats`` itself: its RSS (``VmRSS``), its
``len(gc.get_objects())`` after a collection, its native threads and the
requests it served. The load comes from one process per server
(``_load.py``'s keep-alive clients, in 5 s rounds paced to the rate), so
none of its work lands in a server.

Growth is measured from the first sample at or after the warm-up
(``--warmup``, 60 s by default) to the last one. Target: asgigreen's RSS
grows less than 5 MB over the window, with no failed request; asgiref's
rows are the reference on the same load.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import http.client
import json
import os
import shlex
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))

from _chart import COLOURS, Line, LineChart, command_line  # noqa: E402

PYTHON = sys.executable
STATS_PATH = "/_soak/stats"
TARGET_MB = 5.0
#: sync_to_async calls per request of the ASGI app.
BRIDGE_CALLS = 20
#: Seconds per load round (connections are kept alive within a round).
ROUND_SECONDS = 5.0


# -- the applications (imported as ``soak`` by the servers) ----------------------------

_served = 0
_served_lock = threading.Lock()


def _count_request() -> None:
    global _served
    with _served_lock:
        _served += 1


def _stats() -> bytes:
    gc.collect()
    rss_kb = -1
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
    return json.dumps(
        {
            "pid": os.getpid(),
            "rss_kb": rss_kb,
            "objects": len(gc.get_objects()),
            "threads": len(os.listdir("/proc/self/task")),
            "served": _served,
        }
    ).encode()


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """A small JSON answer per request; ``/_soak/stats`` for the soak's samples."""
    if environ.get("PATH_INFO") == STATS_PATH:
        body = _stats()
    else:
        _count_request()
        body = json.dumps({"ok": True, "query": environ.get("QUERY_STRING", "")}).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def _double(n: int) -> int:
    return 2 * n


def make_asgi_app(library: str) -> Any:
    """The ASGI app, on ``library``'s ``sync_to_async`` (imported only now)."""
    if library == "asgiref":
        from asgiref.sync import sync_to_async
    else:
        from asgigreen.sync import sync_to_async

    sensitive = sync_to_async(_double)
    plain = sync_to_async(_double, thread_sensitive=False)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        if scope["path"] == STATS_PATH:
            body = _stats()
        else:
            _count_request()
            total = 0
            for i in range(BRIDGE_CALLS):
                total += await (sensitive if i % 2 == 0 else plain)(i)
            body = json.dumps({"ok": True, "total": total}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


def asgi_asgigreen() -> Any:
    """Factory for ``asgigreen serve --factory soak:asgi_asgigreen``."""
    return make_asgi_app("asgigreen")


def _serve_uvicorn(app: str, fd: int) -> None:
    """Child: plain uvicorn serving the asgiref variant of ``app`` on an inherited socket."""
    import uvicorn

    if app == "wsgi":
        from asgiref.wsgi import WsgiToAsgi

        application: Any = WsgiToAsgi(wsgi_app)
    else:
        application = make_asgi_app("asgiref")
    config = uvicorn.Config(
        application, log_level="warning", access_log=False, loop="asyncio", lifespan="auto"
    )
    uvicorn.Server(config).run(sockets=[socket.socket(fileno=fd)])


# -- load ----------------------------------------------------------------------------------


def _load_worker(port: int, path: str, clients: int, rate: float, seconds: float) -> None:
    """Child: paced rounds of keep-alive load until ``seconds`` have passed; one JSON line."""
    from _load import run_load

    per_client = max(1, round(rate * ROUND_SECONDS / clients))
    totals: dict[str, Any] = {"ok": 0, "failed": 0, "rounds": 0, "first_error": None}
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        began = time.monotonic()
        result = run_load(port, path, clients, per_client, timeout=60)
        totals["ok"] += result["ok"]
        totals["failed"] += result["failed"]
        totals["rounds"] += 1
        if result["first_error"] and totals["first_error"] is None:
            totals["first_error"] = result["first_error"]
        pause = per_client * clients / rate - (time.monotonic() - began)
        left = seconds - (time.monotonic() - started)
        if pause > 0 and left > 0:
            time.sleep(min(pause, left))
    print(json.dumps(totals), flush=True)


# -- the soak -----------------------------------------------------------------------------------


@dataclass
class Target:
    app: str  # wsgi or asgi
    library: str  # asgigreen or asgiref
    server: Any = None
    load: subprocess.Popen[str] | None = None
    samples: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    sample_errors: int = 0
    totals: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.app}/{self.library}"

    @property
    def server_name(self) -> str:
        return "asgigreen serve" if self.library == "asgigreen" else "uvicorn (plain)"

    def start(self) -> None:
        from wsgi import Server

        if self.library == "asgigreen":
            # The command itself, as a user runs it (it patches with gevent).
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            sock.close()
            target = "soak:wsgi_app" if self.app == "wsgi" else "soak:asgi_asgigreen"
            argv = [PYTHON, "-m", "asgigreen", "serve", target, "--app-dir", str(_HERE)]
            if self.app == "asgi":
                argv.append("--factory")
            argv += ["--port", str(port), "--log-level", "warning"]
            self.server = Server(self.label, argv, port)
        else:
            listening = socket.socket()
            listening.bind(("127.0.0.1", 0))
            listening.listen(2048)
            listening.set_inheritable(True)
            port = listening.getsockname()[1]
            argv = [PYTHON, str(Path(__file__)), "--serve-uvicorn", self.app]
            argv += ["--fd", str(listening.fileno())]
            try:
                self.server = Server(self.label, argv, port, (listening.fileno(),))
            finally:
                listening.close()

    def sample(self, at: float) -> None:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
            try:
                conn.request("GET", STATS_PATH)
                stats = json.loads(conn.getresponse().read())
            finally:
                conn.close()
        except (OSError, ValueError, http.client.HTTPException):
            self.sample_errors += 1
            return
        self.samples.append((at, stats))


def _mb(kb: float) -> str:
    return f"{kb / 1024:.1f}"


def _sample_line(at: float, targets: list[Target]) -> str:
    cells = []
    for target in targets:
        if target.samples and target.samples[-1][0] == at:
            stats = target.samples[-1][1]
            cells.append(
                f"{target.label} {_mb(stats['rss_kb'])} MB {stats['objects']} obj "
                f"{stats['served']} req"
            )
        else:
            cells.append(f"{target.label} (no answer)")
    return f"  t={at:5.0f} s  " + " | ".join(cells)


def _verdict(target: Target, growth_kb: float | None, failed: int) -> str:
    if target.library != "asgigreen":
        return "(ref: fails)" if failed or target.sample_errors else "(reference)"
    if growth_kb is None:
        return "FAIL (no samples)"
    if failed or target.sample_errors:
        return "FAIL (errors)"
    return "PASS" if growth_kb < TARGET_MB * 1024 else "FAIL"


def run(args: argparse.Namespace) -> int:
    from _timing import Table

    seconds = args.minutes * 60
    targets = [Target(app, library) for app in args.apps for library in args.libraries]
    print(f"$ {shlex.join([sys.executable, *sys.argv])}")
    print(
        f"soak: {args.minutes:g} min of load on {len(targets)} servers side by side, "
        f"{args.clients} keep-alive clients x {args.rate:g} req/s each, samples every "
        f"{args.interval:g} s, growth measured after a {args.warmup:g} s warm-up; "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs",
        flush=True,
    )
    try:
        for target in targets:
            target.start()
        for target in targets:
            target.server.wait_ready(STATS_PATH)
        started = time.monotonic()
        for target in targets:
            path = "/soak?n=1"
            argv = [PYTHON, str(Path(__file__)), "--load-worker", "--port", str(target.server.port)]
            argv += ["--path", path, "--clients", str(args.clients), "--rate", str(args.rate)]
            argv += ["--seconds", str(seconds)]
            target.load = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        at = 0.0
        while True:
            for target in targets:
                target.sample(at)
            print(_sample_line(at, targets), flush=True)
            if at >= seconds:
                break
            at = min(at + args.interval, seconds)
            time.sleep(max(0.0, started + at - time.monotonic()))
        for target in targets:
            assert target.load is not None
            err = ""
            try:
                out, err = target.load.communicate(timeout=90)
                target.totals = json.loads(out.strip().splitlines()[-1])
            except (subprocess.TimeoutExpired, IndexError, ValueError) as exc:
                target.load.kill()
                why = f"load worker: {exc!r} {err[-300:]}"
                target.totals = {"ok": 0, "failed": 0, "first_error": why}
            alive = target.server.proc.poll() is None
            if not alive:
                target.totals["first_error"] = f"server died: {target.server.output(500)}"
    finally:
        for target in targets:
            if target.load is not None and target.load.poll() is None:
                target.load.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    target.load.wait(10)
            if target.server is not None:
                target.server.stop()

    table = Table(
        [
            ("app / library", 15),
            ("server", 15),
            ("requests", 9),
            ("failed", 6),
            ("RSS@warm MB", 11),
            ("RSS end MB", 10),
            ("growth MB", 9),
            ("objs@warm", 9),
            ("objs end", 9),
            ("growth", 8),
            ("threads", 8),
            ("verdict", 12),
        ]
    )
    print()
    print(
        f"growth from the first sample at or after {args.warmup:g} s to the last "
        f"(at {seconds:.0f} s); target for asgigreen: RSS growth < {TARGET_MB:g} MB, "
        "no failed request"
    )
    print(table.header())
    failed_any = False
    report: list[dict[str, Any]] = []
    for target in targets:
        after = [(at, stats) for at, stats in target.samples if at >= args.warmup]
        first = after[0][1] if after else None
        last = after[-1][1] if after else None
        growth_kb = last["rss_kb"] - first["rss_kb"] if first and last else None
        objects = last["objects"] - first["objects"] if first and last else None
        failed = int(target.totals.get("failed", 0))
        verdict = _verdict(target, growth_kb, failed)
        failed_any = failed_any or verdict.startswith("FAIL")
        threads = f"{first['threads']}->{last['threads']}" if first and last else "-"
        print(
            table.row(
                [
                    target.label,
                    target.server_name,
                    str(target.totals.get("ok", 0)),
                    str(failed),
                    _mb(first["rss_kb"]) if first else "-",
                    _mb(last["rss_kb"]) if last else "-",
                    f"{growth_kb / 1024:+.1f}" if growth_kb is not None else "-",
                    str(first["objects"]) if first else "-",
                    str(last["objects"]) if last else "-",
                    f"{objects:+d}" if objects is not None else "-",
                    threads,
                    verdict,
                ]
            )
        )
        report.append(
            {
                "app": target.app,
                "library": target.library,
                "totals": target.totals,
                "sample_errors": target.sample_errors,
                "samples": target.samples,
                "rss_growth_kb": growth_kb,
                "objects_growth": objects,
                "verdict": verdict,
            }
        )
    for target in targets:
        error = target.totals.get("first_error")
        if error or target.sample_errors:
            print(f"  {target.label}: first error {error!r}; {target.sample_errors} samples lost")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    if args.svg:
        print(f"chart: {_chart(targets, args).write(args.svg)}")
    return 1 if failed_any and args.check else 0


def _chart(targets: list[Target], args: argparse.Namespace) -> LineChart:
    """Each server's RSS growth since the warm-up, sample by sample, against the target."""
    lines = []
    footnotes = []
    for target in targets:
        after = [(at, stats["rss_kb"]) for at, stats in target.samples if at >= args.warmup]
        base = after[0][1] if after else 0
        server = "asgigreen serve" if target.library == "asgigreen" else "asgiref, plain uvicorn"
        name = f"{target.app.upper()} app, {server}"
        failed = int(target.totals.get("failed", 0))
        requests = int(target.totals.get("ok", 0)) + failed
        footnotes.append(
            f"{name}: {requests:,} requests, {failed:,} failed"
            + (f", {target.sample_errors} samples lost" if target.sample_errors else "")
            + (
                f", RSS {after[-1][1] / 1024 - base / 1024:+.1f} MB from {base / 1024:.1f} MB"
                if after
                else ", no samples after the warm-up"
            )
            + "."
        )
        if failed:
            name += f" ({failed:,} failed)"
        lines.append(
            Line(
                name,
                COLOURS[target.library],
                [(at, (kb - base) / 1024) for at, kb in after],
                dashed=target.app == "asgi",
            )
        )
    command = command_line(["python", "benchmarks/soak.py"], sys.argv[1:])
    return LineChart(
        title="Soak: server memory under steady keep-alive load, asgigreen serve and asgiref",
        x_label="seconds of load",
        y_label=f"RSS growth since the sample at {args.warmup:g} s (end of warm-up), MB",
        lines=lines,
        subtitle=[
            f"{args.minutes:g} min, {args.clients} keep-alive clients at {args.rate:g} req/s per "
            f"server, all servers side by side; each reports its own VmRSS every "
            f"{args.interval:g} s. The ASGI app makes {BRIDGE_CALLS} sync_to_async calls a "
            f"request. CPython {sys.version.split()[0]}, {os.cpu_count()} CPUs.",
            f"$ {command}  ({time.strftime('%Y-%m-%d')})",
        ],
        marks=[(TARGET_MB, f"target for asgigreen: < {TARGET_MB:g} MB")],
        footnotes=footnotes,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Steady keep-alive load on asgigreen serve and on asgiref, memory sampled"
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="load window (default 10)")
    parser.add_argument(
        "--quick", action="store_true", help="1 minute with a 20 s warm-up, to try it"
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="seconds before growth is measured (default 60, or a third of a shorter window)",
    )
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--clients", type=int, default=10, help="keep-alive clients per server")
    parser.add_argument("--rate", type=float, default=100.0, help="requests/s per server")
    parser.add_argument(
        "--apps", default="wsgi,asgi", help="comma-separated: wsgi, asgi (default both)"
    )
    parser.add_argument(
        "--libraries", default="asgigreen,asgiref", help="comma-separated (default both)"
    )
    parser.add_argument("--json", help="also write every sample and figure to this file")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    parser.add_argument(
        "--svg", metavar="PATH", help="also draw each server's RSS over time as an SVG chart here"
    )
    # The script's own child processes.
    parser.add_argument("--serve-uvicorn", choices=["wsgi", "asgi"], help=argparse.SUPPRESS)
    parser.add_argument("--fd", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--load-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_uvicorn:
        _serve_uvicorn(args.serve_uvicorn, args.fd)
        return 0
    if args.load_worker:
        _load_worker(args.port, args.path, args.clients, args.rate, args.seconds)
        return 0
    if args.quick:
        args.minutes = 1.0
        if args.warmup is None:
            args.warmup = 20.0
    if args.warmup is None:
        args.warmup = min(60.0, args.minutes * 60 / 3)
    if args.svg and not args.svg.lower().endswith(".svg"):
        parser.error(f"--svg {args.svg}: the chart is an SVG document; name it *.svg")
    args.apps = [a for a in args.apps.split(",") if a]
    args.libraries = [lib for lib in args.libraries.split(",") if lib]
    for name in args.apps:
        if name not in ("wsgi", "asgi"):
            parser.error(f"unknown app {name!r}")
    for name in args.libraries:
        if name not in ("asgigreen", "asgiref"):
            parser.error(f"unknown library {name!r}")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
