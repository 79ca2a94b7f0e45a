"""A busy loop beside a ticker greenlet: neither may starve the other (gevent only).

``scenario_busy_loop.py``: one task spins on ``await asyncio.sleep(0)``
inside ``async_to_sync`` for 3 s while a ticker greenlet sleeps 10 ms at a
time. The ticker's worst gap in that window must stay under 100 ms, and a
thread-sensitive ``sync_to_async`` awaited by another task of that loop
must complete within the window (it runs on the greenlet parked in
``async_to_sync``, which needs its turn too).
"""

from __future__ import annotations

from typing import Any

import pytest
from stress_support import run_child

SECONDS = 3.0
MAX_GAP_MS = 100.0

pytestmark = [pytest.mark.gevent_only, pytest.mark.timeout(90)]


def test_busy_loop_does_not_starve_a_ticker_greenlet(say: Any) -> None:
    result = run_child("scenario_busy_loop.py", str(SECONDS), timeout=60).require_result()
    say(
        f"busy loop gevent: ticker {result['ticks']}/{result['expected_ticks']} ticks in "
        f"{result['window_s']} s, worst gap {result['worst_gap_ms']} ms; spinner "
        f"{result['spinner_turns']} turns; thread-sensitive call "
        + (
            "never completed"
            if result["sensitive_ms"] is None
            else f"completed in {result['sensitive_ms']} ms"
        )
    )
    assert result["worst_gap_ms"] < MAX_GAP_MS, result
    assert result["sensitive_ms"] is not None, "the thread-sensitive call never completed"
    assert result["sensitive_ms"] < SECONDS * 1000, result
