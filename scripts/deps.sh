#!/usr/bin/env bash
# Installs what the tests, the demo and the benchmarks need on a fresh machine of this kind:
# Debian packages (only when missing; needs root) and the npm packages, then builds.
set -euo pipefail
cd "$(dirname "$0")/.."
APT_PKGS=(bubblewrap fuse3 squid docker-registry umoci skopeo squashfs-tools squashfuse nginx-light
  busybox-static apache2-utils mmdebstrap jq curl uidmap attr sqlite3 zstd wrk rsync
  chromium libcurl4-openssl-dev)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "deps: installing Debian packages: ${missing[*]}" >&2
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "deps: missing Debian packages (run as root to install): ${missing[*]}" >&2
  fi
fi
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund >&2
else
  # An addon's source changed since npm ci built it (a pull on an installed tree).
  if [ native/fuse-ioctl/fuse_ioctl.c -nt native/fuse-ioctl/build/Release/fuse_ioctl.node ]; then
    npm rebuild gridbox-fuse-ioctl >&2 || echo "deps: the gridbox-fuse-ioctl addon did not build: no passthrough, mounts through mount(8)" >&2
  fi
  if [ native/object-fetch/object_fetch.c -nt native/object-fetch/build/Release/object_fetch.node ]; then
    npm rebuild gridbox-object-fetch >&2 || echo "deps: the gridbox-object-fetch addon did not build: objects download through Node's http" >&2
  fi
fi
# Drop compiled files whose source is gone, so a stale *.test.js never runs.
if [ -d dist ]; then
  find dist -name '*.js' | while read -r js; do
    src="src/${js#dist/}"; [ -f "${src%.js}.ts" ] || rm -f "$js"
  done
fi
npx tsc -p tsconfig.json
# The mount daemon's bundle (src/cli/commands/mountd-bundle.ts): bin/gridbox starts a mount without a node
# front only when it exists. Built again only when the compiled sources changed since.
node dist/cli/build-mountd-bundle.js || true
