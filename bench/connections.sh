#!/usr/bin/env bash
# Manifest GETs per second through Pinfold's accept path, candidate against a baseline build in
# the same invocation: over kept-alive connections, and with a new connection per request
# (`Connection: close`), where per-connection work (the accept loop, protocol detection, its
# deadline) is paid every time.
#
#   bench/connections.sh --baseline-bin PATH [--runs 5] [--seconds 8] [--connections 16] [--no-build]
#
# Alternating rounds (candidate first in odd rounds); medians. Candidate on 127.0.0.1:5321,
# baseline on 127.0.0.1:5322. Needs curl, python3, wrk; a release build of the candidate
# (built unless --no-build).
set -Eeuo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
baseline="" runs=5 seconds=8 connections=16 build=1
while (($#)); do
  case $1 in
    --baseline-bin) baseline=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    *) echo "bench/connections.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[[ -x $baseline ]] || { echo "bench/connections.sh: --baseline-bin PATH (an executable pinfold) is required" >&2; exit 2; }
for tool in curl python3 wrk; do
  command -v "$tool" >/dev/null || { echo "bench/connections.sh: needs $tool" >&2; exit 2; }
done
((build)) && (cd "$repo" && cargo build --release -q -p pinfold)
bin=$repo/target/release/pinfold
[[ -x $bin ]] || { echo "bench/connections.sh: $bin missing (build it or drop --no-build)" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/pinfold-connections-bench.XXXXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

wait_up() { # url
  for _ in $(seq 1 100); do curl -sf "$1/healthz" >/dev/null && return 0; sleep 0.1; done
  echo "bench/connections.sh: $1 did not start" >&2; exit 2
}

# A small image: config, one layer, an OCI manifest naming them.
python3 - "$work" <<'PY'
import hashlib, json, os, sys
work = sys.argv[1]
config, layer = b'{"architecture":"amd64","os":"linux"}', os.urandom(4096)
def desc(media, data):
    return {"mediaType": media, "digest": "sha256:" + hashlib.sha256(data).hexdigest(), "size": len(data)}
manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": desc("application/vnd.oci.image.config.v1+json", config),
            "layers": [desc("application/vnd.oci.image.layer.v1.tar", layer)]}
for name, data in (("config", config), ("layer", layer), ("manifest", json.dumps(manifest).encode())):
    open(os.path.join(work, name), "wb").write(data)
PY

declare -A url
for who in candidate baseline; do
  if [[ $who == candidate ]]; then exe=$bin port=5321; else exe=$baseline port=5322; fi
  base=http://127.0.0.1:$port
  "$exe" serve --listen "127.0.0.1:$port" --data-dir "$work/$who" --config /dev/null >/dev/null 2>"$work/$who.log" &
  pids+=($!)
  wait_up "$base"
  for part in config layer; do
    digest=sha256:$(sha256sum "$work/$part" | cut -d' ' -f1)
    curl -sf -XPOST -H "content-type: application/octet-stream" --data-binary "@$work/$part" \
      "$base/v2/bench/app/blobs/uploads/?digest=$digest" -o /dev/null
  done
  curl -sf -XPUT -H "content-type: application/vnd.oci.image.manifest.v1+json" \
    --data-binary "@$work/manifest" "$base/v2/bench/app/manifests/1" -o /dev/null
  url[$who]=$base/v2/bench/app/manifests/1
done

rate() { # url [extra wrk args] -> requests per second, failing on any non-2xx or socket error
  local out
  out=$(wrk -t 2 -c "$connections" -d "${seconds}s" -H "accept: application/vnd.oci.image.manifest.v1+json" "$@" 2>&1)
  if grep -q "Non-2xx\|Socket errors: connect [1-9]" <<<"$out"; then
    echo "bench/connections.sh: wrk $*: $out" >&2; exit 1
  fi
  awk '/^Requests\/sec:/ {print $2}' <<<"$out"
}

declare -A kept fresh
for ((round = 1; round <= runs; round++)); do
  order=(candidate baseline)
  ((round % 2)) || order=(baseline candidate)
  for who in "${order[@]}"; do
    kept[$who]+="$(rate "${url[$who]}") "
    fresh[$who]+="$(rate "${url[$who]}" -H "connection: close") "
  done
  echo "round $round done" >&2
done

median() { printf '%s\n' $1 | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
out=$repo/bench/results/$(date -u +%Y%m%dT%H%M%SZ)-connections
mkdir -p "$out"
{
  echo "| manifest GETs/s, $connections connections, ${seconds} s | candidate (median of $runs) | baseline (same run) | ratio |"
  echo "|---|---:|---:|---:|"
  c=$(median "${kept[candidate]}") b=$(median "${kept[baseline]}")
  echo "| kept-alive connections | $c | $b | $(ratio "$c" "$b")x |"
  c=$(median "${fresh[candidate]}") b=$(median "${fresh[baseline]}")
  echo "| a new connection per request | $c | $b | $(ratio "$c" "$b")x |"
  echo
  echo "Per round: candidate kept ${kept[candidate]}; baseline kept ${kept[baseline]}; candidate new-connection ${fresh[candidate]}; baseline new-connection ${fresh[baseline]}."
} | tee "$out/summary.md"
