"""How the monitoring pages write numbers (review of issue 16): latencies as ``status`` prints them."""

from __future__ import annotations

import pytest

from allora_gitops.api.web import templates


@pytest.mark.parametrize(("ms", "shown"), [(0.055, "0.1 ms"), (2.06, "2.1 ms"), (9.94, "9.9 ms"), (400.0, "400 ms"), (None, "–")])
def test_a_sub_millisecond_latency_is_not_shown_as_zero(ms, shown):
    page = templates.env.from_string('{% import "_macros.html" as m %}{{ m.ms(v) }}')
    assert page.render(v=ms) == shown
