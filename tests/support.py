"""Constants the suites share (fixtures built on them live in ``tests/conftest.py``)."""

from __future__ import annotations

import massive_rt as mrt

KEY = "test-key"  # the key the ``massive_server`` fixture (and so the shared ``server``) accepts
FAST = mrt.ReconnectPolicy(initial_delay=0.01, max_delay=0.05)  # reconnects in tens of milliseconds
