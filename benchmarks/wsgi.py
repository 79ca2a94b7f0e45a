"""WSGI <-> ASGI adapters under real servers: asgigreen against a2wsgi and asgiref.

One command, every figure from the same run::

    python benchmarks/wsgi.py            # about 2 minutes
    python benchmarks/wsgi.py --quick    # fewer rounds, 256 MiB streams

Sections (see benchmarks/README.rst for the method):

1. uvicorn in a gevent-patched process serving a WSGI application that waits
   50 ms on I/O per request, 100 keep-alive clients x 5 requests: asgigreen
   (``asgigreen serve``) against a2wsgi's ``WSGIMiddleware`` and asgiref's
   ``WsgiToAsgi`` under plain uvicorn. Target: zero errors, >= 1200 req/s.
2. uvicorn in a plain process, a WSGI application doing no I/O, 100 clients
   x 20 requests. Target: asgigreen's req/s at least a2wsgi's.
3. 1 GiB streamed through ``WsgiToAsgi`` each way, in a fresh process each.
   Target: peak RSS growth under 50 MB.
4. ``gunicorn -k gevent``, 1 worker, an ASGI view awaiting 50 ms, 100
   clients x 5 requests: asgigreen's ``AsgiToWsgi`` against a2wsgi's
   ``ASGIMiddleware``. Target: zero errors, >= 1200 req/s.

Every server and load generator is a process of its own on 127.0.0.1,
killed at the end whatever happens; every round has a timeout.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))

from _chart import COLOURS, Bar, BarChart, Group, Series, command_line  # noqa: E402
from _timing import Table, read_status_kb, reset_peak_rss  # noqa: E402

PYTHON = sys.executable
ROOT = _HERE.parent
START_TIMEOUT = 60.0
ROUND_TIMEOUT = 60.0

IO_TARGET_RPS = 1200.0
STREAM_TARGET_MB = 50.0
CHUNK = 64 * 1024
#: The chart's name for a measurement with no adapter in the way.
FLOOR = "no adapter (reference)"


# -- processes -------------------------------------------------------------------------


def _bin(name: str) -> str:
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else name


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening_socket() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ASGIGREEN_HUB", "PYTHONPATH")}
    env["PYTHONPATH"] = str(_HERE)
    return env


class Server:
    """A server subprocess in its own process group, output in a temporary file."""

    def __init__(self, label: str, argv: list[str], port: int, pass_fds: tuple[int, ...] = ()):
        self.label = label
        self.port = port
        self.log = tempfile.NamedTemporaryFile(prefix="bench-wsgi-", suffix=".log", delete=False)  # noqa: SIM115
        self.proc = subprocess.Popen(
            argv,
            env=_env(),
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            pass_fds=pass_fds,
            start_new_session=True,
        )

    def output(self, tail: int = 2000) -> str:
        try:
            return Path(self.log.name).read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def wait_ready(self, path: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label}: server exited: {self.output(500)}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
                    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                    if sock.recv(64).startswith(b"HTTP/1.1"):
                        return
            except OSError as exc:
                last = exc
            time.sleep(0.1)
        raise RuntimeError(f"{self.label}: not ready ({last!r}): {self.output(500)}")

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        self.log.close()
        with contextlib.suppress(OSError):
            os.unlink(self.log.name)


def load_round(port: int, path: str, clients: int, requests: int) -> dict[str, Any]:
    """One round from a load-generator process of its own."""
    argv = [
        PYTHON, str(_HERE / "_load.py"), "--port", str(port), "--path", path,
        "--clients", str(clients), "--requests", str(requests), "--timeout", str(ROUND_TIMEOUT),
    ]  # fmt: skip
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=ROUND_TIMEOUT + 30)
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, IndexError, ValueError) as exc:
        total = clients * requests
        return {"ok": 0, "failed": total, "first_error": f"load generator: {exc!r}", "rps": 0.0}
    return result


# -- results ---------------------------------------------------------------------------


@dataclass
class Row:
    label: str
    rounds: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> int:
        return sum(r["ok"] for r in self.rounds)

    @property
    def failed(self) -> int:
        return sum(r["failed"] for r in self.rounds)

    @property
    def rps(self) -> float | None:
        return statistics.median(r["rps"] for r in self.rounds) if self.rounds else None

    def median_round(self) -> dict[str, Any] | None:
        if not self.rounds:
            return None
        ordered = sorted(self.rounds, key=lambda r: r["rps"])
        return ordered[len(ordered) // 2]

    def first_error(self) -> str | None:
        return self.error or next(
            (r["first_error"] for r in self.rounds if r.get("first_error")), None
        )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


LOAD_TABLE = Table(
    [
        ("server / adapter", 44),
        ("ok", 6),
        ("failed", 6),
        ("req/s", 7),
        ("p50 ms", 6),
        ("p99 ms", 6),
        ("vs a2wsgi", 9),
        ("target", 13),
        ("result", 6),
    ]
)


def _ratio(row: Row, baseline: Row | None) -> float | None:
    if baseline is None or not row.rounds or not baseline.rounds:
        return None
    ratios = [
        mine["rps"] / theirs["rps"]
        for mine, theirs in zip(row.rounds, baseline.rounds, strict=False)
        if theirs["rps"] > 0
    ]
    return statistics.median(ratios) if ratios else None


@dataclass
class Case:
    """One server set-up measured in a section."""

    key: str
    label: str
    start: Callable[[], Server]
    path: str = "/"
    target: str = "-"
    check: Callable[[Row, dict[str, Row]], bool] | None = None
    #: The chart's colour for this case: a library, or FLOOR (no adapter).
    series: str = ""
    #: The chart's label, if shorter than ``label``.
    short: str = ""


def run_section(
    title: str,
    cases: list[Case],
    clients: int,
    requests: int,
    rounds: int,
    out: Callable[[str], None],
    verdicts: list[bool],
    chart: list[Group],
    chart_title: str,
) -> dict[str, Row]:
    out("")
    out(title)
    out(LOAD_TABLE.header())
    rows = {case.key: Row(case.label) for case in cases}
    servers: dict[str, Server] = {}
    try:
        for case in cases:
            try:
                server = servers[case.key] = case.start()
                server.wait_ready(case.path)
                load_round(server.port, case.path, clients, requests)  # warm-up
            except Exception as exc:
                rows[case.key].error = str(exc)
        # Rounds interleave the servers, so a busy moment of the machine
        # lands on all of them alike.
        for _ in range(rounds):
            for case in cases:
                row = rows[case.key]
                if row.error is None:
                    row.rounds.append(
                        load_round(servers[case.key].port, case.path, clients, requests)
                    )
    finally:
        for server in servers.values():
            server.stop()
    baseline = rows.get("a2wsgi")
    for case in cases:
        row = rows[case.key]
        median = row.median_round() or {}
        ratio = _ratio(row, baseline) if case.key != "a2wsgi" else None
        verdict = "-"
        if case.check is not None:
            passed = row.error is None and case.check(row, rows)
            verdict = "PASS" if passed else "FAIL"
            verdicts.append(passed)
        out(
            LOAD_TABLE.row(
                [
                    case.label,
                    str(row.ok),
                    str(row.failed),
                    "-" if row.rps is None else f"{row.rps:.0f}",
                    _ms(median.get("p50_ms")),
                    _ms(median.get("p99_ms")),
                    "-" if ratio is None else f"{ratio:.2f}",
                    case.target,
                    verdict,
                ]
            )
        )
    for case in cases:
        error = rows[case.key].first_error()
        if error:
            out(f"  ! {case.label}: {error[:300]}")
    chart.append(_load_group(chart_title, cases, rows))
    return rows


def _load_group(title: str, cases: list[Case], rows: dict[str, Row]) -> Group:
    """A section's req/s as one group of bars, with the same figures as its table."""
    bars = []
    notes = []
    for case in cases:
        row = rows[case.key]
        label = case.short or case.label
        if row.error is not None or row.rps is None:
            why = row.error or "no round completed"
            bars.append(Bar(label, case.series, None, f"no figure: {why}"[:80]))
            continue
        ratio = _ratio(row, rows.get("a2wsgi"))
        note = []
        if row.ok == 0:
            note.append(f"all {row.failed:,} requests failed")
        elif row.failed:
            note.append(f"{row.failed:,} of {row.ok + row.failed:,} failed")
        if ratio is not None and row.ok and case.key != "a2wsgi" and case.series != FLOOR:
            note.insert(0, f"vs a2wsgi {ratio:.2f}")
        bars.append(Bar(label, case.series, row.rps, f"{row.rps:,.0f} req/s", ", ".join(note)))
        if case.check is not None:
            passed = case.check(row, rows)
            target = case.target.replace(">=", "≥")
            notes.append(f"target {target}: {'PASS' if passed else 'FAIL'}")
    return Group(title, "req/s", bars, "; ".join(notes))


# -- servers ---------------------------------------------------------------------------


def uvicorn_server(library: str, app: str, patched: bool) -> Callable[[], Server]:
    """Plain uvicorn (as ``uvicorn`` run by a user would) around ``library``'s adapter."""

    def start() -> Server:
        sock = _listening_socket()
        port = sock.getsockname()[1]
        prefix = [PYTHON, "-m", "gevent.monkey"] if patched else [PYTHON]
        argv = [
            *prefix,
            str(_HERE / "wsgi.py"),
            "--serve-uvicorn",
            library,
            app,
            "--fd",
            str(sock.fileno()),
        ]
        try:
            return Server(f"uvicorn+{library}", argv, port, (sock.fileno(),))
        finally:
            sock.close()

    return start


def asgigreen_serve(target: str) -> Callable[[], Server]:
    """The ``asgigreen serve`` command itself."""

    def start() -> Server:
        port = _free_port()
        argv = [
            _bin("asgigreen"), "serve", target, "--app-dir", str(_HERE),
            "--port", str(port), "--log-level", "warning",
        ]  # fmt: skip
        return Server("asgigreen serve", argv, port)

    return start


def gunicorn_gevent(factory: str) -> Callable[[], Server]:
    def start() -> Server:
        sock = _listening_socket()
        port = sock.getsockname()[1]
        argv = [
            _bin("gunicorn"), "-k", "gevent", "-w", "1", "--worker-connections", "1000",
            "--bind", f"fd://{sock.fileno()}", "--pythonpath", str(_HERE),
            "--log-level", "warning", "--keep-alive", "30",
        ]  # fmt: skip
        if _gunicorn_has("control_socket_disable"):
            argv.append("--no-control-socket")
        argv.append(factory)
        try:
            return Server("gunicorn -k gevent", argv, port, (sock.fileno(),))
        finally:
            sock.close()

    return start


def _gunicorn_has(setting: str) -> bool:
    try:
        from gunicorn.config import KNOWN_SETTINGS
    except ImportError:
        return False
    return any(known.name == setting for known in KNOWN_SETTINGS)


def serve_uvicorn_main(library: str, app: str, fd: int) -> None:
    """Child: uvicorn serving ``library``'s adapter on the inherited socket."""
    import _apps
    import uvicorn

    application = _apps.wsgi_to_asgi(library, app)
    sock = socket.socket(fileno=fd)
    config = uvicorn.Config(
        application, log_level="warning", access_log=False, loop="asyncio", http="auto"
    )
    server = uvicorn.Server(config)
    server.run(sockets=[sock])


# -- streaming memory ----------------------------------------------------------------


def stream_main(library: str, direction: str, total: int) -> None:
    """Child: stream ``total`` bytes through ``library``'s WsgiToAsgi; print JSON."""
    import asyncio

    block = b"\xab" * CHUNK
    count = total // CHUNK
    seen = {"bytes": 0}

    def upload_app(environ: dict[str, Any], start_response: Any) -> Any:
        stream = environ["wsgi.input"]
        while True:
            data = stream.read(CHUNK)
            if not data:
                break
            seen["bytes"] += len(data)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"done"]

    def download_app(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return (block for _ in range(count))

    wsgi = upload_app if direction == "upload" else download_app
    if library == "asgigreen":
        from asgigreen.wsgi import WsgiToAsgi

        adapter: Any = WsgiToAsgi(wsgi)
    elif library == "a2wsgi":
        from a2wsgi import WSGIMiddleware

        adapter = WSGIMiddleware(wsgi)
    else:
        from asgiref.wsgi import WsgiToAsgi as AsgirefWsgiToAsgi

        adapter = AsgirefWsgiToAsgi(wsgi)
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/", "raw_path": b"/", "query_string": b"", "root_path": "",
        "headers": [(b"host", b"bench")], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
    }  # fmt: skip
    if direction == "upload":
        scope["headers"].append((b"content-length", str(count * CHUNK).encode()))
    sent = {"chunks": 0}

    async def receive() -> dict[str, Any]:
        if direction == "upload" and sent["chunks"] < count:
            sent["chunks"] += 1
            return {"type": "http.request", "body": block, "more_body": sent["chunks"] < count}
        if direction == "download" and sent["chunks"] == 0:
            sent["chunks"] = 1
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and direction == "download":
            seen["bytes"] += len(message.get("body", b""))

    async def main() -> None:
        await adapter(scope, receive, send)

    # Warm up the adapter (its workers, the loop) on a tiny request first.
    gc.collect()
    peak_reset = reset_peak_rss()
    before = read_status_kb("VmRSS")
    started = time.perf_counter()
    try:
        from asgigreen import hubs

        runner: Callable[..., None] = (
            hubs.get_hub().run_on_new_loop if library == "asgigreen" else _asyncio_run
        )
    except ImportError:
        runner = _asyncio_run
    runner(main)
    elapsed = time.perf_counter() - started
    peak = read_status_kb("VmHWM")
    growth = None if before is None or peak is None else (peak - before) / 1024
    print(
        json.dumps(
            {
                "bytes": seen["bytes"],
                "seconds": elapsed,
                "growth_mb": growth,
                "peak_reset": peak_reset,
            }
        ),
        flush=True,
    )


def _asyncio_run(main: Callable[[], Any]) -> None:
    import asyncio

    asyncio.run(main())


STREAM_TABLE = Table(
    [
        ("WsgiToAsgi, 1 stream", 30),
        ("direction", 9),
        ("MiB", 6),
        ("seconds", 7),
        ("MB/s", 6),
        ("peak RSS growth MB", 18),
        ("target", 9),
        ("result", 6),
    ]
)


def run_streams(
    total: int,
    out: Callable[[str], None],
    verdicts: list[bool],
    compare: bool,
    chart: list[Group],
) -> None:
    out("")
    out(
        f"{total // (1 << 20)} MiB through WsgiToAsgi each way, driven directly (no HTTP), "
        "a fresh process each; growth: VmHWM after minus VmRSS before (VmHWM reset)"
    )
    out(STREAM_TABLE.header())
    mib = total // (1 << 20)
    size = f"{mib // 1024} GiB" if mib % 1024 == 0 else f"{mib} MiB"
    groups = {
        direction: Group(
            f"3. {size} {direction} through WsgiToAsgi: peak RSS growth",
            "MB",
            [],
            f"less is better; target < {STREAM_TARGET_MB:g} MB",
        )
        for direction in ("upload", "download")
    }
    failures = {"upload": 0, "download": 0}
    setups = [("asgigreen", True), ("asgigreen", False)]
    if compare:
        setups += [("a2wsgi", False), ("asgiref", False)]
    for library, patched in setups:
        for direction in ("upload", "download"):
            prefix = [PYTHON, "-m", "gevent.monkey"] if patched else [PYTHON]
            argv = [
                *prefix,
                str(_HERE / "wsgi.py"),
                "--stream",
                library,
                direction,
                "--bytes",
                str(total),
            ]
            label = f"{library}, {'patched' if patched else 'plain'}"
            is_target = library == "asgigreen"
            try:
                done = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=_env())
                result = json.loads(done.stdout.strip().splitlines()[-1])
            except Exception as exc:
                out(
                    STREAM_TABLE.row(
                        [label, direction, "-", "-", "-", "-", "-", "FAIL" if is_target else "-"]
                    )
                )
                out(f"  ! {label} {direction}: {exc!r}")
                groups[direction].bars.append(Bar(label, library, None, "no figure: failed"))
                if is_target:
                    verdicts.append(False)
                    failures[direction] += 1
                continue
            growth = result["growth_mb"]
            complete = result["bytes"] == total
            verdict = "-"
            if is_target:
                passed = complete and growth is not None and growth < STREAM_TARGET_MB
                verdict = "PASS" if passed else "FAIL"
                verdicts.append(passed)
                failures[direction] += not passed
            mb_s = result["bytes"] / result["seconds"] / 1e6
            groups[direction].bars.append(
                Bar(
                    label,
                    library,
                    None if growth is None else max(0.0, growth),
                    "no figure: VmHWM unreadable" if growth is None else f"{growth:.1f} MB",
                    f"{mb_s:,.0f} MB/s" + ("" if complete else ", incomplete"),
                )
            )
            out(
                STREAM_TABLE.row(
                    [
                        label,
                        direction,
                        f"{result['bytes'] / (1 << 20):.0f}",
                        f"{result['seconds']:.1f}",
                        f"{result['bytes'] / result['seconds'] / 1e6:.0f}",
                        "?" if growth is None else f"{growth:.1f}",
                        f"< {STREAM_TARGET_MB:g} MB" if is_target else "-",
                        verdict,
                    ]
                )
            )
    for direction, group in groups.items():
        group.note += ": FAIL" if failures[direction] else ": PASS"
        chart.append(group)


# -- the run --------------------------------------------------------------------------


def _at_least(rps: float) -> Callable[[Row, dict[str, Row]], bool]:
    def check(row: Row, rows: dict[str, Row]) -> bool:
        return row.failed == 0 and row.rps is not None and row.rps >= rps

    return check


def _no_slower_than_a2wsgi(row: Row, rows: dict[str, Row]) -> bool:
    ratio = _ratio(row, rows.get("a2wsgi"))
    return row.failed == 0 and ratio is not None and ratio >= 1.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds, 256 MiB streams")
    parser.add_argument("--rounds", type=int, help="load rounds per server (default 5)")
    parser.add_argument("--stream-mib", type=int, help="MiB streamed each way (default 1024)")
    parser.add_argument("--skip", action="append", default=[], choices=["1", "2", "3", "4"])
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    parser.add_argument("--svg", metavar="PATH", help="also draw the results as an SVG chart here")
    parser.add_argument(
        "--serve-uvicorn", nargs=2, metavar=("LIBRARY", "APP"), help=argparse.SUPPRESS
    )
    parser.add_argument("--fd", type=int, help=argparse.SUPPRESS)
    parser.add_argument(
        "--stream", nargs=2, metavar=("LIBRARY", "DIRECTION"), help=argparse.SUPPRESS
    )
    parser.add_argument("--bytes", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_uvicorn:
        serve_uvicorn_main(*args.serve_uvicorn, args.fd)
        return 0
    if args.stream:
        stream_main(*args.stream, args.bytes)
        return 0

    if args.svg and not args.svg.lower().endswith(".svg"):
        parser.error(f"--svg {args.svg}: the chart is an SVG document; name it *.svg")
    rounds = args.rounds or (3 if args.quick else 5)
    stream_bytes = (args.stream_mib or (256 if args.quick else 1024)) << 20
    verdicts: list[bool] = []
    chart: list[Group] = []

    def out(line: str) -> None:
        print(line, flush=True)

    started = time.perf_counter()
    out(
        f"asgigreen WSGI<->ASGI benchmark: Python {platform.python_version()}, "
        f"{_versions()}, {os.cpu_count()} CPUs"
    )
    out(
        f"  load: a separate process, keep-alive clients on one asyncio loop; {rounds} rounds per "
        "server, interleaved across servers; req/s: median round; failed: all rounds"
    )
    out("  vs a2wsgi: median over rounds of req/s / a2wsgi's req/s in the same round")
    if "1" not in args.skip:
        run_section(
            "1. uvicorn, gevent-patched process, WSGI app waiting 50 ms (time.sleep) per request, "
            "100 keep-alive clients x 5 requests",
            [
                Case(
                    "asgigreen",
                    "asgigreen serve (WsgiToAsgi, hub loop)",
                    asgigreen_serve("_apps:wsgi_io"),
                    target=f">= {IO_TARGET_RPS:.0f}, 0 err",
                    check=_at_least(IO_TARGET_RPS),
                    series="asgigreen",
                    short="asgigreen serve",
                ),
                Case(
                    "asgigreen-uvicorn",
                    "uvicorn + asgigreen WsgiToAsgi",
                    uvicorn_server("asgigreen", "io", True),
                    series="asgigreen",
                    short="uvicorn + asgigreen",
                ),
                Case(
                    "a2wsgi",
                    "uvicorn + a2wsgi WSGIMiddleware",
                    uvicorn_server("a2wsgi", "io", True),
                    series="a2wsgi",
                    short="uvicorn + a2wsgi",
                ),
                Case(
                    "asgiref",
                    "uvicorn + asgiref WsgiToAsgi",
                    uvicorn_server("asgiref", "io", True),
                    series="asgiref",
                    short="uvicorn + asgiref",
                ),
                Case(
                    "asgi",
                    "(reference: uvicorn + ASGI app, asyncio.sleep)",
                    uvicorn_server("none", "io", True),
                    series=FLOOR,
                    short="ASGI app, asyncio.sleep",
                ),
            ],
            clients=100,
            requests=5,
            rounds=rounds,
            out=out,
            verdicts=verdicts,
            chart=chart,
            chart_title="1. uvicorn, gevent-patched, WSGI app waiting 50 ms",
        )
    if "2" not in args.skip:
        run_section(
            "2. uvicorn, plain process, WSGI app doing no I/O, "
            "100 keep-alive clients x 20 requests",
            [
                Case(
                    "asgigreen",
                    "uvicorn + asgigreen WsgiToAsgi",
                    uvicorn_server("asgigreen", "noio", False),
                    target=">= a2wsgi",
                    check=_no_slower_than_a2wsgi,
                    series="asgigreen",
                    short="uvicorn + asgigreen",
                ),
                Case(
                    "a2wsgi",
                    "uvicorn + a2wsgi WSGIMiddleware",
                    uvicorn_server("a2wsgi", "noio", False),
                    series="a2wsgi",
                    short="uvicorn + a2wsgi",
                ),
                Case(
                    "asgiref",
                    "uvicorn + asgiref WsgiToAsgi",
                    uvicorn_server("asgiref", "noio", False),
                    series="asgiref",
                    short="uvicorn + asgiref",
                ),
            ],
            clients=100,
            requests=20,
            rounds=rounds,
            out=out,
            verdicts=verdicts,
            chart=chart,
            chart_title="2. uvicorn, plain process, WSGI app doing no I/O",
        )
    if "3" not in args.skip:
        run_streams(stream_bytes, out, verdicts, compare=not args.quick, chart=chart)
    if "4" not in args.skip:
        run_section(
            "4. gunicorn -k gevent, 1 worker, ASGI view awaiting 50 ms (asyncio.sleep), "
            "100 keep-alive clients x 5 requests",
            [
                Case(
                    "asgigreen",
                    "gunicorn gevent + asgigreen AsgiToWsgi",
                    gunicorn_gevent("_apps:asgi_to_wsgi('asgigreen')"),
                    target=f">= {IO_TARGET_RPS:.0f}, 0 err",
                    check=_at_least(IO_TARGET_RPS),
                    series="asgigreen",
                    short="asgigreen AsgiToWsgi",
                ),
                Case(
                    "a2wsgi",
                    "gunicorn gevent + a2wsgi ASGIMiddleware",
                    gunicorn_gevent("_apps:asgi_to_wsgi('a2wsgi')"),
                    series="a2wsgi",
                    short="a2wsgi ASGIMiddleware",
                ),
                Case(
                    "wsgi",
                    "(reference: plain WSGI app, time.sleep)",
                    gunicorn_gevent("_apps:asgi_to_wsgi('none')"),
                    series=FLOOR,
                    short="WSGI app, time.sleep",
                ),
            ],
            clients=100,
            requests=5,
            rounds=rounds,
            out=out,
            verdicts=verdicts,
            chart=chart,
            chart_title="4. gunicorn -k gevent, 1 worker, ASGI view awaiting 50 ms",
        )
    out("")
    seconds = time.perf_counter() - started
    out(f"targets: {sum(verdicts)}/{len(verdicts)} PASS ({seconds:.0f} s in all)")
    if args.svg and chart:
        given = sys.argv[1:] if argv is None else argv
        command = command_line(["python", "benchmarks/wsgi.py"], given)
        out(f"chart: {_chart(chart, rounds, command).write(args.svg)}")
    return 1 if args.check and not all(verdicts) else 0


def _chart(groups: list[Group], rounds: int, command: str) -> BarChart:
    return BarChart(
        title="WSGI <-> ASGI adapters under real servers: asgigreen, a2wsgi, asgiref",
        series=[
            Series("asgigreen", COLOURS["asgigreen"]),
            Series("a2wsgi", COLOURS["a2wsgi"]),
            Series("asgiref", COLOURS["asgiref"]),
            Series(FLOOR, COLOURS["floor"], floor=True),
        ],
        groups=groups,
        subtitle=[
            f"req/s (more is better): median of {rounds} round{'s' * (rounds != 1)} "
            "interleaved across servers, "
            "100 keep-alive clients from a load process of their own; the dashed line is the "
            "same wait with no adapter. " + _versions() + f", {os.cpu_count()} CPUs.",
            f"$ {command}  ({time.strftime('%Y-%m-%d')})",
        ],
    )


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for name in ("asgigreen", "uvicorn", "httptools", "gunicorn", "gevent", "a2wsgi", "asgiref"):
        try:
            parts.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            parts.append(f"{name} -")
    return ", ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
