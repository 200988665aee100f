"""The live status page: every connection's state, rates, drops and statuses, in a browser.

``status_app(adapter)`` is a WSGI app (no framework needed; mountable in Flask or Django);
``serve_status(adapter, port=8000)`` serves it with the standard library. The page updates over
Server-Sent Events and needs nothing from the internet: its HTML, script and style ship in this
package. It shows counters and statuses only, never a key or an URL. See docs/operating.md.
"""

from __future__ import annotations

from .app import StatusApp, status_app
from .server import StatusServer, serve_status

__all__ = ["StatusApp", "StatusServer", "serve_status", "status_app"]
