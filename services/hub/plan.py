"""What the hooks decide for one server, independent of where it runs.

A plan lists the sidecars (command, environment, port, the credential files each reads), the
credentials themselves (kept apart from any environment), the variables the notebook gets,
and — when the notebook runs as the user's own identity — that identity, its passwd/group
entries and its folders. KubeSpawner turns the plan into containers, volumes and a Secret of
the pod (services/hub/pod.py); the local spawner into processes and files.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.identity.claims import Identity
from services.identity.nss import NssEntries
from services.storage.definition import Folder, StorageDefinition


@dataclass
class Sidecar:
    name: str
    args: list[str]
    env: dict[str, str]               # never a credential: those are in secret_files
    port: int
    # Setting (an environment variable of the sidecar) → the key of a credential in
    # SidecarPlan.secrets/secret_refs; the sidecar gets the path of a file holding it.
    secret_files: dict[str, str] = field(default_factory=dict)
    run_as_user: int | None = None    # None: ContainerSettings.run_as_user
    mounts_shared_dir: bool = False   # only sidecars that need the shared folder see it
    socket_setting: str = ""          # locally it listens on a UNIX socket named by this
    url_env: str = ""                 # the notebook variable with its URL
    metrics_port: int = 0             # in a pod: /metrics alone on this port (0: none)


@dataclass
class UserSession:
    """The notebook as the user's own identity (``c.Sidecars.identity_from_claims``)."""

    identity: Identity
    nss: NssEntries
    storage: StorageDefinition | None
    folders: list[Folder]
    home: str | None                  # $HOME inside the pod (the home folder's path)


# LXCFS' views (lxcfs 5) that free, top, htop, nproc and uptime read.
LXCFS_FILES = ("proc/cpuinfo", "proc/diskstats", "proc/loadavg", "proc/meminfo", "proc/stat",
               "proc/swaps", "proc/uptime", "sys/devices/system/cpu/online")


@dataclass(frozen=True)
class Lxcfs:
    """LXCFS mounted at ``root`` on the machine; each file mounted over ``/<file>``."""

    root: str
    files: tuple[str, ...] = LXCFS_FILES


@dataclass
class SidecarPlan:
    sidecars: list[Sidecar] = field(default_factory=list)
    notebook_env: dict[str, str] = field(default_factory=dict)
    # Variables the notebook gets unless its environment already sets them (a profile's own
    # ``environment`` wins): the thread-pool sizes.
    notebook_env_defaults: dict[str, str] = field(default_factory=dict)
    shared_dir: str | None = None  # an emptyDir mounted in the notebook and some sidecars
    # Read by the metrics node agent: the profile and the walltime of this server.
    pod_annotations: dict[str, str] = field(default_factory=dict)
    # Credentials of this server (key → value): one Secret per server in Kubernetes, files
    # readable by root only locally. Each is mounted into the one container that needs it.
    secrets: dict[str, str] = field(default_factory=dict)
    # Credentials an operator keeps in a Secret of their own (key → (Secret name, its key)).
    secret_refs: dict[str, tuple[str, str]] = field(default_factory=dict)
    session: UserSession | None = None
    lxcfs: Lxcfs | None = None


@dataclass(frozen=True)
class ContainerSettings:
    """How sidecar containers look in a pod."""

    image: str
    pull_policy: str
    resources: dict[str, object]
    run_as_user: int
