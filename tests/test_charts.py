"""benchmarks/_chart.py: the SVG the benchmarks write parses, and says what the figures say."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from _chart import (
    COLOURS,
    Bar,
    BarChart,
    Group,
    Line,
    LineChart,
    Series,
    command_line,
    nice_step,
)

NS = {"svg": "http://www.w3.org/2000/svg"}
SERIES = [
    Series("asgiref", COLOURS["asgiref"]),
    Series("asgigreen", COLOURS["asgigreen"]),
    Series("no adapter", COLOURS["floor"], floor=True),
]


def _bars(root: ET.Element) -> list[ET.Element]:
    return [rect for rect in root.iter(f"{{{NS['svg']}}}rect") if rect.get("class") == "bar"]


def _texts(root: ET.Element) -> list[str]:
    """Every text element's own words, and each of its tspans' (a note after a figure)."""
    texts = []
    for text in root.iter(f"{{{NS['svg']}}}text"):
        texts.append(text.text or "")
        texts.extend(span.text or "" for span in text.iter(f"{{{NS['svg']}}}tspan"))
    return texts


def _chart(**changes: object) -> BarChart:
    groups = [
        Group(
            "sync_to_async",
            "µs per call",
            [
                Bar("asgiref", "asgiref", 300.0, "300.0 µs"),
                Bar("asgigreen", "asgigreen", 40.0, "40.0 µs"),
            ],
            note="ratio 0.13 & <target>",
        ),
        Group(
            "async_to_sync",
            "µs per call",
            [
                Bar("asgiref", "asgiref", 900.0, "900.0 µs"),
                Bar("asgigreen", "asgigreen", 150.0, "150.0 µs"),
            ],
        ),
    ]
    fields: dict[str, object] = {
        "title": "Bridges",
        "series": SERIES,
        "groups": groups,
        "subtitle": ["$ python benchmarks/bridges.py"],
        "footnotes": ["one footnote"],
    }
    fields.update(changes)
    return BarChart(**fields)  # type: ignore[arg-type]


def test_bar_chart_is_an_svg_document_with_its_text() -> None:
    root = ET.fromstring(_chart().svg())
    assert root.tag == f"{{{NS['svg']}}}svg"
    assert root.find("svg:title", NS) is not None
    texts = _texts(root)
    for expected in ("Bridges", "sync_to_async", "async_to_sync", "300.0 µs", "150.0 µs",
                     "ratio 0.13 & <target>", "one footnote", "asgiref", "asgigreen"):  # fmt: skip
        assert expected in texts, expected
    # Only series some bar uses are in the legend: no floor here.
    assert "no adapter" not in texts


def test_bars_sharing_a_unit_are_proportional_to_their_values() -> None:
    bars = _bars(ET.fromstring(_chart().svg()))
    assert [float(bar.get("data-value", "")) for bar in bars] == [300.0, 40.0, 900.0, 150.0]
    widths = [float(bar.get("width", "")) for bar in bars]
    xs = {bar.get("x") for bar in bars}
    assert len(xs) == 1, "bars start at one baseline"
    for width, value in zip(widths, (300.0, 40.0, 900.0, 150.0), strict=True):
        assert width / widths[2] == pytest.approx(value / 900.0, rel=1e-3)
    # Colours follow the series.
    assert {bar.get("fill") for bar in bars} == {COLOURS["asgiref"], COLOURS["asgigreen"]}


def test_groups_in_other_units_get_their_own_scale() -> None:
    groups = [
        Group("req/s", "req/s", [Bar("a", "asgigreen", 1500.0, "1,500 req/s")]),
        Group(
            "memory", "MB", [Bar("a", "asgigreen", 2.0, "2 MB"), Bar("b", "asgiref", 1.0, "1 MB")]
        ),
    ]
    root = ET.fromstring(_chart(groups=groups).svg())
    widths = [float(bar.get("width", "")) for bar in _bars(root)]
    # Each unit's largest bar is as long as the other's: 1500 req/s and 2 MB.
    assert widths[0] == pytest.approx(widths[1])
    assert widths[2] == pytest.approx(widths[1] / 2)
    assert "Bars in the same unit share a scale (MB and req/s)." in _texts(root)


def test_floor_is_hatched_and_marked_across_its_group() -> None:
    group = Group(
        "uvicorn",
        "req/s",
        [
            Bar("asgigreen", "asgigreen", 1400.0, "1,400 req/s"),
            Bar("asgiref", "asgiref", None, "no figure: every request failed"),
            Bar("ASGI app", "no adapter", 1800.0, "1,800 req/s"),
        ],
    )
    root = ET.fromstring(_chart(groups=[group]).svg())
    bars = _bars(root)
    assert len(bars) == 2, "a bar with no figure draws no rectangle"
    floor = bars[1]
    assert floor.get("fill") == "url(#floor-hatch)"
    marks = [line for line in root.iter(f"{{{NS['svg']}}}line") if "floor" in line.get("class", "")]
    assert len(marks) == 1
    end = float(floor.get("x", "")) + float(floor.get("width", ""))
    assert float(marks[0].get("x1", "")) == pytest.approx(end, abs=0.1)
    assert "no figure: every request failed" in _texts(root)
    assert "no adapter" in _texts(root)


def test_bad_input_says_what_to_do() -> None:
    stray = [Group("g", "µs", [Bar("x", "a2wsgi", 1.0, "1 µs")])]
    with pytest.raises(ValueError, match=r"declare it in BarChart\.series"):
        _chart(groups=stray).svg()
    negative = [Group("g", "µs", [Bar("x", "asgiref", -1.0, "-1 µs")])]
    with pytest.raises(ValueError, match="finite figures of 0 or more"):
        _chart(groups=negative).svg()
    with pytest.raises(ValueError, match="at least one Group"):
        _chart(groups=[]).svg()
    with pytest.raises(ValueError, match=r"should end in \.svg"):
        _chart().write("chart.png")


def test_write_creates_the_directory(tmp_path: Path) -> None:
    path = _chart().write(tmp_path / "charts" / "bridges.svg")
    assert ET.parse(path).getroot().tag.endswith("svg")


def test_line_chart_maps_points_and_marks_the_target() -> None:
    chart = LineChart(
        title="Soak",
        x_label="seconds",
        y_label="RSS growth, MB",
        lines=[
            Line("asgigreen", COLOURS["asgigreen"], [(60.0, 0.0), (120.0, 1.0), (180.0, 2.0)]),
            Line("asgiref", COLOURS["asgiref"], [(60.0, 0.0), (180.0, 0.5)], dashed=True),
        ],
        marks=[(5.0, "target < 5 MB")],
    )
    root = ET.fromstring(chart.svg())
    lines = [p for p in root.iter(f"{{{NS['svg']}}}polyline")]
    assert len(lines) == 2
    points = [tuple(map(float, pair.split(","))) for pair in lines[0].get("points", "").split()]
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    assert xs == sorted(xs) and ys == sorted(ys, reverse=True), "later and higher: right and up"
    # Evenly spaced values land evenly spaced.
    assert xs[1] - xs[0] == pytest.approx(xs[2] - xs[1], abs=0.1)
    assert ys[0] - ys[1] == pytest.approx(ys[1] - ys[2], abs=0.1)
    assert lines[1].get("stroke-dasharray")
    target = [
        line for line in root.iter(f"{{{NS['svg']}}}line") if "target" in line.get("class", "")
    ]
    assert len(target) == 1 and float(target[0].get("y1", "")) < min(ys), "5 MB is above 2 MB"
    assert "target < 5 MB" in _texts(root)
    with pytest.raises(ValueError, match="at least one point"):
        LineChart("empty", "x", "y", [Line("none", "#000", [])]).svg()


def test_nice_steps_and_command_lines() -> None:
    assert nice_step(1000) == 200
    assert nice_step(9) == 2
    assert nice_step(0.7) == pytest.approx(0.2)
    assert command_line(["python", "b.py"], ["--json", "x.json", "--svg", "a b.svg"]) == (
        "python b.py --svg 'a b.svg'"
    )
