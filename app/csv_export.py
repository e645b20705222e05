"""CSV downloads for staff: streamed, bounded, and safe to open in a spreadsheet.

A cell that starts with ``=``, ``+``, ``-`` or ``@`` (or a tab or carriage return, which some
spreadsheets strip before reading the rest) is read by Excel, LibreOffice and Google Sheets as a
formula: a caller who says "=HYPERLINK(…)" or a citizen name typed that way would run in the
reviewer's spreadsheet. Such cells get a leading apostrophe (OWASP's advice), which spreadsheets
show as plain text. Numbers are written as numbers, never escaped.

Rows are produced page by page from the database and sent as they are written, so an export of
many thousands of rows never sits whole in memory; ``max_rows`` caps it (the response says so in
``X-Export-Truncated``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import date, datetime, tzinfo
from typing import Any
from urllib.parse import quote

from fastapi.responses import StreamingResponse

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
BOM = "\ufeff"  # Excel opens UTF-8 CSV with accents only when the file starts with a BOM
PAGE_ROWS = 500

Page = Callable[[int, int], Awaitable[Sequence[Sequence[Any]]]]


def safe_cell(value: Any, tz: tzinfo | None = None) -> Any:
    """One value as a CSV cell that no spreadsheet will evaluate."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "sí" if value else "no"
    if isinstance(value, int | float):
        return value
    if isinstance(value, datetime):
        return (value.astimezone(tz) if tz is not None else value).isoformat(timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    text = str(value)
    if text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


def _line(cells: Sequence[Any], tz: tzinfo | None) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerow([safe_cell(c, tz) for c in cells])
    return buf.getvalue()


async def csv_rows(
    header: Sequence[str], page: Page, *, max_rows: int, tz: tzinfo | None = None
) -> AsyncIterator[str]:
    """The header, then rows fetched ``PAGE_ROWS`` at a time until ``max_rows`` or the end."""
    yield BOM + _line(header, tz)
    sent = 0
    while sent < max_rows:
        size = min(PAGE_ROWS, max_rows - sent)
        rows = await page(sent, size)
        if not rows:
            return
        yield "".join(_line(row, tz) for row in rows)
        sent += len(rows)
        if len(rows) < size:
            return


def csv_response(
    filename: str,
    header: Sequence[str],
    page: Page,
    *,
    total: int,
    max_rows: int,
    tz: tzinfo | None = None,
) -> StreamingResponse:
    """A streamed ``text/csv`` attachment; the headers say how many rows matched and whether the
    file was cut at ``max_rows``."""
    return StreamingResponse(
        csv_rows(header, page, max_rows=max_rows, tz=tz),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": (
                f"attachment; filename=\"{filename}\"; filename*=UTF-8''{quote(filename)}"
            ),
            "Cache-Control": "no-store",
            "X-Total-Count": str(total),
            "X-Export-Truncated": "true" if total > max_rows else "false",
        },
    )
