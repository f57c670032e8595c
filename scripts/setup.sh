#!/usr/bin/env bash
# Sets up everything `make demo` and `make test` need, installing only what is missing:
# a Python >= 3.11 virtualenv with the package and its test/demo extras, Node.js for
# JupyterHub's configurable-http-proxy (npm ci into ./node_modules).
# With CI=true every missing tool is installed or the run fails; nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

apt_install() {
  # Debian packages, installed only when missing, only where we may (root + apt).
  local missing=()
  for pkg in "$@"; do
    # "install ok installed" only: a removed package keeps a dpkg entry (config-files).
    [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" = "install ok installed" ] \
      || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "need Debian packages: ${missing[*]} (no apt-get here)"
  say "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}

# Python >= 3.11 with venv.
command -v "$PYTHON" >/dev/null || die "$PYTHON not found; install Python 3.11 or newer"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || die "Python 3.11 or newer is needed ($PYTHON is $("$PYTHON" -V 2>&1))"

# As root, notebooks, sidecars and file servers run as the users' own uids (the embedded
# default drops privileges like a pod's securityContext): the interpreter must be one that
# other users can run. A Python installed under /root (pyenv) is not; Debian's is.
runs_for_others() {
  [ "$(id -u)" -ne 0 ] && return 0
  setpriv --reuid=65534 --regid=65534 --clear-groups -- "$1" -c 'import sys' 2>/dev/null
}
if ! runs_for_others "$(command -v "$PYTHON")"; then
  fallback=/usr/bin/python3
  if [ -x "$fallback" ] && "$fallback" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
      && runs_for_others "$fallback"; then
    say "$PYTHON cannot be run by other users (the notebooks run as the users' uids); using $fallback"
    PYTHON=$fallback
  else
    die "$PYTHON cannot be run by other users, and no usable $fallback (3.11+): notebooks and file servers run as the users' own uids. Install Debian's python3 (apt-get install python3 python3-venv)"
  fi
fi
if ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  apt_install python3-venv
fi
# A virtualenv made earlier from an interpreter other users cannot run is made again.
if [ -x "$VENV/bin/python" ] && ! runs_for_others "$VENV/bin/python"; then
  say "recreating $VENV: its interpreter cannot be run by other users"
  rm -rf "$VENV"
fi

# Node.js + npm: configurable-http-proxy, and the package build compiles the JupyterLab
# extension (labextension/) with it.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  apt_install nodejs npm
fi

# The virtualenv, reinstalled when pyproject.toml or the extension's sources change.
stamp=$VENV/.installed
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
stale=$(find pyproject.toml hatch_build.py labextension/src labextension/style \
  labextension/package.json labextension/package-lock.json -newer "$stamp" 2>/dev/null | head -1 || true)
if [ ! -f "$stamp" ] || [ -n "$stale" ]; then
  say "installing Python packages (pip install -e '.[test,demo]')"
  "$VENV/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  "$VENV/bin/python" -m pip install -q -e '.[test,demo]' 2>&1 \
    | grep -v "^WARNING: Location" || true
  "$VENV/bin/python" -c 'import services, jupyterhub, pytest' \
    || die "Python packages did not install"
  [ -f "$VENV/share/jupyter/labextensions/jupyterhub-sidecars-status/package.json" ] \
    || die "the JupyterLab extension was not built into $VENV"
  touch "$stamp"
fi

# The hub side is also tested against what Zero to JupyterHub 4.2.0's hub image ships
# (JupyterHub 5.3.0, KubeSpawner 7.0.0: the `z2jh-hub` extra), from a second virtualenv.
Z2JH_VENV=.venv-z2jh
z2jh_stamp=$Z2JH_VENV/.installed
if [ -x "$Z2JH_VENV/bin/python" ] && ! runs_for_others "$Z2JH_VENV/bin/python"; then
  rm -rf "$Z2JH_VENV"
fi
if [ ! -f "$z2jh_stamp" ] || [ -n "$(find pyproject.toml -newer "$z2jh_stamp" 2>/dev/null)" ]; then
  say "installing the Zero to JupyterHub 4.2 hub versions into $Z2JH_VENV (pip install -e '.[z2jh-hub]')"
  [ -x "$Z2JH_VENV/bin/python" ] || "$PYTHON" -m venv "$Z2JH_VENV"
  "$Z2JH_VENV/bin/python" -m pip install -q -e '.[z2jh-hub]' 2>&1 \
    | grep -v "^WARNING: Location" || true
  "$Z2JH_VENV/bin/python" -c 'import jupyterhub, services; assert jupyterhub.__version__ == "5.3.0"' \
    || die "the JupyterHub 5.3 virtualenv did not install"
  touch "$z2jh_stamp"
fi

# Real clients the tests use: oidc-token (oidc-agent-cli) talks to the tokenhelper's socket.
command -v oidc-token >/dev/null || apt_install oidc-agent-cli
# ... and the NorduGrid ARC 6 client sends the tokenhelper's bearer token.
command -v arccp >/dev/null || apt_install nordugrid-arc-client
# ... and glewlwyd is the OIDC provider that rotates refresh tokens. Its package asks a
# configuration question that breaks a non-interactive install unless answered first.
if ! command -v glewlwyd >/dev/null; then
  echo "glewlwyd glewlwyd/config_type select No configuration" | $SUDO debconf-set-selections
  apt_install glewlwyd
fi

# WebDAV clients the kubepie file server is tested with: the litmus suites, rclone, cadaver,
# davix (gfal2's HTTP library) and gfal2.
command -v litmus >/dev/null || apt_install litmus
command -v rclone >/dev/null || apt_install rclone
command -v cadaver >/dev/null || apt_install cadaver
command -v davix-put >/dev/null || apt_install davix
# gfal2 itself (what gfal-copy, FTS and Rucio use), through Debian's python3 binding, with its
# HTTP/WebDAV and local-file plugins: copies verified with the storage's checksums.
apt_install python3-gfal2 gfal2-plugin-http gfal2-plugin-file
# rclone mount (the tests, and the demo banner's recipe) needs FUSE 3's fusermount3.
command -v fusermount3 >/dev/null || apt_install fuse3
command -v wget >/dev/null || apt_install wget  # share links: wget -r of a folder link
# Which processes serve a port (ss) and whose children they are (pgrep): the file server's
# worker processes and the leak checks.
command -v ss >/dev/null || [ -x /usr/sbin/ss ] || [ -x /usr/bin/ss ] || apt_install iproute2
command -v pgrep >/dev/null || apt_install procps
# Disk usage against real filesystems (loop-mounted ext4 and xfs; xfs_io sets project ids)
# and the container's limits in `free` (LXCFS, a FUSE filesystem).
command -v mkfs.ext4 >/dev/null || [ -x /usr/sbin/mkfs.ext4 ] || apt_install e2fsprogs
command -v mkfs.xfs >/dev/null || [ -x /usr/sbin/mkfs.xfs ] || apt_install xfsprogs
command -v lxcfs >/dev/null || apt_install lxcfs
# kubectl kustomize renders deploy/'s kustomize bases and the example overlay (Debian's
# kubernetes-client; any newer kubectl already on the machine does too).
command -v kubectl >/dev/null || apt_install kubernetes-client
# nginx in front of the kubepie gateway (auth_request mode, deploy/kubepie/nginx/).
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || apt_install nginx-light
# The images of deploy/images/ built and run (tests/test_images.py): podman with runc (crun
# refuses the hybrid cgroups of these machines), and debootstrap for the offline base image.
command -v podman >/dev/null || apt_install podman
command -v runc >/dev/null || [ -x /usr/sbin/runc ] || apt_install runc
command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || apt_install debootstrap

# promtool checks the metrics agent's exposition format. Only the tool is needed, not the
# Prometheus server: unpack Debian's package into .tools/ instead of installing the service.
if [ ! -x .tools/prometheus/usr/bin/promtool ]; then
  say "unpacking promtool from Debian's prometheus package into .tools/"
  command -v apt-get >/dev/null || die "need apt-get to fetch promtool (Debian package prometheus)"
  mkdir -p .tools/prometheus
  tmp=$(mktemp -d)
  ( cd "$tmp" && { apt-get download prometheus >/dev/null 2>&1 \
      || { $SUDO apt-get update -qq >/dev/null && apt-get download prometheus >/dev/null; }; } )
  dpkg -x "$tmp"/prometheus_*.deb .tools/prometheus
  rm -rf "$tmp"
  [ -x .tools/prometheus/usr/bin/promtool ] || die "promtool did not unpack"
fi

# The JupyterLab extension's unit tests (vitest) need its node_modules; the package build
# installs them, this catches a checkout where they were removed since.
if [ ! -x labextension/node_modules/.bin/vitest ]; then
  say "installing the JupyterLab extension's build and test tools (npm install from the lockfile in labextension/)"
  ( cd labextension && npm install --no-save --no-audit --no-fund --loglevel=error >/dev/null )
fi

# Headless Chromium for the end-to-end test of the status bar (driven by Playwright).
command -v chromium >/dev/null || apt_install chromium

if [ ! -x node_modules/.bin/configurable-http-proxy ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing configurable-http-proxy (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
fi
[ -x node_modules/.bin/configurable-http-proxy ] || die "configurable-http-proxy did not install"
say "ready"
