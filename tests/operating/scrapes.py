"""Reading a scrape back: the families of a registry (or of an HTTP body), parsed with
``prometheus_client.parser``, and checks every collector test makes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

Series = dict[tuple[tuple[str, str], ...], float]


def parse(text: str) -> dict[str, Any]:
    """The families of an exposition text, by name (a counter's name is without ``_total``)."""
    return {family.name: family for family in text_string_to_metric_families(text)}


def scrape_registry(registry: CollectorRegistry) -> dict[str, Any]:
    """One scrape of ``registry``, rendered as exposition text and parsed back."""
    return parse(generate_latest(registry).decode())


def series(family: Any, suffix: str = "") -> Series:
    """``{sorted labels: value}`` of the samples named ``family.name + suffix``."""
    return {tuple(sorted(s.labels.items())): s.value for s in family.samples if s.name == family.name + suffix}


def only_value(families: Mapping[str, Any], name: str, kind: str, labels: Mapping[str, str]) -> float:
    """The one sample of ``name`` (``massive_rt_`` prefixed, counters without ``_total``): its type
    must be ``kind`` and its labels exactly ``labels``."""
    family = families[f"massive_rt_{name}"]
    assert family.type == kind, (name, family.type)
    (sample,) = series(family, "_total" if kind == "counter" else "").items()
    assert dict(sample[0]) == dict(labels), (name, sample[0])
    return sample[1]


def assert_counters_never_decrease(before: Mapping[str, Any], after: Mapping[str, Any], names: Iterable[str]) -> None:
    """Every series of every counter in ``names`` is in both scrapes and did not go down."""
    for name in names:
        old, new = series(before[f"massive_rt_{name}"], "_total"), series(after[f"massive_rt_{name}"], "_total")
        assert old.keys() == new.keys(), name
        assert all(new[key] >= value for key, value in old.items()), (name, old, new)
