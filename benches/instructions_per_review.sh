#!/usr/bin/env bash
# Instructions the server executes per review, for several nsguard builds: a count that
# does not move with the machine's load, unlike requests per second on a shared machine.
#
#   benches/instructions_per_review.sh NAME=BINARY [NAME=BINARY ...]
#
# Each binary serves `serve --demo` under `valgrind --tool=callgrind`; h2load (Debian's
# nghttp2-client) posts the fixture Deployment CREATE review (compact JSON) over 4
# keep-alive HTTP/1.1 connections with TLS, first REQUESTS (2000) reviews, then in a
# second server 2 x REQUESTS. The difference of the two totals over REQUESTS is the cost
# of one review, start-up and shutdown cancelled out: TLS, HTTP, the watchdog, decoding,
# the decision and the answer.
set -euo pipefail
cd "$(dirname "$0")/.."

[ $# -ge 1 ] || { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
for tool in valgrind h2load curl; do
  command -v "$tool" > /dev/null || { echo "$tool is missing (apt-get install -y valgrind nghttp2-client curl)" >&2; exit 1; }
done
requests=${REQUESTS:-2000}
work=$(mktemp -d)
server=
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2> /dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1])), separators=(",", ":")), end="")' \
  tests/fixtures/admission-review/deployment-create.json > "$work/body.json"

# total BINARY N: instructions of a whole server run that answered N reviews.
total() {
  local binary=$1 n=$2 out=$work/callgrind.out
  rm -f "$out"
  valgrind --tool=callgrind --callgrind-out-file="$out" \
    "$binary" --log-level warn serve --demo --listen 127.0.0.1:18643 \
    --metrics-listen 127.0.0.1:19643 --cert-dir "$work/certs" > "$work/server.log" 2>&1 &
  server=$!
  for _ in $(seq 1 600); do
    if curl -sf -o /dev/null http://127.0.0.1:19643/readyz; then break; fi
    sleep 0.1
  done
  h2load --h1 -n "$n" -c 4 -d "$work/body.json" -H 'content-type: application/json' \
    https://127.0.0.1:18643/validate > "$work/h2load.out"
  grep -q "$n succeeded" "$work/h2load.out" || { cat "$work/h2load.out" >&2; exit 1; }
  kill -TERM "$server"
  wait "$server" || true
  server=
  awk '/^summary:/ {print $2}' "$out"
}

printf 'build\tinstructions per review\n'
for spec in "$@"; do
  name=${spec%%=*}
  binary=${spec#*=}
  rm -rf "$work/certs"
  one=$(total "$binary" "$requests")
  two=$(total "$binary" $((2 * requests)))
  printf '%s\t%s\n' "$name" $(((two - one) / requests))
done
