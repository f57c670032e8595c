"""Which folders a user's file server serves: templates filled in from the identity."""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.identity.claims import Identity

FIELD = re.compile(r"\{(\w+)\}")
USER_FIELDS = {"username", "uid", "gid"}


@dataclass(frozen=True)
class MountTemplates:
    """``home=/home/{username},data=/data`` plus one ``group-<g>=/groups/{group}`` per group."""

    user: tuple[tuple[str, str], ...]
    per_group: str | None = None
    read_only: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, spec: str, group_folder: str = "", read_only: str = "") -> MountTemplates:
        pairs = []
        for item in filter(None, (p.strip() for p in spec.split(","))):
            name, sep, folder = item.partition("=")
            if not sep or not name.strip() or not folder.strip().startswith("/"):
                raise ValueError(f"{item!r}: expected name=/folder, e.g. home=/home/{{username}}")
            _check_fields(item, folder, USER_FIELDS)
            pairs.append((name.strip(), folder.strip()))
        if group_folder:
            if not group_folder.startswith("/"):
                raise ValueError(f"{group_folder!r}: expected /folder/{{group}}")
            _check_fields(group_folder, group_folder, USER_FIELDS | {"group"})
        if not pairs and not group_folder:
            raise ValueError("give at least one mount, e.g. home=/home/{username}")
        return cls(tuple(pairs), group_folder or None,
                   frozenset(n.strip() for n in read_only.split(",") if n.strip()))

    def expand(self, identity: Identity) -> list[tuple[str, str]]:
        """(mount name, folder) pairs for this identity, in a stable order."""
        values = {"username": identity.username, "uid": str(identity.uid),
                  "gid": str(identity.gid)}
        result = [(name, folder.format(**values)) for name, folder in self.user]
        if self.per_group:
            result += [(f"group-{g}", self.per_group.format(**values, group=g))
                       for g in identity.groups]
        return result


def _check_fields(item: str, template: str, allowed: set[str]) -> None:
    unknown = set(FIELD.findall(template)) - allowed
    if unknown:
        raise ValueError(f"{item!r}: unknown field {{{sorted(unknown)[0]}}}; "
                         f"use {', '.join('{' + f + '}' for f in sorted(allowed))}")
