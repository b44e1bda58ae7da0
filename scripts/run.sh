#!/usr/bin/env bash
# `make run`: the whole thing on this machine, on embedded defaults.
#   bundle server :8282 → OPA :8181 ← sidecar :8080 → demo LCR upstream :8090
# Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${VENV:-.venv}/bin
OPA=$(scripts/tools.sh opa)
SIDECAR_PORT=${SIDECAR_PORT:-8080}
OPA_PORT=${OPA_PORT:-8181}
BUNDLE_PORT=${BUNDLE_PORT:-8282}
UPSTREAM_PORT=${UPSTREAM_PORT:-8090}
mkdir -p var/log

pids=()
stop() { trap - INT TERM EXIT; echo; echo "stopping..."; kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap 'stop; exit 0' INT TERM
trap stop EXIT

wait_for() {  # url name log
  for _ in $(seq 1 100); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "$2 did not start; see $3" >&2; tail -20 "$3" >&2; exit 1
}

revision=$("$PY/python" -m bundles.build --out var/bundles)
echo "built and signed policy bundle $revision (DEV-ONLY signing key)"
# The care app's roster of service users (who each care service looks after): a bundle of
# its own. Publish a changed roster the same way; OPA picks it up within seconds.
ROSTER_FILE=${ROSTER_FILE:-dev/roster.json}
roster_revision=$("$PY/python" -m bundles.roster "$ROSTER_FILE" --out var/bundles)
echo "built and signed roster bundle $roster_revision from $ROSTER_FILE"
"$PY/python" -m bundles.opa_config --out var/opa/config.yaml --persistence-directory var/opa/persist >/dev/null

"$PY/gunicorn" --bind "127.0.0.1:$BUNDLE_PORT" --workers 1 "bundles.serve:create_app('var/bundles/serve')" \
  >var/log/bundle-server.log 2>&1 &
pids+=($!)
# OPA's garbage collector: every 400 % of heap growth (≈ a quarter less CPU per redaction,
# bench/overhead/PROFILE.md), bounded by a soft memory limit.
GOGC="${GOGC:-400}" GOMEMLIMIT="${GOMEMLIMIT:-512MiB}" \
BUNDLE_SERVER_URL="http://127.0.0.1:$BUNDLE_PORT" "$OPA" run --server --addr "127.0.0.1:$OPA_PORT" \
  --config-file var/opa/config.yaml --log-level error >var/log/opa.log 2>&1 &
pids+=($!)
"$PY/gunicorn" --bind "127.0.0.1:$UPSTREAM_PORT" --workers 1 "demo_upstream.app:create_app()" >var/log/upstream.log 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$OPA_PORT/health?bundles=true" OPA var/log/opa.log
wait_for "http://127.0.0.1:$UPSTREAM_PORT/fhir/metadata" "demo upstream" var/log/upstream.log
# /metrics adds up every worker from here; stale files from a previous run would not.
rm -rf var/prometheus && mkdir -p var/prometheus
PROMETHEUS_MULTIPROC_DIR=var/prometheus \
LCR_SIDECAR_OPA_URL="http://127.0.0.1:$OPA_PORT" \
LCR_SIDECAR_UPSTREAM_URL="http://127.0.0.1:$UPSTREAM_PORT/fhir" \
  "$PY/gunicorn" --bind "127.0.0.1:$SIDECAR_PORT" --workers 2 --config python:sidecar.gunicorn_conf \
  "sidecar:create_app()" >var/log/sidecar.log 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$SIDECAR_PORT/readyz" sidecar var/log/sidecar.log

cat <<TXT

LCR access sidecar is running (logs in var/log/, audit trail in var/audit.db):
  sidecar        http://127.0.0.1:$SIDECAR_PORT   (POST /v1/record, POST /v1/menu; /readyz, /metrics)
  OPA            http://127.0.0.1:$OPA_PORT   (policy $revision, roster $roster_revision)
  bundle server  http://127.0.0.1:$BUNDLE_PORT
  demo LCR FHIR  http://127.0.0.1:$UPSTREAM_PORT/fhir

Demo tokens for Margaret Thompson (NHS 999 000 0018, born 1938-04-12), a resident of
Rosewood House (VM101). Each token is bound to her record (requested_record) and valid 5
minutes (DEV-ONLY key); mint more with: $PY/python -m sidecar.devtoken --level LEVEL --nhs-number NHS
TXT
for level in no_access admin senior_carer registered_manager; do
  printf '  export TOKEN_%s=%s\n' "${level^^}" "$("$PY/python" -m sidecar.devtoken --level "$level" --nhs-number 9990000018)"
done
cat <<TXT

Try the same resident as each level:
  curl -s -X POST http://127.0.0.1:$SIDECAR_PORT/v1/record -H "Authorization: Bearer \$TOKEN_ADMIN" \\
       -H 'Content-Type: application/json' -d '{"nhs_number": "999 000 0018", "dob": "1938-04-12"}' | python3 -m json.tool | head -40
  (then \$TOKEN_SENIOR_CARER, \$TOKEN_REGISTERED_MANAGER, \$TOKEN_NO_ACCESS)
Which sections the left-hand menu should show:
  curl -s -X POST http://127.0.0.1:$SIDECAR_PORT/v1/menu -H "Authorization: Bearer \$TOKEN_SENIOR_CARER" \\
       -H 'Content-Type: application/json' -d '{"nhs_number": "9990000018", "dob": "1938-04-12"}'
The audit trail:
  $PY/sqlite-utils var/audit.db --table \\
       'select seq, time, subject_id, access_level, outcome, http_status, sections_returned from decisions'
Who each care service looks after is $ROSTER_FILE; after a change, publish it with
  $PY/python -m bundles.roster $ROSTER_FILE --out var/bundles

Only a care service's own residents: Walter Hughes (999 000 0050) lives at Thames View
(VM102), so a Rosewood House senior carer is refused his record, before it is looked up:
TXT
hughes=$("$PY/python" -m sidecar.devtoken --level senior_carer --nhs-number 9990000050)
printf '  → '
curl -s -X POST "http://127.0.0.1:$SIDECAR_PORT/v1/record" -H "Authorization: Bearer $hughes" \
  -H 'Content-Type: application/json' -d '{"nhs_number": "9990000050", "dob": "1936-09-30"}' \
  | python3 -c 'import json,sys; i=json.load(sys.stdin)["issue"][0]; print(i["details"]["coding"][0]["code"], "-", i["diagnostics"])'
cat <<TXT

Press Ctrl-C to stop.
TXT
wait -n "${pids[@]}"
echo "a process exited; see var/log/" >&2
