#!/usr/bin/env bash
# A Debian base image for deploy/Containerfile, built from Debian's packages alone (for
# machines where no registry serves images): a minbase bookworm with python3, python3-venv
# and ca-certificates, made by mmdebstrap and imported into podman. Prints the image's name.
#
# Idempotent and cached: the tag carries a hash of this file, so an edit here makes a new
# base; an existing image is reused; the tarball is kept under $WAHOOK_CACHE (default
# .cache/, git-ignored) and re-imported when podman's store lost the image. Delete the
# tarball (or the image) to pick up Debian's security updates.
#   DEBIAN_MIRROR  the Debian mirror (default: deb.debian.org)
set -euo pipefail
self=$(realpath "$0")
cd "$(dirname "$self")/.."

suite=bookworm
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
cache=${WAHOOK_CACHE:-.cache}
hash=$(sha256sum "$self" | cut -c1-12)
image=localhost/wahook-base:$suite-$hash
tarball=$cache/wahook-base-$suite-$hash.tar

if podman image exists "$image"; then
  echo "$image"
  exit 0
fi
if [ ! -s "$tarball" ]; then
  mkdir -p "$cache"
  rm -f "$cache/wahook-base-$suite-"*.tar "$cache/wahook-base-$suite-"*.tar.part  # older bases
  echo "base-image: building $tarball with mmdebstrap from $mirror" >&2
  # No documentation, manuals or translations (about a third of the size); no apt lists.
  mmdebstrap --variant=minbase --format=tar --include=python3,python3-venv,ca-certificates \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
    "$suite" "$tarball.part" \
    "deb $mirror $suite main" \
    "deb $mirror $suite-updates main" \
    "deb $security $suite-security main" >&2
  mv "$tarball.part" "$tarball"
fi
echo "base-image: importing $tarball as $image" >&2
podman import --change 'CMD ["/bin/bash"]' "$tarball" "$image" >&2
echo "$image"
