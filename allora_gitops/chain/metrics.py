"""The ``allora_chain_*`` series ``serve`` exports on ``/metrics``, from the stored observations (any replica
answers the same: nothing is kept in the process).

Labels are bounded: one series per live deployment (``allora_model``, ``allora_network``, ``allora_deployment`` =
``<name>-<network>``, the labels the deployment's PrometheusRule selects on). A deployment whose latest read
failed exports ``allora_chain_up 0`` and nothing else (no stale standing); one never read exports nothing.
"""

from __future__ import annotations

from typing import Iterable

# name → (help, ChainView attribute or a function of the view)
GAUGES = {
    "allora_chain_registered": ("1 when the worker is registered on its topic (GetWorkerSubmissionWindowStatus)", "registered"),
    "allora_chain_whitelisted": (
        "1 when the worker may submit: whitelisted and can_submit_worker_payload (GetWorkerSubmissionWindowStatus, CanSubmitWorkerPayload)",
        lambda v: None if v.whitelisted is None else (v.whitelisted and v.can_submit is not False),
    ),
    "allora_chain_topic_active": ("1 when the topic is active (GetWorkerSubmissionWindowStatus)", "topic_active"),
    "allora_chain_window_open": ("1 while a worker window of the topic is open", "window_open"),
    "allora_chain_current_nonce": ("Block height of the topic's latest worker window", "current_nonce"),
    "allora_chain_score_ema": ("The worker's inferer score EMA (GetInfererScoreEma)", "score_ema"),
    "allora_chain_topic_lowest_score": ("The topic's current lowest inferer score (GetCurrentLowestInfererScore)", "lowest_score"),
    "allora_chain_reward_fraction": ("The worker's previous inference reward fraction (GetPreviousInferenceRewardFraction)", "reward_fraction"),
    "allora_chain_balance_uallo": ("The worker wallet's balance in uallo (bank Balance)", "balance_uallo"),
    "allora_chain_missed_windows": (
        "Windows the topic closed since the first observation kept without a successful submission recorded", "missed_windows"
    ),
}
LABELS = ("allora_model", "allora_network", "allora_deployment")


def _labels(view) -> list[str]:
    return [view.name, view.network, f"{view.name}-{view.network}"]


def render_metrics(views: Iterable) -> bytes:
    """The Prometheus text exposition of ``views`` (``store.ChainView``)."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import GaugeMetricFamily

    views = [v for v in views if v.observed_at is not None]

    class Collector:
        def collect(self):
            up = GaugeMetricFamily("allora_chain_up", "1 when the latest read of the chain for the deployment succeeded", labels=LABELS)
            seen = GaugeMetricFamily(
                "allora_chain_last_observation_timestamp_seconds", "When the chain was last read for the deployment", labels=LABELS
            )
            for v in views:
                up.add_metric(_labels(v), 1.0 if v.reachable else 0.0)
                seen.add_metric(_labels(v), v.observed_at.timestamp())
            yield up
            yield seen
            for name, (help_text, source) in GAUGES.items():
                family = GaugeMetricFamily(name, help_text, labels=LABELS)
                for v in views:
                    if not v.reachable:
                        continue
                    value = source(v) if callable(source) else getattr(v, source)
                    if value is not None:
                        family.add_metric(_labels(v), float(value))
                yield family

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector())
    return generate_latest(registry)
