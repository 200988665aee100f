"""Hardening suite: hostile servers, secrets, TLS, process lifecycle, argument validation.

Hypothesis budgets: the ``hardening`` profile (default) keeps ``pytest tests/hardening`` fast;
``HYPOTHESIS_PROFILE=deep`` (``make fuzz``) raises it by two orders of magnitude. The profile is
applied only to this suite's fuzz tests (see ``_support.fuzz_settings``), never globally.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile(
    "hardening",
    max_examples=30,
    deadline=None,
    database=None,  # nothing written to the working tree; failures print a reproducible blob
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("deep", parent=settings.get_profile("hardening"), max_examples=3000)
