"""The in-memory channel layer polled under gevent Timeouts (``scenario_layers.py``).

A sender greenlet sends 300 numbered messages; the receiver polls with
``with gevent.Timeout(0.02, False): async_to_sync(layer.receive)(ch)``. All
300 must arrive exactly once and in order, and no receive abandoned by a
timed-out poll may be left pending (such a receive would take, and lose,
a later message).
"""

from __future__ import annotations

from typing import Any

import pytest
from stress_support import run_child

pytestmark = [pytest.mark.gevent_only, pytest.mark.timeout(120)]

MESSAGES = 300


def test_layer_receive_polled_under_timeouts(say: Any) -> None:
    result = run_child("scenario_layers.py", str(MESSAGES), timeout=90).require_result()
    say(
        f"layers gevent: {result['received']}/{MESSAGES} received "
        f"({result['missing']} lost {result['missing_sample']}, {result['duplicates']} "
        f"duplicated, {result['out_of_order']} out of order) in {result['seconds']} s; "
        f"{result['polls']} polls, {result['timeouts']} timed out, {result['errors']} errors "
        f"{result['error_samples']}; afterwards tasks pending {result['tasks_pending']}, "
        f"loops running {result['loops_running']}"
    )
    assert result["sent"] == MESSAGES, result["send_errors"]
    assert result["exactly_once_in_order"], result
    assert result["errors"] == 0, result["error_samples"]
    assert result["tasks_pending"] == 0 and result["loops_running"] == 0, (
        "receives abandoned by timed-out polls are still pending",
        result,
    )
