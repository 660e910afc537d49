"""The web dashboard served by ``affectlens serve`` at ``/``.

The page is one Jinja2 template plus static ES modules and a vendored charting library
(Chart.js, rebuilt from ``webui/`` by ``scripts/build_web.sh``); every asset ships in the
package, so the dashboard works offline. The page calls only the server's public API
(chat completions, the audit store, the emotions endpoint), so it is a client like any other.

:func:`mount_dashboard` adds the page, its static files and the read-only validation-report
endpoint to a FastAPI app.
"""

from __future__ import annotations

from affectlens.web.dashboard import mount_dashboard
from affectlens.web.validation_report import find_validation_report, validation_summary

__all__ = ["find_validation_report", "mount_dashboard", "validation_summary"]
