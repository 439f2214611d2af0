"""A small reader of gettext .po files: enough to compare catalogues in tests.

Reads msgctxt, msgid, msgid_plural, msgstr / msgstr[n] (continued over
several quoted lines) and the flags line (`#, fuzzy, python-format`).
Obsolete entries (`#~`) and other comments are skipped.
"""

import ast
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Entry:
    msgid: str = ""
    msgctxt: str | None = None
    msgid_plural: str | None = None
    msgstr: list[str] = field(default_factory=list)
    flags: set[str] = field(default_factory=set)

    @property
    def key(self) -> tuple[str | None, str]:
        return self.msgctxt, self.msgid

    @property
    def fuzzy(self) -> bool:
        return "fuzzy" in self.flags


def _quoted(text: str) -> str:
    # A .po string is a C string literal; these escapes are Python's too.
    return ast.literal_eval(text.strip())


def read_po(path: Path) -> list[Entry]:
    """Every entry, the header (msgid "") included, in file order."""
    entries: list[Entry] = []
    entry = Entry()
    keyword: str | None = None
    started = False

    def finish() -> None:
        nonlocal entry, started, keyword
        if started:
            entries.append(entry)
        entry, started, keyword = Entry(), False, None

    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line:
            finish()
            continue
        if line.startswith("#~"):
            continue
        if line.startswith("#,"):
            if started:
                finish()
            entry.flags |= {flag.strip() for flag in line[2:].split(",") if flag.strip()}
            continue
        if line.startswith("#"):
            continue
        if line.startswith('"'):
            value = _quoted(line)
            if keyword == "msgctxt":
                entry.msgctxt = (entry.msgctxt or "") + value
            elif keyword == "msgid":
                entry.msgid += value
            elif keyword == "msgid_plural":
                entry.msgid_plural = (entry.msgid_plural or "") + value
            elif keyword is not None and keyword.startswith("msgstr"):
                entry.msgstr[-1] += value
            continue
        name, _, rest = line.partition(" ")
        if name in ("msgctxt", "msgid") and started and keyword.startswith("msgstr"):
            finish()  # entries not separated by a blank line
        started = True
        keyword = name
        value = _quoted(rest)
        if name == "msgctxt":
            entry.msgctxt = value
        elif name == "msgid":
            entry.msgid = value
        elif name == "msgid_plural":
            entry.msgid_plural = value
        elif name.startswith("msgstr"):
            entry.msgstr.append(value)
        else:
            raise ValueError(f"{path}: cannot read {raw!r}")
    finish()
    return entries


def messages(path: Path) -> dict[tuple[str | None, str], Entry]:
    """The entries by (context, msgid), without the header."""
    return {entry.key: entry for entry in read_po(path) if entry.msgid}
