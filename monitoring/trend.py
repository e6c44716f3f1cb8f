"""Weekly review sentiment: mean and negative share per calendar week, with the reference band.

A slow seasonal slide moves the weekly mean a little each week; the drift test on the current
window fires only once the slide is large. The trend shows it early: each week's mean sentiment
and share of negative reviews (the same scores and threshold as the review text check), from the
reference window's start to the current window's end, against the band the reference weeks span
(their mean +/- ``BAND_SDS`` standard deviations). Weeks run Monday 00:00 to Monday 00:00 UTC;
a week with fewer than ``MIN_WEEK_REVIEWS`` reviews is shown but neither banded nor flagged.
"""

from __future__ import annotations

import html
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

BAND_SDS = 2.0
MIN_WEEK_REVIEWS = 20
SERIES = (("mean", "mean sentiment"), ("negative_share", "negative share"))


def weekly_sentiment(
    reviews: pd.DataFrame,
    negative_at: float,
    reference: tuple[datetime, datetime],
    current: tuple[datetime, datetime],
) -> dict[str, Any]:
    """Per week of ``reviews`` (``review_timestamp``, ``sentiment``): reviews, mean sentiment and
    negative share (score <= ``negative_at``), whether the week lies in the ``reference`` or
    ``current`` span ``[start, end)``, and whether it leaves the reference band; plus the band."""
    frame = reviews[["review_timestamp", "sentiment"]].dropna()
    stamps = pd.to_datetime(frame["review_timestamp"], utc=True)
    week = (stamps.dt.tz_localize(None).dt.to_period("W-SUN").dt.start_time).dt.tz_localize("UTC")
    grouped = frame.assign(week=week, negative=frame["sentiment"] <= negative_at).groupby("week")
    table = grouped.agg(
        reviews=("sentiment", "size"), mean=("sentiment", "mean"), negative_share=("negative", "mean")
    )
    table = table.sort_index()
    weeks = []
    for start, count, mean, negative in zip(
        pd.DatetimeIndex(table.index).to_pydatetime(),
        table["reviews"],
        table["mean"],
        table["negative_share"],
        strict=True,
    ):
        end = start + timedelta(days=7)
        weeks.append(
            {
                "week_start": start.isoformat(),
                "reviews": int(count),
                "mean": float(mean),
                "negative_share": float(negative),
                "reference": bool(start >= reference[0] and end <= reference[1]),
                "current": bool(end > current[0] and start < current[1]),
            }
        )
    banded = [w for w in weeks if w["reference"] and w["reviews"] >= MIN_WEEK_REVIEWS]
    band: dict[str, Any] = {"weeks": len(banded), "sds": BAND_SDS}
    for key, _ in SERIES:
        values = np.asarray([w[key] for w in banded], dtype=float)
        if len(values) >= 2:
            centre, spread = float(values.mean()), float(values.std(ddof=1))
            band[key] = {"low": centre - BAND_SDS * spread, "high": centre + BAND_SDS * spread}
        else:
            band[key] = None
    for w in weeks:
        w["outside_band"] = [
            key
            for key, _ in SERIES
            if band[key] is not None
            and w["reviews"] >= MIN_WEEK_REVIEWS
            and not band[key]["low"] <= w[key] <= band[key]["high"]
        ]
    return {
        "negative_at": negative_at,
        "min_week_reviews": MIN_WEEK_REVIEWS,
        "band": band,
        "weeks": weeks,
        "current_weeks_outside_band": sum(bool(w["outside_band"]) for w in weeks if w["current"]),
    }


def with_trend(page: str, section: str) -> str:
    """The report page with ``section`` right after the headline block (or first in the body)."""
    from monitoring.headline import HEADLINE_ID

    start = page.find(f'<section id="{HEADLINE_ID}"')
    end = page.find("</section>", start) if start >= 0 else -1
    if end >= 0:
        cut = end + len("</section>")
        return page[:cut] + section + page[cut:]
    head, sep, tail = page.partition("<body>")
    return head + sep + section + tail if sep else section + page


def trend_section(trend: dict[str, Any], width: int = 720, height: int = 170) -> str:
    """An HTML section with one inline SVG chart per series: the weekly values as a line (dots
    outside the band in red), the reference band shaded, the current weeks' background tinted."""
    weeks = trend["weeks"]
    charts = []
    for key, title in SERIES:
        charts.append(
            f"<h3>{html.escape(title)} per week</h3>" + _chart(weeks, trend["band"][key], key, width, height)
        )
    note = (
        f"Reference band: mean +/- {trend['band']['sds']:g} sd of {trend['band']['weeks']} reference "
        f"weeks with at least {trend['min_week_reviews']} reviews; negative means a score <= "
        f"{trend['negative_at']:g}. Current weeks outside the band: {trend['current_weeks_outside_band']}."
    )
    return (
        '<section id="weekly-sentiment" style="font-family: sans-serif; margin: 16px 24px;">'
        f"<h2>Weekly review sentiment</h2><p>{html.escape(note)}</p>{''.join(charts)}</section>"
    )


def _chart(
    weeks: list[dict[str, Any]], band: dict[str, float] | None, key: str, width: int, height: int
) -> str:
    pad = 30
    if not weeks:
        return "<p>No reviews.</p>"
    values = [w[key] for w in weeks]
    low = min([*values, *([band["low"]] if band else [])])
    high = max([*values, *([band["high"]] if band else [])])
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5
    step = (width - 2 * pad) / max(len(weeks) - 1, 1)

    def x(i: int) -> float:
        return pad + i * step

    def y(v: float) -> float:
        return height - pad - (v - low) / (high - low) * (height - 2 * pad)

    parts = [f'<svg width="{width}" height="{height}" role="img" aria-label="{key} per week">']
    current = [i for i, w in enumerate(weeks) if w["current"]]
    if current:
        x0, x1 = x(current[0]) - step / 2, x(current[-1]) + step / 2
        parts.append(
            f'<rect x="{x0:.1f}" y="{pad}" width="{x1 - x0:.1f}" height="{height - 2 * pad}" fill="#fff3e0"/>'
        )
    if band:
        top, bottom = y(band["high"]), y(band["low"])
        parts.append(
            f'<rect x="{pad}" y="{top:.1f}" width="{width - 2 * pad}" height="{bottom - top:.1f}" '
            'fill="#e3f2fd"><title>reference band</title></rect>'
        )
    points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
    parts.append(f'<polyline points="{points}" fill="none" stroke="#1565c0" stroke-width="1.5"/>')
    for i, w in enumerate(weeks):
        colour = "#c62828" if key in w["outside_band"] else "#1565c0"
        label = f"{w['week_start'][:10]}: {w[key]:.3f} ({w['reviews']} reviews)"
        parts.append(
            f'<circle cx="{x(i):.1f}" cy="{y(w[key]):.1f}" r="2.5" fill="{colour}">'
            f"<title>{html.escape(label)}</title></circle>"
        )
    parts.append(f'<text x="2" y="{pad - 8}" font-size="10">{high:.2f}</text>')
    parts.append(f'<text x="2" y="{height - pad + 12}" font-size="10">{low:.2f}</text>')
    parts.append(
        f'<text x="{pad}" y="{height - 4}" font-size="10">{html.escape(weeks[0]["week_start"][:10])}</text>'
    )
    parts.append(
        f'<text x="{width - pad}" y="{height - 4}" font-size="10" text-anchor="end">'
        f"{html.escape(weeks[-1]['week_start'][:10])}</text></svg>"
    )
    return "".join(parts)
