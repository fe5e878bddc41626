"""How the monitoring pages write numbers (review of issue 16): latencies as ``status`` prints them."""

from __future__ import annotations

import pytest

from allora_gitops.api.web import templates


@pytest.mark.parametrize(("ms", "shown"), [(0.055, "0.1 ms"), (2.06, "2.1 ms"), (9.94, "9.9 ms"), (400.0, "400 ms"), (None, "–")])
def test_a_sub_millisecond_latency_is_not_shown_as_zero(ms, shown):
    page = templates.env.from_string('{% import "_macros.html" as m %}{{ m.ms(v) }}')
    assert page.render(v=ms) == shown


def test_the_highest_latency_point_is_drawn_whole_inside_the_chart():
    from datetime import datetime, timezone

    from allora_gitops.api.web import CHART_HEIGHT, latency_chart
    from allora_gitops.db.results import TimelineBucket

    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    chart = latency_chart([TimelineBucket(start, 1, 0, 100.0), TimelineBucket(start, 1, 0, None), TimelineBucket(start, 0, 1, 218.0)])
    assert [m["ms"] for m in chart["marks"]] == [100.0, 218.0] and chart["top"] == 218.0
    low, high = (m["y"] for m in chart["marks"])
    assert high - chart["radius"] >= 0 and high == chart["radius"]  # not cut in half by the top edge
    assert low == round(CHART_HEIGHT - (CHART_HEIGHT - chart["radius"]) * 100 / 218, 2)
