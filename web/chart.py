"""A channel's activity per day as an inline SVG bar chart, written on the server: posts,
edits and confirmed deletions side by side for each day, a scale on the left, dates below,
and each day's numbers in a tooltip (``<title>``). No script, no library."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

from archiver.store.activity import Day

SERIES = (("posts", "posts"), ("edits", "edits"), ("deletions", "deletions"))
HEIGHT = 120
LEFT = 36
BOTTOM = 18
TOP = 8
MAX_DAY_WIDTH = 24
MIN_DAY_WIDTH = 3


def _ceiling(n: int) -> int:
    """A round number at or above ``n`` for the scale (1, 2, 5, 10, 20, 50...)."""
    step = 1
    while True:
        for m in (1, 2, 5):
            if step * m >= n:
                return step * m
        step *= 10


def activity_svg(days: Sequence[Day], title: str, width: int = 720) -> Markup:
    """The chart of ``days`` (oldest first) in about ``width`` pixels."""
    n = max(len(days), 1)
    day_w = max(MIN_DAY_WIDTH, min(MAX_DAY_WIDTH, (width - LEFT) // n))
    plot_w = day_w * n
    total_w = LEFT + plot_w + 30  # room for the last date
    plot_h = HEIGHT - TOP - BOTTOM
    top = _ceiling(max([max(d.posts, d.edits, d.deletions) for d in days] + [1]))
    bar_w = max(1.0, (day_w - 1) / 3)
    out = [
        f'<svg class="activity" xmlns="http://www.w3.org/2000/svg" width="{total_w}"'
        f' height="{HEIGHT}" viewBox="0 0 {total_w} {HEIGHT}" role="img"'
        f' aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<line class="axis" x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}"'
        f' y2="{TOP + plot_h}"/>',
        f'<text class="scale" x="{LEFT - 4}" y="{TOP + 8}" text-anchor="end">{top}</text>',
        f'<text class="scale" x="{LEFT - 4}" y="{TOP + plot_h}" text-anchor="end">0</text>',
    ]
    label_every = max(1, 60 // day_w)
    for i, d in enumerate(days):
        x0 = LEFT + i * day_w
        tip = f"{d.day.isoformat()}: {d.posts} posts, {d.edits} edits, {d.deletions} deletions"
        out.append(f"<g><title>{escape(tip)}</title>")
        out.append(f'<rect class="day" x="{x0}" y="{TOP}" width="{day_w}" height="{plot_h}"/>')
        for j, (attr, cls) in enumerate(SERIES):
            value = getattr(d, attr)
            if not value:
                continue
            h = max(1.0, plot_h * value / top)
            x = x0 + j * bar_w
            out.append(
                f'<rect class="{cls}" x="{x:.1f}" y="{TOP + plot_h - h:.1f}"'
                f' width="{bar_w:.1f}" height="{h:.1f}"/>'
            )
        out.append("</g>")
        if i % label_every == 0:
            out.append(
                f'<text class="date" x="{x0}" y="{HEIGHT - 4}">{d.day.strftime("%m-%d")}</text>'
            )
    out.append("</svg>")
    # Every value written above is a number, a date, or text escaped with escape().
    return Markup("".join(out))  # noqa: S704
