"""SVG charts of benchmark results, written with the standard library only.

Two kinds, each built from the figures a benchmark has just printed:

* :class:`BarChart`: horizontal bars in groups, one group per table row or
  section. Groups with the same unit share a scale, so their bars compare;
  a group in another unit (MB beside req/s) gets a scale of its own. A bar
  of a *floor* series (a measurement without the library in the way, such
  as the same app with no adapter) is drawn hatched, and a dashed line at
  its value runs across its group so every other bar can be read against it.
* :class:`LineChart`: samples over time (the soak's memory), with dashed
  horizontal lines for targets.

Text stays text (``<text>`` elements, a system sans-serif font), so the
charts are searchable and sharp at any zoom. Each chart sits on a card of
its own colour, light by default and dark when the viewer prefers dark
(a CSS media query inside the SVG): it reads the same on a light or a dark
page. The series colours are from the Okabe-Ito palette, which stays
distinct for the common colour-vision deficiencies and on both cards.
"""

from __future__ import annotations

import math
import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "COLOURS",
    "Bar",
    "BarChart",
    "Group",
    "Line",
    "LineChart",
    "Series",
    "command_line",
]

#: Colours the benchmarks use, one per library (Okabe-Ito).
COLOURS = {
    "asgigreen": "#009E73",
    "asgiref": "#0072B2",
    "a2wsgi": "#E69F00",
    "Channels": "#CC79A7",
    "floor": "#8C8C8C",
}

WIDTH = 760
#: Bold glyphs run about a tenth wider than regular ones.
BOLD = 1.1
PAD = 16
FONT = "system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif"

# Card colours: light first, then dark under the media query. Presentation
# attributes carry the light ones too, for renderers without CSS.
FG, MUTED, GRID, CARD, EDGE = "#1f2328", "#59636e", "#d0d7de", "#ffffff", "#d0d7de"
STYLE = f"""
.card {{ fill: {CARD}; stroke: {EDGE}; }}
.fg {{ fill: {FG}; }}
.muted {{ fill: {MUTED}; }}
.grid {{ stroke: {GRID}; }}
.mark {{ stroke: {FG}; }}
.hatch {{ stroke: {MUTED}; }}
.halo {{ stroke: {CARD}; }}
@media (prefers-color-scheme: dark) {{
  .card {{ fill: #0d1117; stroke: #3d444d; }}
  .fg {{ fill: #e6edf3; }}
  .muted {{ fill: #9198a1; }}
  .grid {{ stroke: #3d444d; }}
  .mark {{ stroke: #e6edf3; }}
  .hatch {{ stroke: #9198a1; }}
  .halo {{ stroke: #0d1117; }}
}}
"""


def text_width(text: str, size: float) -> float:
    """A generous estimate of ``text``'s width in a sans-serif font.

    No font metrics without a dependency. The average glyph of a sans-serif
    face is about half the font size wide (Arial, Helvetica, Segoe UI), and
    DejaVu Sans, what many Linux browsers fall back to, is wider still; the
    estimate follows the wider faces, since erring wide only costs a little
    bar length.
    """
    wide = sum(1 for char in text if char.isupper() or char in "mwMW%@")
    narrow = sum(1 for char in text if char in "ilj.,:;'|! ()[]-")
    return size * (0.6 * (len(text) - wide - narrow) + 0.75 * wide + 0.34 * narrow)


def _escape(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


def _num(value: float) -> str:
    """A coordinate, short: 12.5 rather than 12.500000001."""
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _wrap(text: str, size: float, width: float) -> list[str]:
    lines: list[str] = []
    line = ""
    for word in text.split():
        candidate = f"{line} {word}" if line else word
        if line and text_width(candidate, size) > width:
            lines.append(line)
            line = word
        else:
            line = candidate
    if line:
        lines.append(line)
    return lines


def nice_step(span: float, ticks: int = 5) -> float:
    """A round step (1, 2, 2.5 or 5 times a power of ten) cutting ``span`` in about ``ticks``."""
    if span <= 0:
        return 1.0
    raw = span / ticks
    power = 10.0 ** math.floor(math.log10(raw))
    for factor in (1.0, 2.0, 2.5, 5.0, 10.0):
        if raw <= factor * power:
            return factor * power
    return 10 * power


def _tick_label(value: float) -> str:
    if abs(value - round(value)) < 1e-9:
        return f"{round(value):,}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def command_line(prefix: Sequence[str], argv: Sequence[str]) -> str:
    """The command as a reader would retype it: ``prefix`` then ``argv``.

    ``--json`` and its file are left out (they change no figure).
    """
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--json":
            skip = True
            continue
        if arg.startswith("--json="):
            continue
        kept.append(arg)
    return shlex.join([*prefix, *kept])


class _Svg:
    """The elements of one SVG document, in drawing order."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def add(self, element: str) -> None:
        self.parts.append(element)

    def text(
        self,
        x: float,
        y: float,
        text: str,
        *,
        size: float = 12,
        cls: str = "fg",
        weight: str | None = None,
        anchor: str = "start",
        style: str | None = None,
        halo: bool = True,
        tail: str = "",
    ) -> None:
        """A line of text; ``tail`` follows it in the quieter colour, at 12 px.

        The tail is a ``<tspan>`` of the same element, so it starts where the
        renderer's font ends the text, whatever that font's widths are.
        """
        fill = MUTED if cls == "muted" else FG
        extra = f' font-weight="{weight}"' if weight else ""
        if halo:
            # A rim of the card's colour around each glyph: lines under the
            # text stop short of it instead of striking it through.
            cls += " halo"
            extra += (
                f' stroke="{CARD}" stroke-width="3" stroke-linejoin="round" paint-order="stroke"'
            )
        if anchor != "start":
            extra += f' text-anchor="{anchor}"'
        if style:
            extra += f' font-style="{style}"'
        after = ""
        if tail:
            after = (
                f'<tspan dx="8" font-size="12" font-weight="normal" class="muted" '
                f'fill="{MUTED}">{_escape(tail)}</tspan>'
            )
        self.add(
            f'<text x="{_num(x)}" y="{_num(y)}" font-size="{_num(size)}" class="{cls}" '
            f'fill="{fill}"{extra}>{_escape(text)}{after}</text>'
        )

    def document(self, height: float, title: str, description: str) -> str:
        head = (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{_num(height)}" '
            f'viewBox="0 0 {WIDTH} {_num(height)}" role="img" font-family="{_escape(FONT)}" '
            f'aria-label="{_escape(title)}">\n'
            f"<title>{_escape(title)}</title>\n<desc>{_escape(description)}</desc>\n"
            f"<style>{STYLE}</style>\n"
            "<defs>"
            '<pattern id="floor-hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
            'patternTransform="rotate(45)">'
            f'<line x1="0" y1="0" x2="0" y2="6" class="hatch" stroke="{MUTED}" stroke-width="2"/>'
            "</pattern></defs>\n"
            f'<rect x="0.5" y="0.5" width="{WIDTH - 1}" height="{_num(height - 1)}" rx="6" '
            f'class="card" fill="{CARD}" stroke="{EDGE}"/>\n'
        )
        return head + "\n".join(self.parts) + "\n</svg>\n"


@dataclass(frozen=True)
class Series:
    """A colour in the legend: a library, or the floor it is measured against."""

    name: str
    colour: str
    #: A measurement without the libraries (drawn hatched, marked across its group).
    floor: bool = False


@dataclass
class Bar:
    """One figure: a bar as long as ``value``, labelled ``label``, reading ``text``."""

    label: str
    series: str
    #: None: there is no figure (the run failed); only ``text`` is shown.
    value: float | None
    #: The figure as the table printed it, unit included ("310.5 µs").
    text: str
    #: Said after the figure, in a quieter colour ("2,500 failed").
    note: str = ""


@dataclass
class Group:
    """Bars read together: one benchmark row, or one section of a run."""

    title: str
    #: Groups with the same unit share a scale.
    unit: str
    bars: list[Bar]
    #: Said after the title, in a quieter colour (a ratio, a target, a verdict).
    note: str = ""


def _legend(svg: _Svg, series: Sequence[Series | Line], y: float) -> float:
    """Draw the legend from ``y``; return the y below it.

    A :class:`Series` gets a swatch, a :class:`Line` a short stroke drawn as
    the line is (dashed or not).
    """
    x = float(PAD)
    for item in series:
        swatch = 12 if isinstance(item, Series) else 24
        width = swatch + 6 + text_width(item.name, 12) + 18
        if x + width > WIDTH - PAD and x > PAD:
            x = PAD
            y += 18
        if isinstance(item, Series):
            fill = "url(#floor-hatch)" if item.floor else item.colour
            svg.add(
                f'<rect x="{_num(x)}" y="{_num(y)}" width="12" height="12" rx="2" '
                f'fill="{fill}" stroke="{item.colour}"/>'
            )
        else:
            dash = ' stroke-dasharray="7 4"' if item.dashed else ""
            svg.add(
                f'<line x1="{_num(x)}" y1="{_num(y + 6)}" x2="{_num(x + swatch)}" '
                f'y2="{_num(y + 6)}" stroke="{item.colour}" stroke-width="2.5"{dash}/>'
            )
        svg.text(x + swatch + 6, y + 10.5, item.name)
        x += width
    return y + 12


def _header(svg: _Svg, title: str, subtitle: Sequence[str]) -> float:
    y = PAD - 6
    for part in _wrap(title, 16 * BOLD, WIDTH - 2 * PAD):
        y += 20
        svg.text(PAD, y, part, size=16, weight="bold")
    y += 8
    for line in subtitle:
        for part in _wrap(line, 12, WIDTH - 2 * PAD):
            y += 16
            svg.text(PAD, y, part, cls="muted")
    return y


def _footer(svg: _Svg, footnotes: Sequence[str], y: float) -> float:
    for note in footnotes:
        for part in _wrap(note, 11.5, WIDTH - 2 * PAD):
            y += 15
            svg.text(PAD, y, part, size=11.5, cls="muted")
    return y


@dataclass
class BarChart:
    """Horizontal bars in groups, with a legend, the figures, and the floor marked."""

    title: str
    series: list[Series]
    groups: list[Group]
    #: Lines under the title: the setup, the run's command and date.
    subtitle: list[str] = field(default_factory=list)
    footnotes: list[str] = field(default_factory=list)

    BAR = 16
    BAR_GAP = 5

    def _check(self) -> dict[str, Series]:
        by_name = {series.name: series for series in self.series}
        if not self.groups:
            raise ValueError("a BarChart needs at least one Group")
        for group in self.groups:
            for bar in group.bars:
                if bar.series not in by_name:
                    raise ValueError(
                        f"bar {bar.label!r} in group {group.title!r} names series "
                        f"{bar.series!r}; declare it in BarChart.series "
                        f"(known: {', '.join(by_name) or 'none'})"
                    )
                if bar.value is not None and (bar.value < 0 or not math.isfinite(bar.value)):
                    raise ValueError(
                        f"bar {bar.label!r} in group {group.title!r} has value {bar.value!r}; "
                        "bars show finite figures of 0 or more (None: no figure)"
                    )
        return by_name

    def svg(self) -> str:
        """The chart as an SVG document."""
        by_name = self._check()
        svg = _Svg()
        y = _header(svg, self.title, self.subtitle)
        named = {bar.series for group in self.groups for bar in group.bars}
        used = [series for series in self.series if series.name in named]
        y = _legend(svg, used, y + 12) + 6

        label_width = max(text_width(b.label, 12) for g in self.groups for b in g.bars)
        x0 = PAD + 8 + min(label_width, 260) + 10
        right = WIDTH - PAD
        # Bars as long as the room lets the longest, once its figure fits after it.
        scale = {
            unit: max((b.value or 0.0) for g in self.groups if g.unit == unit for b in g.bars)
            for unit in {g.unit for g in self.groups}
        }
        single_axis = len(scale) == 1
        if single_axis:
            ((unit, top),) = scale.items()
            step = nice_step(top)
            scale[unit] = max(step, math.ceil(top / step) * step)
        plot = right - x0
        for group in self.groups:
            for bar in group.bars:
                if bar.value and scale[group.unit]:
                    share = bar.value / scale[group.unit]
                    room = right - x0 - 6 - text_width(self._figure(bar), 12)
                    plot = min(plot, room / share)
        plot = max(plot, 80.0)

        def x_of(unit: str, value: float) -> float:
            top = scale[unit]
            return x0 + (plot * value / top if top else 0.0)

        groups_top = y + 8
        # Bars are drawn after the grid lines, over them.
        # Layers, bottom to top: the grid (drawn straight into svg), the
        # bars, the floor marks, the text (haloed, so a mark never hides it).
        bars, marks, labels = _Svg(), _Svg(), _Svg()
        for group in self.groups:
            y += 22
            width = text_width(group.title, 13 * BOLD) + 8 + text_width(group.note, 12)
            if not group.note or PAD + width <= right:
                labels.text(PAD, y, group.title, size=13, weight="bold", tail=group.note)
            else:
                labels.text(PAD, y, group.title, size=13, weight="bold")
                y += 16
                labels.text(PAD, y, group.note, cls="muted")
            y += 8
            first_bar = y
            floor_at: float | None = None
            for bar in group.bars:
                series = by_name[bar.series]
                labels.text(PAD + 8, y + self.BAR - 4, bar.label)
                if bar.value is None:
                    labels.text(x0, y + self.BAR - 4, bar.text, cls="muted", style="italic")
                else:
                    end = x_of(group.unit, bar.value)
                    fill = "url(#floor-hatch)" if series.floor else series.colour
                    bars.add(
                        f'<rect class="bar" data-value="{bar.value!r}" x="{_num(x0)}" '
                        f'y="{_num(y)}" width="{end - x0:.3f}" height="{self.BAR}" '
                        f'fill="{fill}" stroke="{series.colour}" stroke-width="1"/>'
                    )
                    labels.text(end + 6, y + self.BAR - 4, bar.text, tail=bar.note)
                    if series.floor:
                        floor_at = end
                y += self.BAR + self.BAR_GAP
            if floor_at is not None:
                marks.add(
                    f'<line class="mark floor" x1="{_num(floor_at)}" y1="{_num(first_bar - 4)}" '
                    f'x2="{_num(floor_at)}" y2="{_num(y - self.BAR_GAP + 4)}" stroke="{FG}" '
                    'stroke-width="1.5" stroke-dasharray="4 3"/>'
                )
            y += 4
        groups_bottom = y

        if single_axis:
            ((unit, top),) = scale.items()
            step = nice_step(top)
            ticks = [step * i for i in range(round(top / step) + 1)]
            y = groups_bottom + 14
            for tick in ticks:
                x = x_of(unit, tick)
                svg.add(
                    f'<line class="grid" x1="{_num(x)}" y1="{_num(groups_top)}" x2="{_num(x)}" '
                    f'y2="{_num(groups_bottom)}" stroke="{GRID}" stroke-width="1"/>'
                )
                svg.text(x, y, _tick_label(tick), size=11, cls="muted", anchor="middle")
            svg.text(right, y + 15, unit, size=11, cls="muted", anchor="end")
            y += 15
        else:
            units = " and ".join(sorted(scale))
            y = groups_bottom + 16
            note = f"Bars in the same unit share a scale ({units})."
            svg.text(PAD, y, note, size=11.5, cls="muted")
        for layer in (bars, marks, labels):
            svg.parts.extend(layer.parts)
        y = _footer(svg, self.footnotes, y + 2)
        return svg.document(y + PAD, self.title, self._description())

    @staticmethod
    def _figure(bar: Bar) -> str:
        return f"{bar.text}   {bar.note}" if bar.note else bar.text

    def _description(self) -> str:
        parts = []
        for group in self.groups:
            figures = ", ".join(f"{bar.label}: {self._figure(bar)}" for bar in group.bars)
            parts.append(f"{group.title} ({figures})")
        return "; ".join(parts)

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write the chart to ``path`` (its directory is created); return the path."""
        return _write(Path(path), self.svg())


@dataclass
class Line:
    """One series of ``(x, y)`` points."""

    name: str
    colour: str
    points: list[tuple[float, float]]
    dashed: bool = False


@dataclass
class LineChart:
    """Lines over a shared x axis, with dashed target lines and a legend."""

    title: str
    x_label: str
    y_label: str
    lines: list[Line]
    subtitle: list[str] = field(default_factory=list)
    #: ``(y, label)``: a dashed horizontal line, labelled at its right end.
    marks: list[tuple[float, str]] = field(default_factory=list)
    footnotes: list[str] = field(default_factory=list)

    HEIGHT = 240

    def svg(self) -> str:
        """The chart as an SVG document."""
        points = [point for line in self.lines for point in line.points]
        if not points:
            raise ValueError("a LineChart needs at least one point (every line is empty)")
        svg = _Svg()
        y = _header(svg, self.title, self.subtitle)
        y = _legend(svg, self.lines, y + 12) + 26

        xs = [p[0] for p in points]
        ys = [p[1] for p in points] + [mark for mark, _ in self.marks]
        x_lo, x_hi = min(xs), max(xs)
        y_step = nice_step(max(ys) - min(min(ys), 0.0) or 1.0)
        y_lo = min(0.0, math.floor(min(ys) / y_step) * y_step)
        y_hi = math.ceil(max(ys) / y_step) * y_step
        if y_hi <= y_lo:
            y_hi = y_lo + y_step
        x_step = nice_step(x_hi - x_lo or 1.0, 6)

        left = PAD + 8 + max(text_width(_tick_label(v), 11) for v in (y_lo, y_hi)) + 6
        right = WIDTH - PAD - 8
        top, bottom = y + 4, y + 4 + self.HEIGHT
        x_span = x_hi - x_lo or 1.0

        def px(x: float) -> float:
            return left + (x - x_lo) / x_span * (right - left)

        def py(value: float) -> float:
            return bottom - (value - y_lo) / (y_hi - y_lo) * (bottom - top)

        tick = y_lo
        while tick <= y_hi + y_step / 1000:
            svg.add(
                f'<line class="grid" x1="{_num(left)}" y1="{_num(py(tick))}" x2="{_num(right)}" '
                f'y2="{_num(py(tick))}" stroke="{GRID}" stroke-width="1"/>'
            )
            svg.text(left - 6, py(tick) + 4, _tick_label(tick), size=11, cls="muted", anchor="end")
            tick += y_step
        tick = math.ceil(x_lo / x_step) * x_step
        while tick <= x_hi + x_step / 1000:
            label = _tick_label(tick)
            svg.text(px(tick), bottom + 15, label, size=11, cls="muted", anchor="middle")
            tick += x_step
        svg.text(right, bottom + 30, self.x_label, size=11, cls="muted", anchor="end")
        svg.text(left, top - 6, self.y_label, size=11, cls="muted")
        for value, label in self.marks:
            svg.add(
                f'<line class="mark target" x1="{_num(left)}" y1="{_num(py(value))}" '
                f'x2="{_num(right)}" y2="{_num(py(value))}" stroke="{FG}" stroke-width="1.5" '
                'stroke-dasharray="6 4"/>'
            )
            svg.text(right, py(value) - 5, label, size=11.5, anchor="end")
        for line in self.lines:
            if not line.points:
                continue
            path = " ".join(f"{_num(px(x))},{_num(py(v))}" for x, v in line.points)
            dash = ' stroke-dasharray="7 4"' if line.dashed else ""
            svg.add(
                f'<polyline class="line" points="{path}" fill="none" stroke="{line.colour}" '
                f'stroke-width="2.5" stroke-linejoin="round"{dash}/>'
            )
        y = _footer(svg, self.footnotes, bottom + 34)
        description = "; ".join(
            f"{line.name}: {len(line.points)} points"
            + (f", last {line.points[-1][1]:.2f}" if line.points else "")
            for line in self.lines
        )
        return svg.document(y + PAD, self.title, description)

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write the chart to ``path`` (its directory is created); return the path."""
        return _write(Path(path), self.svg())


def _write(path: Path, document: str) -> Path:
    if path.suffix.lower() != ".svg":
        raise ValueError(f"chart path {str(path)!r} should end in .svg (it is an SVG document)")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document, encoding="utf-8")
    return path
