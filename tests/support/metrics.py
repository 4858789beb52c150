"""Reading `/metrics` as Prometheus does: samples by name and labels, and the names each family exposes."""

from __future__ import annotations

import re
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

TOKEN = "metrics-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics", headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def parse(text: str) -> Samples:
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples: Samples, name: str, **labels: Any) -> float:
    """The sample's value, 0 when the series does not exist yet (as `increase` treats it)."""
    return samples.get((name, frozenset((k, str(v)) for k, v in labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: Any) -> float:
    """The sum over every series of `name` whose labels include `labels`."""
    wanted = {(k, str(v)) for k, v in labels.items()}
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def exposed_names(text: str) -> set[str]:
    """Every sample name the exposition can carry, from its TYPE lines (a histogram's `_bucket`, `_sum`,
    `_count` too), whether or not a series has been observed yet."""
    names: set[str] = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.MULTILINE):
        names.add(name)
        if kind == "histogram":
            names.update({f"{name}_bucket", f"{name}_sum", f"{name}_count"})
        if kind == "summary":
            names.update({f"{name}_sum", f"{name}_count"})
    return names
