"""The stress suite: figures printed for CI logs.

Every test prints its figures through the ``say`` fixture as
``[stress] <what>: <figures>``, whether it passes or fails, so a CI log
shows them without ``-s``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest


@pytest.fixture
def say(capsys: pytest.CaptureFixture[str]) -> Callable[[str], None]:
    """Print a line of figures past pytest's output capture."""

    def emit(line: str) -> None:
        with capsys.disabled():
            print(f"\n[stress] {line}", flush=True)

    return emit
