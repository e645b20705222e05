#!/usr/bin/env bash
# Regenerate the dashboard screenshots in docs/img/ (call review, calendar, quality report,
# «Probar una pregunta», statistics) at desktop size (1366×900), from the browser tests that
# drive those views against a real server in headless Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
TAINA_DOCS_SCREENSHOTS=1 .venv/bin/pytest -q tests/browser/test_dashboard_review.py "$@"
ls -1 docs/img/revision-de-llamada.png docs/img/calendario.png docs/img/calidad.png \
  docs/img/probar-una-pregunta.png docs/img/estadisticas.png
