# Shared by the emulation and Docker scripts: build a minimal Debian bookworm root once.
# Usage: . scripts/lib-debootstrap.sh; make_root ARCH DIR [extra packages, comma-separated]

# The Debian mirror this machine's apt already uses (override with DEBIAN_MIRROR).
debian_mirror() {
    if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
    local uri
    uri=$(grep -hoE '(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
          | head -1 | awk '{print $2}')
    [ -n "$uri" ] || { echo "no Debian mirror found in /etc/apt/sources*; set DEBIAN_MIRROR" >&2; return 1; }
    echo "$uri"
}

# Foreign architectures need qemu-user-static registered in binfmt_misc (mounted first if needed).
ensure_binfmt() {
    local arch=$1 qemu
    case "$arch" in arm64) qemu=qemu-aarch64 ;; armhf) qemu=qemu-arm ;; *) return 0 ;; esac
    [ -e /proc/sys/fs/binfmt_misc/status ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    [ -e "/proc/sys/fs/binfmt_misc/$qemu" ] || update-binfmts --enable "$qemu"
    grep -q enabled "/proc/sys/fs/binfmt_misc/$qemu" || { echo "binfmt $qemu is not enabled" >&2; return 1; }
}

make_root() {
    local arch=$1 dir=$2 extra=${3:-}
    if [ -e "$dir/.edgevid-root-ok" ]; then echo "reusing $dir"; return 0; fi
    ensure_binfmt "$arch"
    if grep -q " $dir/" /proc/mounts; then echo "$dir has mounts left from a run: unmount them first" >&2; return 1; fi
    rm -rf "$dir"
    local include=python3,python3-venv,ca-certificates,libgomp1
    [ -n "$extra" ] && include="$include,$extra"
    debootstrap --arch="$arch" --variant=minbase --include="$include" bookworm "$dir" "$(debian_mirror)"
    cp /etc/resolv.conf "$dir/etc/resolv.conf"
    touch "$dir/.edgevid-root-ok"
}
