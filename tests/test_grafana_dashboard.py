"""The Grafana dashboard in deploy/grafana/ is built on what the service exports: every metric a panel queries
exists in `/metrics`, and every SQL panel runs against the `ops` views."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from service.settings import Settings
from tests.support import running_service
from tests.support.metrics import AUTH, TOKEN, exposed_names

DASHBOARDS = sorted((Path(__file__).resolve().parents[1] / "deploy" / "grafana").glob("*.json"))
METRIC = re.compile(r"\b((?:dubbing|process)_[a-z0-9_]+)")


def targets(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            found.extend(inner.get("targets", []))
    return found


async def test_every_metric_and_view_the_dashboards_use_exists(settings: Settings) -> None:
    assert DASHBOARDS, "deploy/grafana/*.json"
    async with running_service(settings.with_overrides(metrics_token=TOKEN), run_supervisor=False) as svc:
        text = (await svc.client.get("/metrics", headers=AUTH)).text
        exposed = exposed_names(text)
        for path in DASHBOARDS:
            dashboard = json.loads(path.read_text())
            used = {name for t in targets(dashboard) for name in METRIC.findall(t.get("expr", ""))}
            assert len(used) >= 15, used
            assert used - exposed == set(), f"{path.name} queries metrics /metrics does not have"
            for target in targets(dashboard):
                if "rawSql" in target:  # the PostgreSQL panels read the ops views
                    await svc.pool.fetch(target["rawSql"])
