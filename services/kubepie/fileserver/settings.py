"""Settings of the per-user WebDAV/HTTPS file server."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from services.kubepie.fileserver.mounts import Mount, parse_mounts
from services.runtime.quantities import parse_bytes
from services.runtime.settings import Duration, Port, ServiceSettings, secret_from

DEFAULT_PORT = 8770
RESERVED_NAMES = frozenset({"healthz", "metrics"})  # the service's own routes


class FileserverSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="FILESERVER_", extra="ignore",
                                      populate_by_name=True)

    mounts: str = Field(description="folders to serve, name=/folder,…: home=/home/alice is "
                                    "served at /home/, group-xray=/groups/xray at /groups/xray/")
    read_only: str = Field("", description="names of mounts that refuse every change, e.g. data")
    port: Port = Field(DEFAULT_PORT, description="port for WebDAV, /healthz and /metrics (set "
                                                 "FILESERVER_HOST=0.0.0.0 in a pod)")
    uid: int | None = Field(None, ge=1, description="when started as root: the uid to run as "
                                                    "(root itself is refused)")
    gid: int | None = Field(None, ge=0, description="when started as root: the primary gid")
    groups: str = Field("", description="when started as root: supplementary gids, e.g. "
                                        "1001,2000 (none when empty)")
    max_upload_size: str = Field("0", description="largest PUT body, e.g. 100Gi; 0: no limit "
                                                  "(quota and disk space still apply)")
    max_xml_size: str = Field("1Mi", description="largest PROPFIND/PROPPATCH/LOCK body")
    lock_timeout: Duration = Field(3600.0, description="longest lock a client can get (and "
                                                       "what 'Infinite' means)")
    fsync: bool = Field(False, description="fsync each uploaded file before it replaces the "
                                           "old one (survives a node crash; slower PUTs)")
    processes: int = Field(1, ge=1, le=64, description="processes serving the port together "
                                                        "(SO_REUSEPORT), sharing one lock "
                                                        "table: up to the pod's CPUs")
    access_token: SecretStr | None = Field(
        None, description="when set, every WebDAV request must carry 'Authorization: Bearer "
                          "<it>' (the gateway's; /healthz and /metrics stay open)")
    access_token_file: Path | None = Field(None, description="file holding that token")

    @model_validator(mode="after")
    def _check(self) -> Self:
        names = frozenset(n.strip() for n in self.read_only.split(",") if n.strip())
        self._mounts = parse_mounts(self.mounts, names)
        for mount in self._mounts:
            if mount.segments[0] in RESERVED_NAMES:
                raise ValueError(f"/{mount.segments[0]}/ is the service's own route; "
                                 "give the mount another name")
        self._max_upload = parse_bytes(self.max_upload_size)
        self._max_xml = parse_bytes(self.max_xml_size)
        if self._max_xml < 1024:
            raise ValueError("FILESERVER_MAX_XML_SIZE below 1Ki would refuse ordinary requests")
        self._groups = tuple(_gid(g) for g in self.groups.split(",") if g.strip())
        if (self.uid is None) != (self.gid is None):
            raise ValueError("give FILESERVER_UID and FILESERVER_GID together")
        if self.access_token_file is not None or self.access_token is not None:
            self.access_token = secret_from(self.access_token, self.access_token_file,
                                            "FILESERVER_ACCESS_TOKEN")
        if self.lock_timeout <= 0:
            raise ValueError("FILESERVER_LOCK_TIMEOUT must be positive")
        return self

    @property
    def mount_table(self) -> tuple[Mount, ...]:
        return self._mounts

    @property
    def max_upload_bytes(self) -> int | None:
        return self._max_upload or None

    @property
    def max_xml_bytes(self) -> int:
        return self._max_xml

    @property
    def group_ids(self) -> tuple[int, ...]:
        return self._groups


def _gid(text: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError(f"FILESERVER_GROUPS: {text.strip()!r} is not a numeric gid") from None
    if value < 0:
        raise ValueError(f"FILESERVER_GROUPS: {value} is not a gid")
    return value
