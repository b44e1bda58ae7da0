#!/usr/bin/env bash
# Print the folder of PostgreSQL's server binaries (initdb, pg_ctl, postgres), installing
# Debian's postgresql package on first use, so `make test` starts its throwaway clusters
# on a fresh machine. The package's own cluster is not used (the tests make their own).
#   scripts/pg.sh bindir   -> /usr/lib/postgresql/15/bin
set -euo pipefail
find_bindir() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return 0; fi
  done
  return 1
}
case "${1:-bindir}" in
  bindir)
    if ! find_bindir; then
      [ "$(id -u)" = 0 ] || { echo "PostgreSQL is not installed: run 'apt-get install -y postgresql' as root" >&2; exit 1; }
      echo "installing PostgreSQL (Debian package postgresql, first use only)..." >&2
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends postgresql >&2
      find_bindir
    fi ;;
  *) echo "usage: scripts/pg.sh bindir" >&2; exit 2 ;;
esac
