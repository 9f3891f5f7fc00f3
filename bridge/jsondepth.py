"""How deep a JSON document nests, read from its bytes before any parser sees it.

Python's ``json`` raises RecursionError (not ValueError) on deep nesting, and a parser's own
recursion is the cost an attacker picks: the depth is checked first, in linear time.
"""

import re

# A JSON string, escapes included, or an unterminated one up to the end: every match succeeds, so
# the scan stays linear (a pattern that can fail would try again from each later quote).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_OPENERS = frozenset(b"[{")


def deeper_than(document: bytes | str, limit: int) -> bool:
    """True if ``document`` nests arrays and objects more than ``limit`` levels deep (strings skipped)."""
    data = document.encode() if isinstance(document, str) else document
    if data.count(b"[") + data.count(b"{") <= limit:
        return False  # the common case, at C speed: too few openers to be too deep
    depth = 0
    for byte in _STRING.sub(b"", data).translate(None, _NOT_BRACKETS):
        depth += 1 if byte in _OPENERS else -1
        if depth > limit:
            return True
    return False
