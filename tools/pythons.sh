#!/usr/bin/env bash
# Other CPythons (3.13, 3.14, 3.15) from a Debian sid root filesystem.
#
#   tools/pythons.sh build          build the rootfs (skipped when already complete)
#   tools/pythons.sh run CMD...     run CMD as root inside it, the repo at /src
#   tools/pythons.sh shell          an interactive shell inside it
#   tools/pythons.sh path           print where the rootfs is
#
# The rootfs is build/rootfs-sid/ in the repo unless ASGIGREEN_ROOTFS says
# otherwise. `run` enters private mount and PID namespaces: when CMD ends,
# every process it left behind (a test's PostgreSQL, Redis, gunicorn) is
# killed with it, and nothing is mounted on the host. Networking is the
# host's (loopback included). Needs root and unshare; `build` installs mmdebstrap.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROOTFS="${ASGIGREEN_ROOTFS:-$REPO/build/rootfs-sid}"
SUITE=sid
# Where the repo appears inside.
SRC=/src
# The host's CA bundle (it has the TLS proxy's CA), copied in under this name.
HOST_CA=/etc/ssl/certs/ca-certificates.crt
INNER_CA=/etc/ssl/host-ca-bundle.crt
STAMP_NAME=.asgigreen-rootfs

PACKAGES=(
    python3.13 python3.13-venv python3.13-dev
    python3.14 python3.14-venv python3.14-dev
    python3.15 python3.15-venv python3.15-dev
    build-essential libffi-dev libpq-dev
    postgresql redis-server
    ca-certificates procps
)

die() {
    echo "pythons.sh: $*" >&2
    exit 1
}

need_root() {
    [ "$(id -u)" -eq 0 ] || die "needs root (mmdebstrap --mode=root, unshare, chroot)"
}

# The Debian mirror the host's apt uses (deb.debian.org if none is found).
host_mirror() {
    local url=""
    if compgen -G '/etc/apt/sources.list.d/*.sources' >/dev/null; then
        url="$(awk 'tolower($1) == "uris:" { for (i = 2; i <= NF; i++) print $i }' \
            /etc/apt/sources.list.d/*.sources | grep -E '/debian/?$' | head -n 1 || true)"
    fi
    if [ -z "$url" ]; then
        url="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
            awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break } }' |
            grep -E '/debian/?$' | head -n 1 || true)"
    fi
    echo "${url:-http://deb.debian.org/debian}"
}

# What a complete rootfs's stamp says: the build is redone when this changes.
stamp_text() {
    printf 'suite=%s\nmirror=%s\npackages=%s\n' "$SUITE" "$(host_mirror)" "${PACKAGES[*]}"
}

is_complete() {
    [ -f "$ROOTFS/$STAMP_NAME" ] && [ "$(cat "$ROOTFS/$STAMP_NAME")" = "$(stamp_text)" ]
}

# Files the host provides, refreshed on every build and run (cheap).
sync_host_files() {
    install -m 0644 "$HOST_CA" "$ROOTFS$INNER_CA"
    # pip inside uses the plain PyPI index through the proxy, with the host's
    # CA; the host's constraints file and wheel folder are not carried over.
    cat >"$ROOTFS/etc/pip.conf" <<EOF
[global]
cert = $INNER_CA
timeout = 180
disable-pip-version-check = true
EOF
}

cmd_build() {
    need_root
    if is_complete; then
        echo "pythons.sh: $ROOTFS is complete ($SUITE: ${PACKAGES[*]})"
        sync_host_files
        return 0
    fi
    if ! command -v mmdebstrap >/dev/null && command -v apt-get >/dev/null; then
        echo "pythons.sh: installing mmdebstrap"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null
    fi
    command -v mmdebstrap >/dev/null || die "mmdebstrap is missing: apt-get install mmdebstrap"
    local mirror tmp include started
    mirror="$(host_mirror)"
    tmp="$ROOTFS.partial"
    include="$(IFS=,; echo "${PACKAGES[*]}")"
    rm -rf --one-file-system "$tmp" "$ROOTFS"
    mkdir -p "$(dirname "$ROOTFS")"
    echo "pythons.sh: building $ROOTFS ($SUITE from $mirror)"
    started=$SECONDS
    # The mirror may serve a frozen snapshot whose Release file has expired
    # (the host's apt is told to accept that too).
    mmdebstrap --mode=root --variant=apt --quiet \
        --aptopt='Acquire::Retries "3"' \
        --aptopt='Acquire::Check-Valid-Until "false"' \
        --aptopt='Acquire::Check-Date "false"' \
        --include="$include" \
        --customize-hook='mkdir -p "$1'"$SRC"'"' \
        "$SUITE" "$tmp" "deb $mirror $SUITE main"
    mv "$tmp" "$ROOTFS"
    sync_host_files
    stamp_text >"$ROOTFS/$STAMP_NAME"
    echo "pythons.sh: built $ROOTFS in $((SECONDS - started)) s ($(du -sh "$ROOTFS" | cut -f1))"
}

# The environment inside: nothing of the host's but what is listed here.
inner_env() {
    local -a env=(
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
        HOME=/root
        LANG=C.UTF-8
        LC_ALL=C.UTF-8
        TERM="${TERM:-dumb}"
        PIP_CERT="$INNER_CA"
        SSL_CERT_FILE="$INNER_CA"
        REQUESTS_CA_BUNDLE="$INNER_CA"
        PIP_DISABLE_PIP_VERSION_CHECK=1
        PIP_DEFAULT_TIMEOUT=180
        PIP_ROOT_USER_ACTION=ignore
    )
    local name
    # Passed through when set: CI, the project's own settings, pytest's.
    for name in CI PYTHONFAULTHANDLER PYTEST_ADDOPTS $(compgen -e | grep -E '^ASGIGREEN_' || true); do
        if [ -n "${!name+x}" ]; then env+=("$name=${!name}"); fi
    done
    printf '%s\0' "${env[@]}"
}

# Inside the new namespaces (PID 1 of the new PID namespace): mount, chroot, run.
cmd_inner() {
    local root="$ROOTFS"
    mount --make-rprivate /
    mount --rbind /dev "$root/dev"
    mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/dev/shm"
    mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
    mount --rbind /sys "$root/sys"
    mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/tmp"
    mkdir -p "$root$SRC"
    # Not recursive: the rootfs under build/ shows as a plain tree in /src.
    mount --bind "$REPO" "$root$SRC"
    local file
    for file in /etc/resolv.conf /etc/hosts; do
        [ -e "$root$file" ] || touch "$root$file"
        mount --bind "$(realpath "$file")" "$root$file"
    done
    local -a env=()
    mapfile -d '' env < <(inner_env)
    # This shell stays as PID 1 (it reaps orphans); CMD is its child, in the
    # foreground so that it keeps the terminal. When this shell exits, the
    # kernel kills whatever is left in the namespace.
    local workdir="$SRC"
    if [ "$PWD" = "$REPO" ] || [[ "$PWD" == "$REPO"/* ]]; then workdir="$SRC${PWD#"$REPO"}"; fi
    chroot "$root" /usr/bin/env -i "${env[@]}" /bin/sh -c 'cd "$1" && shift && exec "$@"' \
        sh "$workdir" "$@"
}

cmd_run() {
    need_root
    [ $# -gt 0 ] || die "usage: pythons.sh run CMD..."
    is_complete || die "$ROOTFS is missing or incomplete: run tools/pythons.sh build (make rootfs)"
    sync_host_files
    # exec: a timeout that kills this process kills unshare, and --kill-child
    # then takes the whole namespace down with it.
    exec unshare --mount --pid --fork --mount-proc --kill-child=SIGKILL \
        bash "${BASH_SOURCE[0]}" __inner "$@"
}

# Each branch exits: bash reads a script as it goes, and a run must not
# pick up an edit made to this file while it lasts.
case "${1:-}" in
    build) shift; cmd_build "$@"; exit $? ;;
    run) shift; cmd_run "$@"; exit $? ;;
    shell) shift; cmd_run /bin/bash -l; exit $? ;;
    path) echo "$ROOTFS"; exit 0 ;;
    __inner) shift; cmd_inner "$@"; exit $? ;;
    *) die "usage: pythons.sh build | run CMD... | shell | path" ;;
esac
