"""``python -m massive_rt``: the ``massive-rt`` command (see :mod:`massive_rt.cli`)."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
