#!/usr/bin/env bash
# bench/durability.sh - issue 5 item 8, measured on this machine in one run:
#   * `pinfold verify` hashes at >= 80% of `openssl dgst -sha256`'s speed over the same blob files
#     (page-cached; openssl is one process over all files, verify uses its default threads)
#   * `pinfold backup` of an unchanged registry of 10,000 blobs (incremental) takes < 5 s
# Each figure is the median of --runs runs (default 3). With --record, a dated section is
# appended to bench/RESULTS.md.
#
#   bench/durability.sh [--record] [--no-build] [--runs N] [--blobs N] [--verify-mib N] [--bin PATH]
#
# Exit status: 0 all targets met, 1 a target missed, 2 error. A `pinfold serve` on an ephemeral
# loopback port fills each data directory over /v2/ (monolithic POST ?digest=); the server is
# stopped before measuring, so the figures are the tools' own.
set -Eeuo pipefail
export LC_ALL=C
ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$ROOT"

record=0 build=1 runs=3 blobs=10000 verify_mib=1024 bin=target/release/pinfold
while (($#)); do
  case $1 in
    --record) record=1 ;;
    --no-build) build=0 ;;
    --runs) runs=$2; shift ;;
    --blobs) blobs=$2; shift ;;
    --verify-mib) verify_mib=$2; shift ;;
    --bin) bin=$2; build=0; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "bench/durability.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
for tool in openssl python3 curl jq; do
  command -v "$tool" >/dev/null || { echo "bench/durability.sh: $tool is missing" >&2; exit 2; }
done
if ((build)); then
  timeout 2400 cargo build --release -q -p pinfold
fi
[[ -x $bin ]] || { echo "bench/durability.sh: $bin missing (build it or drop --no-build)" >&2; exit 2; }
bin=$(realpath "$bin")

work=$(mktemp -d "${TMPDIR:-/tmp}/pinfold-bench-durability.XXXXXX")
server_pid=
cleanup() {
  [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# serve <data dir>: starts pinfold serve, sets $server_pid and $url.
serve() {
  local log=$work/serve-$RANDOM.log
  "$bin" serve --listen 127.0.0.1:0 --data-dir "$1" >"$log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 300); do
    url=$(sed -n 's/^pinfold listening on //p' "$log")
    [[ -n $url ]] && break
    sleep 0.1
  done
  [[ -n $url ]] || { echo "bench/durability.sh: server did not start:" >&2; cat "$log" >&2; exit 2; }
}
stop() { kill -TERM "$server_pid"; wait "$server_pid" || true; server_pid=; }
now() { date +%s.%N; }
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

# push_small <url> <count>: that many distinct 1-4 KiB blobs, one keep-alive connection.
push_small() {
  python3 - "$1" "$2" <<'PY'
import hashlib, http.client, os, sys, urllib.parse
url, count = urllib.parse.urlparse(sys.argv[1]), int(sys.argv[2])
conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
for i in range(count):
    body = os.urandom(1024 + (i * 37) % 3072)
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    conn.request("POST", f"/v2/bench/small/blobs/uploads/?digest={digest}", body=body,
                 headers={"Content-Type": "application/octet-stream"})
    r = conn.getresponse(); r.read()
    if r.status != 201:
        sys.exit(f"push {i}: HTTP {r.status}")
PY
}

echo "== filling the verify data directory (${verify_mib} MiB in 128 MiB blobs)"
serve "$work/verify-data"
count=$(( (verify_mib + 127) / 128 ))
for i in $(seq 1 "$count"); do
  f=$work/big-$i
  head -c $((128 * 1024 * 1024)) /dev/urandom >"$f"
  digest=sha256:$(sha256sum "$f" | cut -d' ' -f1)
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/octet-stream' \
    --data-binary @"$f" "$url/v2/bench/big/blobs/uploads/?digest=$digest")
  [[ $code == 201 ]] || { echo "bench/durability.sh: push of $f: HTTP $code" >&2; exit 2; }
  rm -f "$f"
done
stop
mapfile -t files < <(find "$work/verify-data/blobs" -type f ! -name '.tmp-*' | sort)
bytes=$(cat "${files[@]}" | wc -c)
echo "   ${#files[@]} blob files, $bytes bytes (page cache warmed)"

openssl_rates=() verify_rates=() verify_wall=()
for r in $(seq 1 "$runs"); do
  t0=$(now); openssl dgst -sha256 "${files[@]}" >/dev/null; t1=$(now)
  openssl_rates+=("$(awk -v b="$bytes" -v a="$t0" -v z="$t1" 'BEGIN { printf "%.1f", b / (z - a) / 1e6 }')")
  t0=$(now); "$bin" verify --json --data-dir "$work/verify-data" >"$work/verify.json"; t1=$(now)
  [[ $(jq '.findings | length' "$work/verify.json") == 0 ]] || { echo "verify found problems" >&2; exit 2; }
  verify_rates+=("$(awk -v b="$bytes" -v a="$t0" -v z="$t1" 'BEGIN { printf "%.1f", b / (z - a) / 1e6 }')")
  echo "   run $r: openssl ${openssl_rates[-1]} MB/s, pinfold verify ${verify_rates[-1]} MB/s (wall, process start to exit)"
done
openssl_med=$(echo "${openssl_rates[*]}" | median)
verify_med=$(echo "${verify_rates[*]}" | median)
ratio=$(awk -v v="$verify_med" -v o="$openssl_med" 'BEGIN { printf "%.2f", v / o }')
verify_ok=$(awk -v r="$ratio" 'BEGIN { print (r >= 0.8) ? "PASS" : "FAIL" }')

echo "== filling the backup data directory ($blobs blobs)"
serve "$work/backup-data"
t0=$(now); push_small "$url" "$blobs"; t1=$(now)
echo "   pushed in $(awk -v a="$t0" -v z="$t1" 'BEGIN { printf "%.1f", z - a }') s"
stop
t0=$(now); "$bin" backup --json --to "$work/backups" --data-dir "$work/backup-data" >"$work/full.json"; t1=$(now)
full=$(awk -v a="$t0" -v z="$t1" 'BEGIN { printf "%.3f", z - a }')
[[ $(jq '.backup.blobs_copied' "$work/full.json") -ge $blobs ]] || { echo "full backup copied too little" >&2; exit 2; }
echo "   full backup: $full s"
incr=()
for r in $(seq 1 "$runs"); do
  t0=$(now); "$bin" backup --json --to "$work/backups" --data-dir "$work/backup-data" >"$work/incr.json"; t1=$(now)
  [[ $(jq '.backup.blobs_copied' "$work/incr.json") == 0 ]] || { echo "incremental backup copied blobs" >&2; exit 2; }
  incr+=("$(awk -v a="$t0" -v z="$t1" 'BEGIN { printf "%.3f", z - a }')")
  echo "   incremental run $r: ${incr[-1]} s ($(jq '.backup.blobs_skipped' "$work/incr.json") blobs skipped)"
done
incr_med=$(echo "${incr[*]}" | median)
incr_ok=$(awk -v t="$incr_med" 'BEGIN { print (t < 5) ? "PASS" : "FAIL" }')

table=$(cat <<TABLE
| target | measured (median of $runs) | baseline (same run) | ratio | goal | result |
|---|---:|---:|---:|---|---|
| \`pinfold verify\` of $bytes bytes (${#files[@]} blobs) vs \`openssl dgst -sha256\` of the same files | ${verify_med} MB/s | ${openssl_med} MB/s | ${ratio}x | >= 0.8x | ${verify_ok} |
| incremental \`pinfold backup\` of an unchanged $blobs-blob registry | ${incr_med} s | full backup ${full} s | - | < 5 s | ${incr_ok} |
TABLE
)
echo
echo "$table"
echo
echo "Per run: openssl ${openssl_rates[*]} MB/s; verify ${verify_rates[*]} MB/s; incremental ${incr[*]} s."

if ((record)); then
  {
    echo
    echo "## Durability (bench/durability.sh, issue 5 item 8), $(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD)"
    echo
    echo "Command: \`bench/durability.sh --record $( ((build)) || echo --no-build)\` (release build; medians of $runs). Machine: $(nproc) vCPU, shared with other builds."
    echo
    echo "$table"
    echo
    echo "Per run: openssl ${openssl_rates[*]} MB/s; verify ${verify_rates[*]} MB/s (wall time of the whole command, page-cached data, default threads = cores); incremental ${incr[*]} s."
  } >> bench/RESULTS.md
fi
grep -q FAIL <<<"$table" && exit 1
exit 0
