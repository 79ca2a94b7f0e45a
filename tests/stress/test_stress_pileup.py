"""Threads must not pile up: 20 rounds of 1000 concurrent ThreadSensitiveContexts.

``scenario_pileup.py`` in a plain process (threads hub): each context
makes one thread-sensitive ``sync_to_async`` call on a worker thread of its
own. At the end (after up to 5 s for idle threads to end) fewer than 50
native threads may be left.
"""

from __future__ import annotations

from typing import Any

import pytest
from stress_support import run_child

pytestmark = [pytest.mark.threads_only, pytest.mark.timeout(200)]

ROUNDS, CONTEXTS, MAX_THREADS = 20, 1000, 50


def test_thread_sensitive_contexts_do_not_pile_up_threads(say: Any) -> None:
    run = run_child("scenario_pileup.py", str(ROUNDS), str(CONTEXTS), str(MAX_THREADS), timeout=170)
    result = run.require_result()
    say(
        f"threads pile-up threads: {ROUNDS} rounds x {CONTEXTS} ThreadSensitiveContexts in "
        f"{result['seconds']} s; native threads {result['before']} before, "
        f"{result['after_each_round']} after each round (peak {result['peak']}), "
        f"{result['settled']} settled; workers per round "
        f"{min(result['distinct_workers_per_round'])}-{max(result['distinct_workers_per_round'])}"
    )
    assert result["settled"] < MAX_THREADS, result
    # Each context ran its call on a worker of its own, never on the loop's thread.
    assert result["calls_on_the_loop_thread"] == 0, result
