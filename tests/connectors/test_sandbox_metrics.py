"""Every sandbox serves its ledger counts as Prometheus metrics (scraped by docker-compose)."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from connectors.qoo10.sandbox import Qoo10Sandbox


async def test_sandbox_metrics_count_side_effects_by_op() -> None:
    sb = Qoo10Sandbox(rates={}, seed=1)
    url = await sb.start()
    try:
        no = sb.new_order()
        sb.buyer_cancel(no)
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"{url}/_control/metrics")).text
        values = {
            (s.name, s.labels.get("op")): s.value
            for fam in text_string_to_metric_families(text)
            for s in fam.samples
        }
        assert values[("sandbox_side_effects_total", "buyer_order")] == 1
        assert values[("sandbox_side_effects_total", "buyer_cancel")] == 1
        assert all(no not in str(k) for k in values)  # no ids in labels
    finally:
        await sb.stop()
