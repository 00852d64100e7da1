#!/usr/bin/env bash
# Several nsguard builds under the same wrk load, in turn, round after round, in one run:
# old against new on the same machine at the same time of day.
#
#   benches/wrk_compare.sh NAME=BINARY [NAME=BINARY ...]
#
# Each binary serves `serve --demo` (the built-in example dump; warn mode) with its own
# development certificates on loopback; wrk (Debian's package) posts the fixture
# Deployment CREATE review (compact JSON) over HTTPS keep-alive connections. Per run: req/s,
# p50/p99 latency and the server's CPU per review (utime + stime from /proc, over the
# requests wrk counted). Tune with ROUNDS (5), SECONDS_EACH (10), CONNECTIONS (32),
# THREADS (1). Prints one line per run and, per build, the median round and its ratio to
# the first build.
set -euo pipefail
cd "$(dirname "$0")/.."

[ $# -ge 1 ] || { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
command -v wrk > /dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
rounds=${ROUNDS:-5}
seconds=${SECONDS_EACH:-10}
connections=${CONNECTIONS:-32}
threads=${THREADS:-1}
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2> /dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1])), separators=(",", ":")))' \
  tests/fixtures/admission-review/deployment-create.json > "$work/body.json"
cat > "$work/post.lua" << EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("$work/body.json", "rb")
wrk.body = f:read("*a")
f:close()
EOF

names=()
ports=()
port=18443
for spec in "$@"; do
  name=${spec%%=*}
  binary=${spec#*=}
  names+=("$name")
  ports+=("$port")
  mkdir -p "$work/$name"
  "$binary" --log-level warn serve --demo --listen "127.0.0.1:$port" \
    --metrics-listen "127.0.0.1:$((port + 1000))" --cert-dir "$work/$name/certs" \
    > "$work/$name/log" 2>&1 &
  pids+=("$!")
  for _ in $(seq 1 100); do
    if curl -sf -o /dev/null "http://127.0.0.1:$((port + 1000))/readyz"; then break; fi
    sleep 0.1
  done
  curl -sf -o /dev/null "http://127.0.0.1:$((port + 1000))/readyz" \
    || { echo "$name did not start:" >&2; cat "$work/$name/log" >&2; exit 1; }
  port=$((port + 1))
done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
ticks_per_second=$(getconf CLK_TCK)

printf 'round\tbuild\treq/s\tp50\tp99\tcpu_us_per_review\n'
for round in $(seq 1 "$rounds"); do
  for i in "${!names[@]}"; do
    name=${names[$i]}
    pid=${pids[$i]}
    before=$(cpu_ticks "$pid")
    wrk -t "$threads" -c "$connections" -d "${seconds}s" --latency -s "$work/post.lua" \
      "https://127.0.0.1:${ports[$i]}/validate" > "$work/wrk.out"
    after=$(cpu_ticks "$pid")
    requests=$(awk '/requests in/ {print $1}' "$work/wrk.out")
    rate=$(awk '/^Requests\/sec/ {print $2}' "$work/wrk.out")
    p50=$(awk '$1 == "50%" {print $2}' "$work/wrk.out")
    p99=$(awk '$1 == "99%" {print $2}' "$work/wrk.out")
    if grep -q 'Non-2xx\|Socket errors' "$work/wrk.out"; then
      echo "$name: errors in round $round:" >&2
      cat "$work/wrk.out" >&2
      exit 1
    fi
    cpu=$(awk -v t=$((after - before)) -v hz="$ticks_per_second" -v n="$requests" \
      'BEGIN {printf "%.1f", t / hz * 1e6 / n}')
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$name" "$rate" "$p50" "$p99" "$cpu" | tee -a "$work/runs.tsv"
  done
done

echo
echo "median round per build (req/s; ratio to ${names[0]}; CPU per review):"
python3 - "$work/runs.tsv" "${names[@]}" << 'PY'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().splitlines()]
names = sys.argv[2:]
rate = {n: [float(r[2]) for r in rows if r[1] == n] for n in names}
cpu = {n: [float(r[5]) for r in rows if r[1] == n] for n in names}
first = statistics.median(rate[names[0]])
for n in names:
    m = statistics.median(rate[n])
    per_round = [b / a for a, b in zip(rate[names[0]], rate[n])]
    print(f"{n}\t{m:,.0f} req/s\t{m / first:.3f}x (rounds {min(per_round):.2f}-{max(per_round):.2f}x)\t"
          f"{statistics.median(cpu[n]):.1f} us CPU per review")
PY
