"""The storage definition: pod volumes, and the folders each user gets from them.

A YAML document (``c.Sidecars.storage``/``storage_file`` for the hub, ``KUBEPIE_STORAGE_FILE``
for kubepie — the same document)::

    volumes:                      # pod volumes, exactly as in a Pod spec
      - name: homes
        nfs: {server: nfs.example.org, path: /export/home}
      - name: groups
        nfs: {server: nfs.example.org, path: /export/groups}
    mounts:                       # kubepie serves each at /<name>/
      - {name: home, volume: homes, subPath: "{username}", path: "/home/{username}"}
      - {name: data, volume: homes, subPath: shared, readOnly: true}
    groupMounts:                  # one per mapped group; kubepie serves /groups/<group>/
      {volume: groups, subPath: "{group}", path: "/groups/{group}"}

``{username}``, ``{uid}``, ``{gid}`` (and ``{group}`` in ``groupMounts``) are filled in from
the identity. ``path`` is where the notebook sees the folder (default ``/<name>``, groups
``/groups/<group>``); the mount named ``home`` (or the one with ``home: true``) is the
notebook's ``$HOME``. Without Kubernetes (the embedded default) the ``hostPath`` volumes are
folders of this machine: a mount's folder is the volume's path joined with its subPath.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from services.identity.claims import Identity

FIELD = re.compile(r"\{(\w+)\}")
USER_FIELDS = frozenset({"username", "uid", "gid"})
MOUNT_KEYS = frozenset({"name", "volume", "subPath", "readOnly", "path", "home"})
NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,40}")


@dataclass(frozen=True)
class Folder:
    """One folder of a user: where it comes from and where each side shows it."""

    name: str                   # kubepie serves /<name>/ (a group: group-<g>, /groups/<g>/)
    volume: str                 # the pod volume it is part of
    sub_path: str               # inside the volume ("" for the whole volume)
    path: str                   # where the notebook sees it
    read_only: bool
    home: bool

    def volume_mount(self, mount_path: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": self.volume, "mountPath": mount_path}
        if self.sub_path:
            entry["subPath"] = self.sub_path
        if self.read_only:
            entry["readOnly"] = True
        return entry


@dataclass(frozen=True)
class StorageDefinition:
    volumes: tuple[dict[str, Any], ...]
    mounts: tuple[dict[str, Any], ...]
    group_mount: dict[str, Any] | None

    @classmethod
    def load(cls, path: Path) -> StorageDefinition:
        try:
            document = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"{path}: {exc}") from None
        return cls.parse(document, str(path))

    @classmethod
    def parse(cls, document: Any, where: str = "storage") -> StorageDefinition:
        if not isinstance(document, Mapping):
            raise ValueError(f"{where}: expected a mapping with volumes, mounts, groupMounts")
        unknown = set(document) - {"volumes", "mounts", "groupMounts"}
        if unknown:
            raise ValueError(f"{where}: unknown key {sorted(unknown)[0]!r}")
        volumes = tuple(dict(v) for v in document.get("volumes") or [])
        names = [v.get("name") for v in volumes]
        if len(set(names)) != len(names) or None in names:
            raise ValueError(f"{where}: every volume needs a distinct name")
        mounts = tuple(dict(m) for m in document.get("mounts") or [])
        group = document.get("groupMounts")
        for mount in (*mounts, *([group] if group else [])):
            if not isinstance(mount, Mapping) or mount.get("volume") not in names:
                raise ValueError(f"{where}: mount {mount!r} names no volume of 'volumes'")
            extra = set(mount) - MOUNT_KEYS
            if extra:
                raise ValueError(f"{where}: mount {mount!r}: unknown key {sorted(extra)[0]!r}")
            for key in ("subPath", "path"):
                value = str(mount.get(key, ""))
                allowed = USER_FIELDS | ({"group"} if mount is group else set())
                unknown_fields = set(FIELD.findall(value)) - allowed
                if unknown_fields:
                    raise ValueError(f"{where}: mount {mount!r}: unknown field "
                                     f"{{{sorted(unknown_fields)[0]}}} in {key}")
            if ".." in str(mount.get("subPath", "")).split("/"):
                raise ValueError(f"{where}: mount {mount!r}: subPath may not contain '..'")
            if mount.get("path") and not str(mount["path"]).startswith("/"):
                raise ValueError(f"{where}: mount {mount!r}: path must be absolute")
        seen = set()
        for mount in mounts:
            name = str(mount.get("name", ""))
            if not NAME.fullmatch(name) or name == "groups":
                raise ValueError(f"{where}: mount {mount!r} needs a name like home or data")
            if name in seen:
                raise ValueError(f"{where}: two mounts are named {name!r}")
            seen.add(name)
        if sum(1 for m in mounts if m.get("home")) > 1:
            raise ValueError(f"{where}: only one mount can be home")
        if not mounts and not group:
            raise ValueError(f"{where}: give at least one mount")
        return cls(volumes, mounts, dict(group) if group else None)

    def folders(self, identity: Identity) -> list[Folder]:
        """The identity's folders, in a stable order."""
        values = {"username": identity.username, "uid": str(identity.uid),
                  "gid": str(identity.gid)}
        explicit_home = any(m.get("home") for m in self.mounts)
        folders = [
            Folder(name=str(m["name"]), volume=str(m["volume"]),
                   sub_path=fill(str(m.get("subPath", "")), values),
                   path=fill(str(m.get("path") or f"/{m['name']}"), values),
                   read_only=bool(m.get("readOnly", False)),
                   home=bool(m.get("home")) if explicit_home else m["name"] == "home")
            for m in self.mounts]
        if self.group_mount:
            mount = self.group_mount
            for group in identity.groups:
                each = {**values, "group": group}
                folders.append(Folder(
                    name=f"group-{group}", volume=str(mount["volume"]),
                    sub_path=fill(str(mount.get("subPath", "")), each),
                    path=fill(str(mount.get("path") or "/groups/{group}"), each),
                    read_only=bool(mount.get("readOnly", False)), home=False))
        return folders

    def pod_volumes(self, identity: Identity) -> list[dict[str, Any]]:
        """The volumes a pod needs for the identity's folders (templated fields filled in)."""
        values = {"username": identity.username, "uid": str(identity.uid),
                  "gid": str(identity.gid)}
        used = {f.volume for f in self.folders(identity)}
        return [fill(v, values) for v in self.volumes if v["name"] in used]

    def local_folder(self, folder: Folder) -> str:
        """Where ``folder`` is on this machine (hostPath volumes only)."""
        volume = next(v for v in self.volumes if v["name"] == folder.volume)
        host = volume.get("hostPath")
        if not isinstance(host, Mapping) or not host.get("path"):
            raise ValueError(f"volume {folder.volume!r} is not a hostPath volume: without "
                             "Kubernetes only hostPath volumes are folders of this machine")
        return posixpath.normpath(posixpath.join(str(host["path"]), folder.sub_path))

    def home(self, identity: Identity) -> Folder | None:
        return next((f for f in self.folders(identity) if f.home), None)


def fill(value: Any, values: Mapping[str, str]) -> Any:
    """``{field}`` filled in wherever it appears in strings, lists and mappings."""
    if isinstance(value, str):
        return FIELD.sub(lambda m: values.get(m.group(1), m.group(0)), value)
    if isinstance(value, list):
        return [fill(v, values) for v in value]
    if isinstance(value, Mapping):
        return {k: fill(v, values) for k, v in value.items()}
    return value
