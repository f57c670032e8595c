"""The WebDAV ``If`` header (RFC 4918 §10.4): lists of lock tokens and ETags, maybe negated.

Parsing is separate from evaluating: the lock check needs every token the client submitted (a
token counts as submitted wherever it appears, RFC 4918 §10.4.1), and the precondition check
evaluates the lists against the resources' current locks and ETags.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(r"""\s*(?:(<[^>]*>)|(\()|(\))|(\[(?:W/)?"[^"]*"\])|(Not)\b)""", re.IGNORECASE)


class BadIfHeader(ValueError):
    """The If header does not follow RFC 4918's grammar (400)."""


@dataclass(frozen=True)
class Condition:
    negated: bool
    token: str | None = None  # a state token: "opaquelocktoken:…", "DAV:no-lock", …
    etag: str | None = None  # with its quotes, maybe W/


@dataclass(frozen=True)
class ConditionList:
    resource: str | None  # the tag's URL, None for untagged lists (the request URL)
    conditions: tuple[Condition, ...]


def parse_if(header: str) -> list[ConditionList]:
    lists: list[ConditionList] = []
    resource: str | None = None
    tagged: bool | None = None
    position = 0
    header = header.strip()
    while position < len(header):
        match = _TOKEN.match(header, position)
        if not match:
            raise BadIfHeader(f"unexpected text at {position}: {header[position:position + 20]!r}")
        position = match.end()
        if match.group(1):  # a resource tag
            if tagged is False:
                raise BadIfHeader("tagged and untagged lists cannot be mixed")
            tagged = True
            resource = match.group(1)[1:-1]
            continue
        if not match.group(2):
            raise BadIfHeader("expected '(' or a resource tag")
        if tagged is None:
            tagged = False
        conditions, position = _parse_list(header, position)
        lists.append(ConditionList(resource, tuple(conditions)))
    if not lists:
        raise BadIfHeader("no condition list")
    return lists


def _parse_list(header: str, position: int) -> tuple[list[Condition], int]:
    conditions: list[Condition] = []
    negated = False
    while True:
        match = _TOKEN.match(header, position)
        if not match:
            raise BadIfHeader(f"unexpected text in a list at {position}")
        position = match.end()
        if match.group(3):
            if negated or not conditions:
                raise BadIfHeader("an empty condition list")
            return conditions, position
        if match.group(5):
            if negated:
                raise BadIfHeader("'Not Not'")
            negated = True
        elif match.group(1):
            conditions.append(Condition(negated, token=match.group(1)[1:-1]))
            negated = False
        elif match.group(4):
            conditions.append(Condition(negated, etag=match.group(4)[1:-1]))
            negated = False
        else:
            raise BadIfHeader("'(' inside a list")


def submitted_tokens(lists: list[ConditionList]) -> set[str]:
    return {c.token for lst in lists for c in lst.conditions if c.token is not None}


def etags_match(current: str | None, wanted: str) -> bool:
    if current is None:
        return False
    return current.removeprefix("W/") == wanted.removeprefix("W/")
