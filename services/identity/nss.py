"""passwd and group entries for a mapped identity, so ``id``, ``whoami`` and ``ls -l`` show
names inside an image that has never heard of the user.

The entries are merged into the image's own ``/etc/passwd`` and ``/etc/group`` by a small
POSIX shell script (``MERGE_SCRIPT``) that runs *in the notebook image* (an init container in
the pod; the same script locally), so the image's own accounts keep working, and the result
is mounted read-only over the image's files. Lines of the image that clash with ours (same
user name or uid; same group name or gid) are dropped: the identity from the login wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from services.identity.claims import Identity

NSS_DIR = "/run/sidecars-nss"  # where the init container writes passwd and group


@dataclass(frozen=True)
class NssEntries:
    passwd: str                     # one passwd line
    group: str                      # group lines, newline-separated
    clashing_names: tuple[str, ...]  # user and group names ours replace
    clashing_ids: tuple[int, ...]    # gids ours replace

    def env(self, identity: Identity) -> dict[str, str]:
        """What MERGE_SCRIPT reads (none of it is a credential)."""
        return {"NSS_USER": identity.username, "NSS_UID": str(identity.uid),
                "NSS_PASSWD": self.passwd, "NSS_GROUP": self.group,
                "NSS_GROUP_NAMES": " ".join(self.clashing_names),
                "NSS_GIDS": " ".join(map(str, self.clashing_ids)), "NSS_DIR": NSS_DIR}


def entries_for(identity: Identity, group_gids: Mapping[str, int], home: str,
                shell: str = "/bin/bash") -> NssEntries:
    """The user's passwd line and a group line per group it belongs to.

    The primary group is named after the user (user private groups) unless one of the mapped
    groups has that gid; supplementary groups carry the user as a member.
    """
    named = {gid: name for name, gid in group_gids.items() if name in identity.groups}
    primary = named.get(identity.gid, identity.username)
    lines = [f"{primary}:x:{identity.gid}:"]
    lines += [f"{named[gid]}:x:{gid}:{identity.username}" for gid in identity.gids
              if gid in named]
    gecos = identity.username
    passwd = f"{identity.username}:x:{identity.uid}:{identity.gid}:{gecos}:{home}:{shell}"
    names = tuple(sorted({primary, *(named[g] for g in identity.gids if g in named)}))
    ids = tuple(sorted({identity.gid, *(g for g in identity.gids if g in named)}))
    return NssEntries(passwd, "\n".join(lines), names, ids)


# POSIX sh only (read, case, printf): any image with /bin/sh runs it, busybox included.
MERGE_SCRIPT = r"""set -eu
umask 022
merge() {  # merge SOURCE TARGET KEEP-FUNCTION ADDED-LINES (shell builtins only)
  : > "$2"
  while IFS= read -r line || [ -n "$line" ]; do
    if "$3" "$line"; then printf '%s\n' "$line" >> "$2"; fi
  done < "$1"
  printf '%s\n' "$4" >> "$2"
}
keep_user() {
  name=${1%%:*}; rest=${1#*:}; rest=${rest#*:}; uid=${rest%%:*}
  [ "$name" != "$NSS_USER" ] && [ "$uid" != "$NSS_UID" ]
}
keep_group() {
  name=${1%%:*}; rest=${1#*:}; rest=${rest#*:}; gid=${rest%%:*}
  for other in $NSS_GROUP_NAMES; do [ "$name" = "$other" ] && return 1; done
  for other in $NSS_GIDS; do [ "$gid" = "$other" ] && return 1; done
  return 0
}
merge "${NSS_ETC:-/etc}/passwd" "$NSS_DIR/passwd" keep_user "$NSS_PASSWD"
merge "${NSS_ETC:-/etc}/group" "$NSS_DIR/group" keep_group "$NSS_GROUP"
"""
