"""Constants the suites share (fixtures built on them live in ``tests/conftest.py``)."""

from __future__ import annotations

import os

import massive_rt as mrt

KEY = "test-key"  # the key the ``massive_server`` fixture (and so the shared ``server``) accepts
FAST = mrt.ReconnectPolicy(initial_delay=0.01, max_delay=0.05)  # reconnects in tens of milliseconds


def property_examples(full: int) -> int:
    """The number of examples a property test of ``tests/unit`` runs, given its full budget.

    ``make test`` runs a quarter of it (at least 10): the same assertions on fewer random inputs,
    which keeps the suite's time (it runs on every change) down. ``HYPOTHESIS_PROFILE=deep``
    (``make fuzz``) runs the full budget.
    """
    if os.environ.get("HYPOTHESIS_PROFILE") == "deep":
        return full
    return max(10, full // 4)
