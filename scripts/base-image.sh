#!/bin/sh
# The base image of every trackpipe image, made from Debian's own packages: no image registry
# is needed. `debootstrap --variant=minbase bookworm` builds a root file system from the Debian
# mirror this machine's apt uses; `docker import` makes it an image.
#
#   sh scripts/base-image.sh IMAGE      (make images runs it: IMAGE is trackpipe/debian:bookworm)
#
# Cached twice: the image itself (nothing is done when the engine has it), and the root file
# system as a tarball in ~/.cache/trackpipe, so a new engine imports it in seconds instead of
# bootstrapping again (about a minute). Delete the tarball to build a fresh one.
set -eu

IMAGE=${1:?usage: $0 IMAGE}
SUITE=bookworm
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/trackpipe"
TARBALL="$CACHE/debian-$SUITE-minbase.tar"

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    exit 0
fi

# The first mirror apt is configured with for $SUITE (deb822 .sources files or one-line
# sources.list entries); DEBIAN_MIRROR overrides it.
apt_mirror() {
    for file in /etc/apt/sources.list.d/*.sources; do
        [ -f "$file" ] || continue
        awk -v suite="$SUITE" '
            /^[ \t]*$/ { if (uri && ours) { print uri; exit } uri = ""; ours = 0; next }
            $1 == "URIs:" { uri = $2 }
            $1 == "Suites:" { for (i = 2; i <= NF; i++) if ($i == suite) ours = 1 }
            END { if (uri && ours) print uri }' "$file"
    done
    cat /etc/apt/sources.list 2>/dev/null |
        awk -v suite="$SUITE" '$1 == "deb" && $3 == suite { print $2 }'
}

if [ ! -f "$TARBALL" ]; then
    command -v debootstrap >/dev/null 2>&1 || {
        echo "base-image: debootstrap is not installed: run \`sh scripts/system-deps.sh compose\`" >&2
        exit 1
    }
    [ "$(id -u)" = 0 ] || { echo "base-image: debootstrap needs root" >&2; exit 1; }
    MIRROR=${DEBIAN_MIRROR:-$(apt_mirror | head -n 1)}
    [ -n "$MIRROR" ] || {
        echo "base-image: no Debian $SUITE mirror in /etc/apt/sources.list*; set DEBIAN_MIRROR" >&2
        exit 1
    }
    mkdir -p "$CACHE"
    ROOT=$(mktemp -d "$CACHE/debootstrap.XXXXXX")
    trap 'rm -rf "$ROOT" "$TARBALL.partial"' EXIT
    echo "base-image: debootstrap --variant=minbase $SUITE from $MIRROR (about a minute)" >&2
    if ! debootstrap --variant=minbase "$SUITE" "$ROOT" "$MIRROR" >"$ROOT.log" 2>&1; then
        tail -n 20 "$ROOT.log" >&2
        rm -f "$ROOT.log"
        exit 1
    fi
    rm -f "$ROOT.log"
    # what the build machine wrote into it, and what apt downloaded: not the image's
    rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/* "$ROOT"/tmp/*
    : >"$ROOT/etc/hostname"
    : >"$ROOT/etc/resolv.conf"
    tar --numeric-owner -C "$ROOT" -cf "$TARBALL.partial" .
    mv "$TARBALL.partial" "$TARBALL"
fi

echo "base-image: importing $TARBALL as $IMAGE" >&2
docker import --change 'CMD ["/bin/bash"]' "$TARBALL" "$IMAGE" >/dev/null
