"""Plain-text and Markdown tables (tabulate) and counted nouns, for terminal output and reports."""

from __future__ import annotations

# Characters that can change what a terminal shows beyond their own place: line and paragraph separators
# (which editors and some terminals break lines at) and the bidirectional overrides and isolates (which
# reorder what follows them).
TERMINAL_UNSAFE = [0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
# C0 and C1 control characters (a newline in a file name, a terminal escape sequence in a tag) and those
# above, as escapes.
_CONTROL = {
    **{c: f"\\x{c:02x}" for c in [*range(32), *range(127, 160)]},
    **{c: f"\\u{c:04x}" for c in TERMINAL_UNSAFE},
    9: "\\t",
    10: "\\n",
    13: "\\r",
}
# The same, for whole outputs: line breaks and tabs kept.
_CONTROL_IN_OUTPUT = {c: e for c, e in _CONTROL.items() if c not in (9, 10)}


def one_line(text: str, limit: int = 2_000) -> str:
    """`text` with control characters escaped, so that it prints as one line and cannot drive the terminal; cut
    at `limit` characters (a 20 MB line quoted from a broken file is not a message)."""
    text = str(text)
    if len(text) > limit:
        text = f"{text[:limit]}... ({len(text) - limit} more characters)"
    return text.translate(_CONTROL)


def terminal_safe(text: str) -> str:
    """`text` with every character `one_line` escapes escaped, except line breaks and tabs: for whole
    outputs, whose lines are the program's own."""
    return text.translate(_CONTROL_IN_OUTPUT)


def display_width(text: str) -> int:
    """How many terminal columns `text` takes, as tabulate pads it (wcwidth's `wcswidth`): two for a wide
    character (CJK, most emoji, an emoji made wide by its variation selector), none for a combining one."""
    from wcwidth import wcswidth

    width = wcswidth(text)
    return width if width >= 0 else len(text)  # a control character, which one_line escapes before this


def shortened(text: str, width: int) -> str:
    """`text`, cut to `width` terminal columns with "…" as its last where it is wider."""
    if display_width(text) <= width:
        return text
    low, high = 0, len(text)  # the longest prefix that fits beside the ellipsis, by bisection
    while low < high:
        middle = (low + high + 1) // 2
        if display_width(text[:middle]) + 1 <= width:
            low = middle
        else:
            high = middle - 1
    return text[:low] + "…"


def show(text: str = "", flush: bool = False) -> None:
    """Print part of a command's output on stdout, with whatever it quotes from a store or a file (a title, a
    model id, a path) escaped as `terminal_safe` does, its own line breaks kept: nothing stored drives the
    terminal. Every line a command prints on stdout goes through here (or, as JSON, `cli.output.print_json`)."""
    print(terminal_safe(text), flush=flush)


def format_table(headers: list[str], rows: list[list], right: set[int] = frozenset()) -> str:
    """Columns padded to their widest cell (control characters escaped); column indices in `right` are
    right-aligned."""
    from tabulate import tabulate  # imported when a table is printed, not by every command line

    cells = [["" if c is None else one_line(c) for c in r] for r in rows]
    align = ["right" if i in right else "left" for i in range(len(headers))]
    table = tabulate(
        cells, headers=[one_line(h) for h in headers], tablefmt="plain", colalign=align, disable_numparse=True
    )
    return "\n".join(line.rstrip() for line in table.splitlines())


def markdown_table(headers: list[str], rows: list[list]) -> str:
    """A GitHub-flavoured Markdown table, each cell on one line and its `|` escaped."""
    from tabulate import tabulate

    def cell(value) -> str:
        return "" if value is None else one_line(value).replace("|", "\\|")

    return tabulate(
        [[cell(c) for c in r] for r in rows],
        headers=[cell(h) for h in headers],
        tablefmt="github",
        disable_numparse=True,
    )


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """`count` and the noun in the number it takes: "1 track", "0 tracks", "3 entries" (with `plural`)."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"
