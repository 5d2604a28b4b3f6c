#!/usr/bin/env bash
# bench/serve.sh: how fast and at what CPU cost `pinfold serve` streams a stored blob, against
# a baseline build of pinfold in the same invocation (for a change to the blob read path).
#
#   bench/serve.sh --baseline-bin PATH [--mib 1024] [--runs 5] [--no-build] [--tmp-dir DIR]
#
# Both servers hold the same blob (pushed once to each, so it is in the page cache, as a blob
# pulled or pushed recently is). Each round pulls it from both, in alternating order:
#   pull = `curl | openssl dgst -sha256` (a client that checks the digest, as registry
#          clients do), checked against the expected digest;
#   raw  = `curl -o /dev/null` (the transfer alone);
#   cpu  = the server process's CPU time (user + system, /proc/<pid>/stat) over the raw pull,
#          per GiB served: what the read path costs, independent of the client.
# Prints medians and the ratios candidate / baseline as a Markdown table and writes it to
# bench/results/<UTC>-serve/summary.md. Servers listen on 127.0.0.1:5311 (candidate) and
# 127.0.0.1:5312 (baseline). Needs curl, python3, openssl; a release build of the candidate
# (built unless --no-build).
set -Eeuo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
mib=1024 runs=5 build=1 tmp=${TMPDIR:-/tmp} baseline=
while (($#)); do
  case $1 in
    --baseline-bin) baseline=$2; shift 2 ;;
    --mib) mib=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --tmp-dir) tmp=$2; shift 2 ;;
    *) echo "bench/serve.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -x $baseline ]] || { echo "bench/serve.sh: --baseline-bin PATH (an executable pinfold) is required" >&2; exit 2; }
for tool in curl python3 openssl; do
  command -v "$tool" >/dev/null || { echo "bench/serve.sh: needs $tool" >&2; exit 2; }
done
((build)) && (cd "$repo" && cargo build --release -q -p pinfold)
bin=$repo/target/release/pinfold
[[ -x $bin ]] || { echo "bench/serve.sh: $bin missing (build it or drop --no-build)" >&2; exit 2; }

work=$(mktemp -d "$tmp/pinfold-serve-bench.XXXXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
ticks=$(getconf CLK_TCK)

wait_up() { # url
  for _ in $(seq 1 100); do curl -sf "$1/healthz" >/dev/null && return 0; sleep 0.1; done
  echo "bench/serve.sh: $1 did not start" >&2; exit 2
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

python3 - "$work/blob" "$mib" <<'PY'
import os, sys
with open(sys.argv[1], "wb") as f:
    for _ in range(int(sys.argv[2])):
        f.write(os.urandom(1 << 20))
PY
digest=sha256:$(sha256sum "$work/blob" | cut -d' ' -f1)

declare -A url pid
for who in candidate baseline; do
  if [[ $who == candidate ]]; then exe=$bin port=5311; else exe=$baseline port=5312; fi
  "$exe" serve --listen "127.0.0.1:$port" --data-dir "$work/$who" --config /dev/null >/dev/null 2>"$work/$who.log" &
  pid[$who]=$!
  pids+=($!)
  wait_up "http://127.0.0.1:$port"
  curl -sf -XPOST -H "content-type: application/octet-stream" -T - <"$work/blob" \
    "http://127.0.0.1:$port/v2/bench/blob/blobs/uploads/?digest=$digest" -o /dev/null
  url[$who]=http://127.0.0.1:$port/v2/bench/blob/blobs/$digest
done
rm -f "$work/blob"

pull() { # url -> wall seconds of a GET hashed as it arrives, digest checked
  local start end got
  start=$(date +%s.%N)
  got=$(curl -sf "$1" | openssl dgst -sha256 -r | cut -d' ' -f1)
  end=$(date +%s.%N)
  [[ sha256:$got == "$digest" ]] || { echo "bench/serve.sh: $1 gave sha256:$got" >&2; exit 1; }
  awk -v a="$start" -v b="$end" 'BEGIN {printf "%.3f", b - a}'
}
raw() { # who -> "seconds cpu-seconds-per-GiB" of a GET to /dev/null
  local before after secs
  before=$(cpu_ticks "${pid[$1]}")
  secs=$(curl -sf -o /dev/null -w '%{time_total}' "${url[$1]}")
  after=$(cpu_ticks "${pid[$1]}")
  awk -v s="$secs" -v t=$((after - before)) -v hz="$ticks" -v m="$mib" 'BEGIN {printf "%.3f %.3f\n", s, t / hz * 1024 / m}'
}

declare -A pulls raws cpus
for ((round = 1; round <= runs; round++)); do
  order=(candidate baseline)
  ((round % 2)) || order=(baseline candidate)
  for who in "${order[@]}"; do
    p=$(pull "${url[$who]}")
    read -r r c < <(raw "$who")
    pulls[$who]+="$p " raws[$who]+="$r " cpus[$who]+="$c "
  done
  echo "round $round done" >&2
done

median() { printf '%s\n' $1 | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
out=$repo/bench/results/$(date -u +%Y%m%dT%H%M%SZ)-serve
mkdir -p "$out"
{
  echo "| $mib MiB blob from the page cache | candidate (median of $runs) | baseline (same run) | ratio |"
  echo "|---|---:|---:|---:|"
  for metric in pulls raws cpus; do
    case $metric in
      pulls) label="pull, digest checked by the client (s)"; c=$(median "${pulls[candidate]}") b=$(median "${pulls[baseline]}") ;;
      raws) label="raw transfer to /dev/null (s)"; c=$(median "${raws[candidate]}") b=$(median "${raws[baseline]}") ;;
      cpus) label="server CPU per GiB served (s)"; c=$(median "${cpus[candidate]}") b=$(median "${cpus[baseline]}") ;;
    esac
    echo "| $label | $c | $b | $(ratio "$c" "$b")x |"
  done
  echo
  echo "Per round: candidate pull ${pulls[candidate]}; baseline pull ${pulls[baseline]}; candidate raw ${raws[candidate]}; baseline raw ${raws[baseline]}; candidate cpu/GiB ${cpus[candidate]}; baseline cpu/GiB ${cpus[baseline]}."
} | tee "$out/summary.md"
