"""axe-core inside a Playwright page: accessibility violations as a person with a screen reader
or a keyboard would meet them (issue 14, item 7).

The engine is the pinned copy in ``tests/browser/vendor/axe.min.js`` (see its README), checked
against its SHA-256 so a truncated or edited copy fails loudly instead of scanning nothing. It
is evaluated through the DevTools protocol, which the pages' Content-Security-Policy
(``script-src 'self'``) does not govern, so the page is scanned exactly as served.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Any

AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"
AXE_SHA256 = "29348999450cdf2849a8e70b7912fc2da85a849da39c0d0d5394f51d4a9ed95c"
BLOCKING = ("serious", "critical")


@cache
def axe_source() -> str:
    data = AXE.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    assert digest == AXE_SHA256, f"{AXE} is not the pinned axe-core 4.14.1 ({digest})"
    return data.decode("utf-8")


def axe_violations(page: Any, impacts: tuple[str, ...] = BLOCKING) -> list[dict[str, Any]]:
    """Run axe-core (WCAG 2.0/2.1 A and AA rules plus best practices) on the page as it is
    now; the violations of the given impacts, each with its rule, impact and offending nodes."""
    # Scan the page at rest: a line fading in (0.25 s) would read as faint text.
    page.evaluate("() => Promise.all(document.getAnimations().map(a => a.finished))")
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(axe_source() + "\n;undefined")
    result = page.evaluate(
        """async () => {
            const r = await window.axe.run(document, {
                runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa',
                                                 'best-practice']},
                resultTypes: ['violations'],
            });
            return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 5).map(n => n.target.join(' ') + ' :: ' +
                                               (n.failureSummary || '').slice(0, 200))}));
        }"""
    )
    return [v for v in result if v.get("impact") in impacts]


def overflow_offenders(page: Any, limit: int = 8) -> list[str]:
    """Elements sticking out of the viewport on the right: what makes a page scroll sideways
    (for the failure message)."""
    return page.evaluate(
        """limit => {
            const w = document.documentElement.clientWidth;
            const out = [];
            for (const el of document.querySelectorAll('body *')) {
                const r = el.getBoundingClientRect();
                if (r.right > w + 0.5 && r.width > 0) {
                    const inScroller = el.closest('.table-wrap, .doc-text, pre');
                    if (inScroller && inScroller !== el) continue;
                    out.push(`${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''}` +
                             `.${[...el.classList].join('.')} right=${Math.round(r.right)}`);
                    if (out.length >= limit) break;
                }
            }
            return out;
        }""",
        limit,
    )


def scroll_width(page: Any) -> int:
    return int(page.evaluate("document.documentElement.scrollWidth"))
