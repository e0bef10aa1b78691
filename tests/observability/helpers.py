"""Scraping a /metrics endpoint in tests: parsed with prometheus_client's own parser."""

from __future__ import annotations

import asyncio
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        return resp.read().decode()


async def scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample by its name (``trellis_invocations_total``, ``..._bucket``): (labels, value)."""
    text = await asyncio.to_thread(_get, url)
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def value(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(v for have, v in samples.get(name, []) if all(have.get(k) == want for k, want in labels.items()))
