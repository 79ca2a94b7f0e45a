"""Channel layers: asgigreen's in-memory layer against Channels' own, side by side.

Plain process (threads hub)::

    python benchmarks/layers.py

gevent-monkeypatched process (gevent hub)::

    python -m gevent.monkey benchmarks/layers.py

Both layers run in this one process, each on an event loop of its own: they
are pure-Python asyncio code, and whatever the process carries (the gevent
hub's greenlet tracer when patched) weighs on both alike. Batches of the two
alternate, round after round (``_timing.measure_pair``); every figure is a
median over rounds and the ratio is asgigreen time / Channels time, so at or
under 1.0 means asgigreen is at least as fast.

Rows (a unit is what one figure is per):

* send + receive, queued: ``send`` then ``receive`` on one channel, by one task.
* send + receive, receiver waiting: a round trip between two tasks, each
  waiting in ``receive`` when the other sends (the usual consumer pattern).
* group_send to 1000 channels, then 1000 receives: one broadcast, drained.
* group_send to 1000 waiting receivers: 1000 tasks wait in ``receive``; the
  unit ends when all have their copy.

Below the table, asgigreen alone (Channels' layer does not wake a receiver
waiting on another event loop): round trips between two event loops on two
threads (greenlets when patched).
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
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

# The helpers live next to this file; ``python -m gevent.monkey <script>``
# does not put the script's directory on sys.path as ``python <script>`` does.
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from _chart import COLOURS, Bar, BarChart, Group, Series, command_line  # noqa: E402
from _timing import (  # noqa: E402
    Batch,
    PairResult,
    Settings,
    Table,
    gevent_patched,
    measure_pair,
)

GROUP_SIZE = 1000
TARGET = 1.0


@dataclass(frozen=True)
class Row:
    key: str
    title: str
    #: Slower batches for Channels here; fewer rounds keep the run short.
    rounds: int | None = None


ROWS = [
    Row("queued", "send + receive, queued"),
    Row("waiting", "send + receive, receiver waiting"),
    Row("group_drain", f"group_send to {GROUP_SIZE} channels + receives", rounds=9),
    Row("group_waiting", f"group_send to {GROUP_SIZE} waiting receivers", rounds=9),
]


class Side:
    """One layer on its own event loop, with the set-up each row needs."""

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.loop = asyncio.new_event_loop()
        self._helpers: list[asyncio.Task[None]] = []

    def run(self, coroutine: Coroutine[Any, Any, float]) -> float:
        return self.loop.run_until_complete(coroutine)

    def close(self) -> None:
        for task in self._helpers:
            task.cancel()
        if self._helpers:
            self.loop.run_until_complete(asyncio.gather(*self._helpers, return_exceptions=True))
        self.loop.close()

    def batch(self, key: str) -> Batch:
        """The batch for row ``key``: runs ``n`` units, returns their seconds."""
        return getattr(self, f"_prepare_{key}")()  # type: ignore[no-any-return]

    def _timed(self, body: Callable[[int], Coroutine[Any, Any, None]]) -> Batch:
        def batch(units: int) -> float:
            gc.collect()

            async def timed() -> float:
                started = time.perf_counter()
                await body(units)
                return time.perf_counter() - started

            return self.run(timed())

        return batch

    def _prepare_queued(self) -> Batch:
        layer = self.layer
        message = {"type": "bench.message", "text": "hello", "n": 1}

        async def body(units: int) -> None:
            for _ in range(units):
                await layer.send("bench.queued", message)
                await layer.receive("bench.queued")

        return self._timed(body)

    def _prepare_waiting(self) -> Batch:
        layer = self.layer
        message = {"type": "bench.message", "text": "hello", "n": 1}

        async def echo() -> None:
            while True:
                await layer.send("bench.back", await layer.receive("bench.there"))

        self._helpers.append(self.loop.create_task(echo()))

        async def body(units: int) -> None:
            for _ in range(units):
                await layer.send("bench.there", message)
                await layer.receive("bench.back")

        return self._timed(body)

    def _members(self, group: str) -> list[str]:
        async def join() -> list[str]:
            names = [await self.layer.new_channel() for _ in range(GROUP_SIZE)]
            for name in names:
                await self.layer.group_add(group, name)
            return names

        return self.loop.run_until_complete(join())

    def _prepare_group_drain(self) -> Batch:
        layer = self.layer
        members = self._members("bench-drain")
        message = {"type": "bench.message", "text": "news"}

        async def body(units: int) -> None:
            for _ in range(units):
                await layer.group_send("bench-drain", message)
                for name in members:
                    await layer.receive(name)

        return self._timed(body)

    def _prepare_group_waiting(self) -> Batch:
        layer = self.layer
        members = self._members("bench-live")
        message = {"type": "bench.message", "text": "news"}
        state: dict[str, Any] = {"left": 0, "done": None}

        async def member(name: str) -> None:
            while True:
                await layer.receive(name)
                state["left"] -= 1
                if state["left"] == 0:
                    state["done"].set_result(None)

        self._helpers.extend(self.loop.create_task(member(name)) for name in members)
        self.loop.run_until_complete(asyncio.sleep(0))  # all are waiting now

        async def body(units: int) -> None:
            for _ in range(units):
                state["left"] = GROUP_SIZE
                state["done"] = asyncio.get_running_loop().create_future()
                await layer.group_send("bench-live", message)
                await state["done"]

        return self._timed(body)


def cross_loop_round_trip(layer: Any, count: int, rounds: int) -> float:
    """Median microseconds per round trip between loops on two threads."""
    ready = threading.Event()

    async def echo() -> None:
        ready.set()
        while True:
            message = await layer.receive("cross.there")
            if message.get("stop"):
                return
            await layer.send("cross.back", message)

    thread = threading.Thread(target=asyncio.run, args=(echo(),), daemon=True)
    thread.start()
    ready.wait(10)

    async def timed() -> float:
        message = {"type": "bench.message", "n": 1}
        started = time.perf_counter()
        for _ in range(count):
            await layer.send("cross.there", message)
            await layer.receive("cross.back")
        return (time.perf_counter() - started) / count

    loop = asyncio.new_event_loop()
    try:
        figures = [loop.run_until_complete(timed()) for _ in range(rounds)]
        loop.run_until_complete(layer.send("cross.there", {"type": "stop", "stop": True}))
    finally:
        loop.close()
    thread.join(10)
    return statistics.median(figures) * 1e6


def _fmt_us(value: float | None) -> str:
    if value is None:
        return "failed"
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _fmt_rate(value: float | None) -> str:
    return "-" if not value else f"{1e6 / value:,.0f}"


TABLE = Table(
    [
        ("benchmark (per unit)", 44),
        ("Channels us", 11),
        ("asgigreen us", 12),
        ("Channels/s", 10),
        ("asgigreen/s", 11),
        ("ratio", 6),
        ("p25-p75", 11),
        ("target", 7),
        ("result", 6),
    ]
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    parser.add_argument("--rounds", type=int, help="timed rounds per layer (default 21)")
    parser.add_argument("--batch-seconds", type=float, help="rough length of one batch")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    parser.add_argument("--svg", metavar="PATH", help="also draw the results as an SVG chart here")
    args = parser.parse_args(argv)
    if args.svg and not args.svg.lower().endswith(".svg"):
        parser.error(f"--svg {args.svg}: the chart is an SVG document; name it *.svg")

    patched = gevent_patched()
    from channels import __version__ as channels_version
    from channels.layers import InMemoryChannelLayer as ChannelsLayer

    import asgigreen
    from asgigreen import hubs
    from asgigreen.layers import InMemoryChannelLayer as GreenLayer

    rounds = args.rounds or (5 if args.quick else 21)
    seconds = args.batch_seconds or (0.05 if args.quick else 0.15)

    def out(line: str) -> None:
        print(line, flush=True)

    out(
        f"asgigreen channel layer benchmark: "
        f"{'gevent-monkeypatched' if patched else 'plain'} process, "
        f"asgigreen hub: {hubs.get_hub().name}\n"
        f"  Channels {channels_version} InMemoryChannelLayer vs asgigreen {asgigreen.__version__} "
        f"InMemoryChannelLayer, Python {platform.python_version()}, {os.cpu_count()} CPUs\n"
        f"  both in this process, each on its own event loop; interleaved rounds of "
        f"~{seconds:g} s batches; median per unit\n"
        "  ratio: median over rounds of asgigreen time / Channels time "
        "(<= 1.0: asgigreen at least as fast); p25-p75: spread of those per-round ratios"
    )
    out("")
    out(TABLE.header())
    results: list[PairResult] = []
    started = time.perf_counter()
    for row in ROWS:
        baseline, candidate = Side(ChannelsLayer()), Side(GreenLayer())
        try:
            settings = Settings(
                rounds=min(rounds, row.rounds) if row.rounds and not args.rounds else rounds,
                batch_seconds=seconds,
            )
            result = measure_pair(
                row.title,
                baseline.batch(row.key),
                candidate.batch(row.key),
                settings,
                target=TARGET,
            )
        finally:
            baseline.close()
            candidate.close()
        results.append(result)
        quartiles = result.ratio_quartiles()
        out(
            TABLE.row(
                [
                    row.title,
                    _fmt_us(result.baseline.median_us),
                    _fmt_us(result.candidate.median_us),
                    _fmt_rate(result.baseline.median_us),
                    _fmt_rate(result.candidate.median_us),
                    "-" if result.ratio is None else f"{result.ratio:.2f}",
                    f"{quartiles[0]:.2f}-{quartiles[1]:.2f}" if quartiles else "-",
                    f"<= {TARGET:.2f}",
                    result.verdict + ("?" if result.within_noise else ""),
                ]
            )
        )
        for name, side in (("Channels", result.baseline), ("asgigreen", result.candidate)):
            if side.error:
                out(f"  ! {name} failed: {side.error}")

    cross_us = cross_loop_round_trip(
        GreenLayer(), 500 if args.quick else 2000, 3 if args.quick else 7
    )
    where = "greenlets" if patched else "threads"
    out("")
    out(
        f"asgigreen only: send + receive round trip between event loops on two {where}: "
        f"{_fmt_us(cross_us)} us ({_fmt_rate(cross_us)}/s)"
    )
    passed = sum(1 for result in results if result.verdict == "PASS")
    out("")
    out(f"targets: {passed}/{len(results)} PASS ({time.perf_counter() - started:.0f} s in all)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as sink:
            json.dump(
                {
                    "patched": patched,
                    "hub": hubs.get_hub().name,
                    "rows": [result.as_dict() for result in results],
                    "cross_loop_round_trip_us": cross_us,
                },
                sink,
                indent=2,
            )
            sink.write("\n")
    if args.svg:
        prefix = ["python", "-m", "gevent.monkey"] if patched else ["python"]
        command = command_line(
            [*prefix, "benchmarks/layers.py"], sys.argv[1:] if argv is None else argv
        )
        header = (
            f"Channels {channels_version}, asgigreen {asgigreen.__version__}, "
            f"CPython {platform.python_version()}, {os.cpu_count()} CPUs"
        )
        chart = _chart(results, patched, hubs.get_hub().name, header, cross_us, command)
        out(f"chart: {chart.write(args.svg)}")
    if args.check and passed != len(results):
        return 1
    return 0


def _chart(
    results: list[PairResult],
    patched: bool,
    hub: str,
    versions: str,
    cross_us: float,
    command: str,
) -> BarChart:
    """One group of bars per row; a row slower than a millisecond is drawn in ms."""
    groups = []
    for result in results:
        slow = max(result.baseline.median_us or 0.0, result.candidate.median_us or 0.0) >= 1000
        unit, divisor = ("ms per unit", 1000.0) if slow else ("µs per unit", 1.0)
        bars = []
        for name, side in (("Channels", result.baseline), ("asgigreen", result.candidate)):
            if side.median_us is None:
                bars.append(Bar(name, name, None, f"no figure: {side.error or 'failed'}"[:90]))
                continue
            value = side.median_us / divisor
            shown = f"{value:,.1f}" if value >= 10 else f"{value:.2f}"
            bars.append(Bar(name, name, value, f"{shown} {unit.split()[0]}"))
        note = "" if result.ratio is None else f"ratio {result.ratio:.2f}"
        if result.target is not None:
            note += f"; target ≤ {result.target:.2f}: {result.verdict}"
            if result.within_noise:
                note += " (within noise)"
        groups.append(Group(result.name, unit, bars, note.strip("; ")))
    where = "greenlets" if patched else "threads"
    return BarChart(
        title=(
            f"Channel layers, {'gevent-monkeypatched' if patched else 'plain'} process "
            f"({hub} hub): asgigreen's in-memory layer against Channels'"
        ),
        series=[
            Series("Channels", COLOURS["Channels"]),
            Series("asgigreen", COLOURS["asgigreen"]),
        ],
        groups=groups,
        subtitle=[
            "Median time per unit over interleaved rounds, shorter is better; ratio: median "
            f"of per-round asgigreen/Channels times. {versions}.",
            f"$ {command}  ({time.strftime('%Y-%m-%d')})",
        ],
        footnotes=[
            f"asgigreen only (Channels' layer does not wake a receiver on another loop): a "
            f"round trip between event loops on two {where} takes {_fmt_us(cross_us)} µs."
        ],
    )


if __name__ == "__main__":
    sys.exit(main())
