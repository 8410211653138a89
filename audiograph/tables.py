"""Plain-text tables for terminal output."""

from __future__ import annotations

# C0 and C1 control characters (a newline in a file name, a terminal escape sequence in a tag) as escapes.
_CONTROL = {**{c: f"\\x{c:02x}" for c in [*range(32), *range(127, 160)]}, 9: "\\t", 10: "\\n", 13: "\\r"}


def one_line(text: str, limit: int = 2_000) -> str:
    """`text` with control characters escaped, so that it prints as one line and cannot drive the terminal; cut
    at `limit` characters (a 20 MB line quoted from a broken file is not a message)."""
    text = str(text)
    if len(text) > limit:
        text = f"{text[:limit]}... ({len(text) - limit} more characters)"
    return text.translate(_CONTROL)


def format_table(headers: list[str], rows: list[list], right: set[int] = frozenset()) -> str:
    """Columns padded to their widest cell (control characters escaped); column indices in `right` are
    right-aligned."""
    cells = [[one_line(c) for c in headers]] + [["" if c is None else one_line(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for r in cells:
        parts = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)
