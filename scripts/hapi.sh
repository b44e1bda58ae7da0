#!/usr/bin/env bash
# Print the path of the HAPI FHIR test server's jar (the Maven project in tools/hapi), building
# it on first use into a cache outside the clone, so a fresh CI clone does not rebuild it. The
# cache is keyed by a hash of tools/hapi: the jar is rebuilt only when those sources change.
#   scripts/hapi.sh jar      -> /root/.cache/lcr-sidecar/tools/hapi-3f2a9c1d0b7e/hapi.jar
# The first build downloads about 340 MB of dependencies into ~/.m2 (about a minute).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${LCR_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lcr-sidecar/tools}
case "${1:-}" in
  jar) ;;
  *) echo "usage: scripts/hapi.sh jar" >&2; exit 2 ;;
esac

src="$here/tools/hapi"
hash=$(cd "$src" && find . -type f -not -path './target/*' | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-12)
dest="$cache/hapi-$hash"

if [ ! -f "$dest/hapi.jar" ]; then
  if ! command -v mvn >/dev/null || ! command -v javac >/dev/null; then
    # A machine without Maven or a JDK gets Debian's (CI runs as root).
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "installing maven and a JDK with apt-get..." >&2
      { apt-get update -qq && apt-get install -y -qq maven default-jdk-headless; } >&2
    else
      echo "maven and a JDK (17 or later) are required to build the HAPI FHIR test server (apt-get install maven default-jdk-headless)" >&2
      exit 1
    fi
  fi
  mkdir -p "$cache"
  build=$(mktemp -d "$cache/.hapi-build.XXXXXX")
  trap 'rm -rf "$build"' EXIT
  # Build from a copy: no target/ folder in the clone, and a concurrent build cannot clash.
  (cd "$src" && find . -type f -not -path './target/*' -print0 | xargs -0 cp --parents -t "$build")
  echo "building the HAPI FHIR test server into $dest (first use only; about 1 minute)..." >&2
  if ! (cd "$build" && mvn -B -ntp package) >"$build/build.log" 2>&1; then
    tail -n 60 "$build/build.log" >&2
    echo "building the HAPI FHIR test server failed (above: the end of Maven's output)" >&2
    exit 1
  fi
  mkdir -p "$dest"
  mv "$build/target/hapi.jar" "$dest/hapi.jar.$$" && mv "$dest/hapi.jar.$$" "$dest/hapi.jar"
fi
echo "$dest/hapi.jar"
