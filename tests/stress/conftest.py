"""The stress suite: a ``stress`` marker, and figures printed for CI logs.

Every test here carries the ``stress`` marker (registered below), so a
quick run can leave the suite out: ``python -m pytest -m "not stress"``.

Every test prints its figures through the ``say`` fixture as
``[stress] <what>: <figures>``, whether it passes or fails, so a CI log
shows them without ``-s``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "stress: tests/stress, the load and chaos suite (about 2 minutes per mode)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.stress)


@pytest.fixture
def say(capsys: pytest.CaptureFixture[str]) -> Callable[[str], None]:
    """Print a line of figures past pytest's output capture."""

    def emit(line: str) -> None:
        with capsys.disabled():
            print(f"\n[stress] {line}", flush=True)

    return emit
