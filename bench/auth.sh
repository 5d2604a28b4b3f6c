#!/usr/bin/env bash
# bench/auth.sh - issue 6's check-cost target: authenticated manifest GET throughput must be
# at least 80% of anonymous, on one server in one run (wrk, 64 connections, 3 rounds in
# alternating order, medians). Three kinds of request against the same manifest:
#   anonymous  (an `anonymous_pull` rule, no header)
#   jwt        (Authorization: Bearer <registry token from /v2/token>, as docker sends)
#   basic      (Authorization: Basic user:password; bcrypt once, then the credential cache)
# It also reports errors and p99 of each (the load test of authenticated pulls): a kind passes
# when its throughput is >= 80% of anonymous, it had no error and its p99 is within the core
# issue's 10 ms at 64 connections.
#
#   bench/auth.sh [--record] [--no-build] [--debug] [--seconds N]
#
# Exit status: 0 target met, 1 missed, 2 error. The server listens on 127.0.0.1 only.
set -Eeuo pipefail
export LC_ALL=C
ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$ROOT"

record=0 build=1 profile=release seconds=10
while (($#)); do
  case $1 in
    --record) record=1 ;;
    --no-build) build=0 ;;
    --debug) profile=debug ;;
    --seconds) seconds=$2; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "bench/auth.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
command -v wrk >/dev/null || { echo "bench/auth.sh: wrk is required" >&2; exit 2; }
if ((build)); then
  if [[ $profile == release ]]; then
    timeout 3600 cargo build --release -q -p pinfold
  else
    timeout 1800 cargo build -q -p pinfold
  fi
fi
bin=target/$profile/pinfold
[[ -x $bin ]] || { echo "bench/auth.sh: $bin missing" >&2; exit 2; }

work=$(mktemp -d)
pid=""
cleanup() { [[ -n $pid ]] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
# bcrypt of "benchpw" (cost 5, as `htpasswd -B` makes by default).
cat >"$work/pinfold.toml" <<TOML
listen = "127.0.0.1:0"
data_dir = "$work/data"
[[user]]
name = "bench"
password_bcrypt = '\$2b\$05\$021bV4BQImEEeSxl/Wk/HOse9zTeArg2FJnTXJksxUyonuCJDR5fy'
[[permission]]
repositories = "*"
users = ["bench"]
actions = ["pull", "push"]
anonymous_pull = true
TOML
"$bin" --config "$work/pinfold.toml" serve >"$work/out" 2>"$work/err" &
pid=$!
for _ in $(seq 100); do grep -q "listening on" "$work/out" 2>/dev/null && break; sleep 0.1; done
base=$(sed -n 's/^pinfold listening on //p' "$work/out")
[[ -n $base ]] || { echo "bench/auth.sh: server did not start" >&2; cat "$work/err" >&2; exit 2; }
auth=(-u bench:benchpw)

# One small image: config blob and manifest.
printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}' >"$work/config"
cdigest="sha256:$(sha256sum "$work/config" | cut -d' ' -f1)"
csize=$(stat -c %s "$work/config")
curl -fsS "${auth[@]}" -X POST --data-binary @"$work/config" -H 'Content-Type: application/octet-stream' \
  "$base/v2/bench/app/blobs/uploads/?digest=$cdigest" -o /dev/null
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[]}' \
  "$cdigest" "$csize" >"$work/manifest"
curl -fsS "${auth[@]}" -X PUT --data-binary @"$work/manifest" \
  -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' "$base/v2/bench/app/manifests/v1" -o /dev/null
jwt=$(curl -fsS "${auth[@]}" "$base/v2/token?service=pinfold&scope=repository:bench/app:pull" |
  sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
[[ -n $jwt ]] || { echo "bench/auth.sh: no registry token" >&2; exit 2; }
basic="Basic $(printf 'bench:benchpw' | base64 -w0)"
url="$base/v2/bench/app/manifests/v1"
accept='Accept: application/vnd.oci.image.manifest.v1+json'
# Every kind must answer 200 before it is measured.
for h in "X-None: 1" "Authorization: Bearer $jwt" "Authorization: $basic"; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "$accept" -H "$h" "$url")
  [[ $code == 200 ]] || { echo "bench/auth.sh: $h answered $code" >&2; exit 2; }
done

# run <kind> <round>: wrk, then "rps p99_ms errors" into $work/<kind>.<round>
run() {
  local kind=$1 round=$2 h
  case $kind in
    anonymous) h="X-None: 1" ;;
    jwt) h="Authorization: Bearer $jwt" ;;
    basic) h="Authorization: $basic" ;;
  esac
  wrk -t2 -c64 -d"${seconds}s" --latency -H "$accept" -H "$h" "$url" >"$work/wrk.$kind.$round"
  awk '
    /Requests\/sec:/ { rps = $2 }
    $1 == "99%" { v = $2; if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms$/, "", v) } else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 } p99 = v }
    /Non-2xx or 3xx responses:/ { err += $NF }
    /Socket errors:/ { for (i = 3; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) { x = $i; sub(/,/, "", x); err += x } }
    END { printf "%s %s %d\n", rps, p99, err }' "$work/wrk.$kind.$round" >"$work/$kind.$round"
  echo "round $round $kind: $(cat "$work/$kind.$round") (req/s, p99 ms, errors)"
}
for round in 1 2 3; do
  if ((round % 2)); then order=(anonymous jwt basic); else order=(basic jwt anonymous); fi
  for kind in "${order[@]}"; do run "$kind" "$round"; done
done
median() { cat "$work/$1".{1,2,3} | awk -v f="$2" '{ print $f }' | sort -g | sed -n 2p; }
errors() { cat "$work/$1".{1,2,3} | awk '{ s += $3 } END { print s + 0 }'; }
anon=$(median anonymous 1)
result=0
rows=""
for kind in jwt basic; do
  rps=$(median $kind 1)
  ratio=$(awk -v a="$rps" -v b="$anon" 'BEGIN { printf "%.0f", 100 * a / b }')
  # The core issue's latency target holds for authenticated pulls too: p99 <= 10 ms at 64 connections.
  verdict=$(awk -v r="$ratio" -v e="$(errors $kind)" -v p="$(median $kind 2)" 'BEGIN { print (r >= 80 && e == 0 && p <= 10) ? "PASS" : "FAIL" }')
  [[ $verdict == PASS ]] || result=1
  rows+="| authenticated manifest GET ($kind) vs anonymous | ${rps} req/s | ${anon} req/s | ${ratio}% | >= 80%, no errors, p99 <= 10 ms | $(median $kind 2) ms | $(errors $kind) | ${verdict} |"$'\n'
done
table="| target | authenticated (median) | anonymous (same run) | ratio | goal | p99 | errors | result |
|---|---:|---:|---:|---|---:|---:|---|
${rows}| anonymous manifest GET | | ${anon} req/s | | | $(median anonymous 2) ms | $(errors anonymous) | |"
echo
echo "$table"
if ((record)); then
  {
    echo
    echo "## $(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD): authentication cost (bench/auth.sh)"
    echo
    echo "Command: \`bench/auth.sh --seconds $seconds\` ($profile build; wrk -t2 -c64, 3 rounds alternating, medians)."
    echo
    echo "$table"
  } >>bench/RESULTS.md
fi
exit $result
