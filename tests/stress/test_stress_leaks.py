"""Leak checks: 100,000 calls of each bridge, in both modes.

``scenario_leaks.py`` runs in a fresh process (this run's mode) and takes a
census (``stress_census.py``) after a warm-up of 5,000 calls and after the
100,000 calls; for ``sync_to_async`` the second census is taken while the
one task making the calls still runs, then again after ``asyncio.run``.

Thresholds, after the warm-up: RSS growth under 10 MB; under 0.05 gc
objects per call (both censuses); and no more native threads, descriptors,
busy greenlets, open or running loops, or pending tasks than after the
warm-up (a couple of descriptors of slack).
"""

from __future__ import annotations

from typing import Any

import pytest
from stress_support import mode_name, run_child

CALLS = 100_000
WARMUP = 5_000
MAX_RSS_GROWTH_KB = 10 * 1024
MAX_OBJECTS_PER_CALL = 0.05


@pytest.mark.timeout(240)
@pytest.mark.parametrize("bridge", ["sync_to_async", "async_to_sync"])
def test_bridge_calls_leak_nothing(bridge: str, say: Any) -> None:
    run = run_child("scenario_leaks.py", bridge, str(CALLS), str(WARMUP), "200", timeout=220)
    result = run.require_result()
    before, during, after = result["before"], result["during"], result["after"]
    rss_growth = during["rss_kb"] - before["rss_kb"]
    per_call = (during["objects"] - before["objects"]) / CALLS
    per_call_after = (after["objects"] - before["objects"]) / CALLS
    where = "in one task" if bridge == "sync_to_async" else "from sync code"
    say(
        f"leaks {bridge} {where} {mode_name()}: {CALLS} calls in {result['seconds']:.1f} s; "
        f"RSS {before['rss_kb'] / 1024:.1f} -> {during['rss_kb'] / 1024:.1f} MB "
        f"({rss_growth / 1024:+.1f} MB; samples MB "
        f"{[round(kb / 1024, 1) for kb in result['samples_kb']]}); objects "
        f"{before['objects']} -> {during['objects']} ({per_call:+.4f}/call), after the run "
        f"{after['objects']} ({per_call_after:+.4f}/call); top growers {result['top_growers']}; "
        f"threads {before['threads']} -> {after['threads']}, fds {before['fds']} -> "
        f"{after['fds']}, busy greenlets {before['greenlets_busy']} -> "
        f"{after['greenlets_busy']}, loops open {before['loops_open']} -> "
        f"{after['loops_open']}, tasks pending {before['tasks_pending']} -> "
        f"{after['tasks_pending']}"
    )
    problems = []
    if rss_growth >= MAX_RSS_GROWTH_KB:
        problems.append(f"RSS grew {rss_growth / 1024:.1f} MB (limit 10 MB)")
    for label, value in (("while running", per_call), ("after the run", per_call_after)):
        if value >= MAX_OBJECTS_PER_CALL:
            problems.append(
                f"{value:.4f} objects per call {label} (limit {MAX_OBJECTS_PER_CALL}); "
                f"top growers {result['top_growers']}"
            )
    for key in ("threads", "greenlets_busy", "loops_running", "tasks_pending", "loops_open"):
        for label, census in (("during", during), ("after", after)):
            if census[key] > before[key]:
                problems.append(f"{key}: {before[key]} after the warm-up, {census[key]} {label}")
    if after["fds"] > before["fds"] + 2:
        problems.append(f"descriptors {before['fds']} -> {after['fds']}")
    assert not problems, "\n".join(problems)
