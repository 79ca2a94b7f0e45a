"""What blocking detection costs: the same work with it off and on, side by side.

Detection watches gevent's hub, so this runs patched only::

    python -m gevent.monkey benchmarks/blocking.py            # about a minute
    python -m gevent.monkey benchmarks/blocking.py --quick

Rows:

* ``sync_to_async`` round trips (thread-sensitive, and not), each side in a
  worker process of its own started with ``ASGIGREEN_BLOCKING_MS`` unset
  (off) or ``100`` (on), timed in alternating batches as benchmarks/bridges.py
  does (see benchmarks/_timing.py).
* A WSGI request: two ``gunicorn -k asgigreen.gunicorn.GeventWorker``
  servers (1 worker each), off and on, serving the ``app`` below, loaded in
  turn by benchmarks/_load.py (keep-alive clients in a process of their own).

Off, nothing of detection is loaded (each side reports what it runs: the
threshold, and whether gevent's monitor thread exists), so the off column
is asgigreen as it is without the feature. On, gevent's greenlet tracer
counts every switch, and its monitor thread wakes twice per threshold, to
check and to sample the stack. Nothing here blocks, so nothing is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from _timing import (  # noqa: E402
    Settings,
    Table,
    WorkerProcess,
    gevent_patched,
    measure_pair,
    serve_requests,
)

THRESHOLD_MS = 100
S2A_ROWS = {
    "s2a_sensitive": "sync_to_async round trip, thread_sensitive=True",
    "s2a_insensitive": "sync_to_async round trip, thread_sensitive=False",
}
REQUEST_TIMEOUT = 120.0


# -- what the servers and workers run ------------------------------------------------


def _detection_state() -> dict[str, Any]:
    import gevent

    blocking = sys.modules.get("asgigreen.blocking")
    return {
        "threshold_ms": blocking.threshold_ms() if blocking is not None else None,
        "loaded": blocking is not None,
        "monitor_thread": gevent.get_hub().periodic_monitoring_thread is not None,
    }


def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """The WSGI application the gunicorn servers serve: ``/state``, else ``ok``."""
    if environ.get("PATH_INFO") == "/state":
        body = json.dumps(_detection_state()).encode()
    else:
        body = b"ok"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def work() -> int:
    return 1


def worker_main(blocking_ms: int) -> None:
    """A side of the sync_to_async rows: answers setup/run requests (see _timing)."""
    if blocking_ms:
        # Before asgigreen chooses its hub, which is when the variable is read.
        os.environ["ASGIGREEN_BLOCKING_MS"] = str(blocking_ms)
    import gevent

    from asgigreen import hubs
    from asgigreen.sync import sync_to_async

    hubs.get_hub()
    gevent.sleep(0)  # gevent's hub runs, and starts its monitor thread if asked to
    loop = asyncio.new_event_loop()
    calls = {
        "s2a_sensitive": sync_to_async(work, thread_sensitive=True),
        "s2a_insensitive": sync_to_async(work, thread_sensitive=False),
    }

    async def batch(call: Callable[[], Any], n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            await call()
        return time.perf_counter() - start

    def handle(request: dict[str, Any]) -> dict[str, Any]:
        if request["op"] == "hello":
            return {"state": _detection_state()}
        gc.collect()
        call = calls[request["row"]]
        return {"elapsed": loop.run_until_complete(batch(call, int(request["units"])))}

    serve_requests(handle)
    os._exit(0)


# -- the driver ----------------------------------------------------------------------


def _worker(blocking_ms: int) -> WorkerProcess:
    argv = [sys.executable, "-m", "gevent.monkey", os.path.abspath(__file__)]
    return WorkerProcess([*argv, "--worker", str(blocking_ms)])


def _check_sides(off: dict[str, Any], on: dict[str, Any]) -> None:
    expected_off = {"threshold_ms": None, "loaded": False, "monitor_thread": False}
    if off != expected_off or on.get("threshold_ms") != THRESHOLD_MS or not on["monitor_thread"]:
        raise RuntimeError(f"the sides are not what they should be: off {off}, on {on}")


def s2a_rows(settings: Settings) -> list[dict[str, Any]]:
    off, on = _worker(0), _worker(THRESHOLD_MS)
    try:
        _check_sides(
            off.request({"op": "hello"}, REQUEST_TIMEOUT)["state"],
            on.request({"op": "hello"}, REQUEST_TIMEOUT)["state"],
        )
        rows = []
        for key, title in S2A_ROWS.items():

            def side(worker: WorkerProcess, key: str = key) -> Callable[[int], float]:
                def batch(units: int) -> float:
                    message = {"op": "run", "row": key, "units": units}
                    elapsed: float = worker.request(message, REQUEST_TIMEOUT)["elapsed"]
                    return elapsed

                return batch

            result = measure_pair(key, side(off), side(on), settings)
            rows.append({"key": key, "title": title, **result.as_dict()})
            _print_s2a(rows[-1])
        return rows
    finally:
        off.close()
        on.close()


def wsgi_row(rounds: int, clients: int, requests: int) -> dict[str, Any]:
    # benchmarks/wsgi.py's server process handling and load rounds.
    from wsgi import Server, _bin, _gunicorn_has, _listening_socket, load_round

    def start(blocking_ms: int) -> Server:
        sock = _listening_socket()
        port = sock.getsockname()[1]
        argv = [
            _bin("gunicorn"), "-k", "asgigreen.gunicorn.GeventWorker", "-w", "1",
            "--worker-connections", "1000", "--bind", f"fd://{sock.fileno()}",
            "--pythonpath", _HERE, "--log-level", "warning", "--keep-alive", "30",
        ]  # fmt: skip
        if _gunicorn_has("control_socket_disable"):
            argv.append("--no-control-socket")
        argv.append("blocking:app")
        saved = os.environ.pop("ASGIGREEN_BLOCKING_MS", None)
        if blocking_ms:
            os.environ["ASGIGREEN_BLOCKING_MS"] = str(blocking_ms)
        try:
            label = f"gunicorn, detection {blocking_ms or 'off'}"
            return Server(label, argv, port, (sock.fileno(),))
        finally:
            os.environ.pop("ASGIGREEN_BLOCKING_MS", None)
            if saved is not None:
                os.environ["ASGIGREEN_BLOCKING_MS"] = saved
            sock.close()

    servers: dict[str, Server] = {}
    try:
        servers["off"] = start(0)
        servers["on"] = start(THRESHOLD_MS)
        states = {}
        for name, server in servers.items():
            server.wait_ready("/state")
            states[name] = _state_of(server.port)
        _check_sides(states["off"], states["on"])
        figures: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
        for name in servers:  # warm-up
            load_round(servers[name].port, "/", clients, max(1, requests // 4))
        for number in range(rounds):
            order = ["off", "on"] if number % 2 == 0 else ["on", "off"]
            for name in order:
                figures[name].append(load_round(servers[name].port, "/", clients, requests))
    finally:
        for server in servers.values():
            server.stop()
    row: dict[str, Any] = {"key": "wsgi_request", "clients": clients, "requests": requests}
    for name, results in figures.items():
        row[name] = {
            "rps": statistics.median(r["rps"] for r in results),
            "p50_ms": statistics.median(r["p50_ms"] for r in results if r.get("p50_ms")),
            "p99_ms": statistics.median(r["p99_ms"] for r in results if r.get("p99_ms")),
            "failed": sum(r["failed"] for r in results),
            "rounds_rps": [r["rps"] for r in results],
        }
    ratios = [
        off["rps"] / on["rps"]
        for off, on in zip(figures["off"], figures["on"], strict=True)
        if on["rps"]
    ]
    row["time_ratio"] = statistics.median(ratios) if ratios else None
    return row


def _state_of(port: int) -> dict[str, Any]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/state")
        state: dict[str, Any] = json.loads(conn.getresponse().read())
        return state
    finally:
        conn.close()


S2A_TABLE = Table([("row", 48), ("off us", 9), ("on us", 9), ("on/off", 7), ("p25-p75", 13)])


def _print_s2a(row: dict[str, Any]) -> None:
    spread = (
        f"{row['ratio_p25']:.3f}-{row['ratio_p75']:.3f}" if row["ratio_p25"] is not None else "-"
    )
    off, on, ratio = row["baseline_us"], row["candidate_us"], row["ratio"]
    print(
        S2A_TABLE.row(
            [
                row["title"],
                "-" if off is None else f"{off:.2f}",
                "-" if on is None else f"{on:.2f}",
                "-" if ratio is None else f"{ratio:.3f}",
                spread,
            ]
        ),
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not gevent_patched():
        print(
            "Blocking detection watches gevent's hub: run this patched,\n"
            "    python -m gevent.monkey benchmarks/blocking.py",
            file=sys.stderr,
        )
        return 2
    if args.worker is not None:
        worker_main(args.worker)
        return 0
    settings = Settings(rounds=7, batch_seconds=0.1) if args.quick else Settings()
    rounds, clients, requests = (3, 20, 100) if args.quick else (9, 50, 200)
    print(
        f"Blocking detection off vs on ({THRESHOLD_MS} ms), CPython {platform.python_version()}, "
        "gevent-patched; medians, on/off = time per call (or per request) ratio"
    )
    print(S2A_TABLE.header())
    results: dict[str, Any] = {"s2a": s2a_rows(settings)}
    wsgi = results["wsgi"] = wsgi_row(rounds, clients, requests)
    print()
    table = Table([("row", 48), ("off req/s", 10), ("on req/s", 10), ("on/off", 7)])
    print(table.header())
    ratio = wsgi["time_ratio"]
    title = f"WSGI request, gunicorn gevent, {clients} clients"
    cells = [f"{wsgi['off']['rps']:.0f}", f"{wsgi['on']['rps']:.0f}"]
    print(table.row([title, *cells, "-" if ratio is None else f"{ratio:.3f}"]))
    p50 = f"p50 {wsgi['off']['p50_ms']:.2f} / {wsgi['on']['p50_ms']:.2f} ms"
    p99 = f"p99 {wsgi['off']['p99_ms']:.2f} / {wsgi['on']['p99_ms']:.2f} ms"
    failed = wsgi["off"]["failed"] + wsgi["on"]["failed"]
    print(f"  latency off / on: {p50}, {p99}; failed requests: {failed}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(results, out, indent=2)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
