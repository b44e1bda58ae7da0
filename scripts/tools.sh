#!/usr/bin/env bash
# Print the path of a pinned tool (opa or regal), building it with `go install` on
# first use into a cache outside the clone, so a fresh CI clone does not rebuild it.
# A binary already on PATH is used as is when its version matches the pin.
#   scripts/tools.sh opa      -> /root/.cache/lcr-sidecar/tools/opa-v1.22.3/opa
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=/dev/null
. "$here/tools/versions.env"
cache=${LCR_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lcr-sidecar/tools}
tool=${1:?usage: scripts/tools.sh opa|regal}

case "$tool" in
  opa)   version=$OPA_VERSION ;;
  regal) version=$REGAL_VERSION ;;
  *) echo "unknown tool: $tool (expected opa or regal)" >&2; exit 2 ;;
esac

if found=$(command -v "$tool" 2>/dev/null); then
  if "$found" version 2>/dev/null | grep -Eq "^Version: *v?${version#v}\$"; then
    echo "$found"; exit 0
  fi
fi

dest="$cache/$tool-$version"
if [ ! -x "$dest/$tool" ]; then
  command -v go >/dev/null || { echo "go is required to build $tool $version (apt-get install golang)" >&2; exit 1; }
  mkdir -p "$dest"
  echo "building $tool $version into $dest (first use only)..." >&2
  if [ "$tool" = opa ]; then
    GOBIN="$dest" GOFLAGS=-mod=mod go install "github.com/open-policy-agent/opa@$version" >&2
  else
    # The module proxy serves Regal's versions but not its version list, which
    # `go install pkg@version` asks for; installing from a pinned module avoids that.
    (cd "$here/tools/regal" && GOBIN="$dest" go install github.com/open-policy-agent/regal) >&2
  fi
fi
echo "$dest/$tool"
