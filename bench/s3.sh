#!/usr/bin/env bash
# bench/s3.sh: issue 17 item 6 (first part). Pinfold with its blobs in S3-compatible object
# storage (Garage) against a direct S3 PUT and GET of a blob of the same size to the same
# Garage, in one invocation, as ratios:
#
#   push = what a registry client does with a layer: POST /v2/bench/s3/blobs/uploads/ (202),
#          PATCH <location> with the whole body, PUT <location>?digest=... with an empty body
#          (201). Timed from the POST to the 201.   vs   direct PUT = one signed S3 PUT of the
#          same number of bytes (curl --aws-sigv4) to the same bucket.
#   pull = GET /v2/bench/s3/blobs/<digest> to /dev/null   vs   direct GET = one signed S3 GET
#          of the directly PUT object to /dev/null.
#
# Targets: push >= 0.8x of direct PUT, pull >= 0.9x of direct GET (throughput ratios,
# Pinfold / direct, from the medians of the wall times). Also reported: CPU seconds per GiB of
# the pinfold process over the push and over the pull (utime + stime from /proc/<pid>/stat),
# Garage's own CPU per GiB over each operation (when its pid file is readable), and the push's
# time split: POST, PATCH (body streamed to S3 as an upload part, multipart above 8 MiB) and
# the completing PUT (in the store: a server-side copy of the part to the blob key).
#
# Garage stores blocks by content and does not write a block it already holds (and keeps
# deleted blocks for 10 minutes), so every upload gets its own random bytes (AES-CTR of zeros
# under a random key, generated and hashed before the timing): pushing the same bytes twice
# would measure deduplication, not a write.
#
# Rounds alternate the order (odd rounds: direct first; even rounds: Pinfold first); each
# round starts a fresh Pinfold (new data directory, new key prefix), and does upload then
# download for one side, then for the other. Medians over --rounds (default 3).
#
#   bench/s3.sh [--rounds 3] [--size-mib 1024] [--no-build] [--bin PATH] [--json] [--redirect]
#               [--tmp-dir DIR]
#
# --redirect sets `[storage] redirect = true`: Pinfold answers the blob GET with a 307 to a
# presigned URL of the store, which the pull (curl -L) follows; the time covers both requests.
# Without it (the default configuration) Pinfold streams the blob from the store itself.
#
# Garage: `scripts/garage env` (starts or reuses the single-node Garage on 127.0.0.1:3900,
# bucket pinfold-test). Everything the run writes to the bucket is under
# bench-s3/<run id>/ and is deleted at exit (also on error or Ctrl-C), with any multipart
# upload left open there. Pinfold listens on 127.0.0.1 on a port the system picks.
#
# Needs curl (7.75+, for --aws-sigv4), jq, openssl, sha256sum, a release build of pinfold
# (built unless --no-build or --bin). Prints a Markdown table (or JSON with --json) and writes
# both to bench/results/<UTC>-s3/. Exit status: 0 when the run completed (whatever the
# verdicts), 2 on error or interruption.
set -Eeuo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
me=bench/s3.sh
rounds=3 mib=1024 build=1 bin="" json=0 redirect=0 tmp=${TMPDIR:-/tmp}
die() { echo "$me: $*" >&2; exit 2; }
while (($#)); do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --size-mib) mib=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --bin) bin=$2; build=0; shift 2 ;;
    --json) json=1; shift ;;
    --redirect) redirect=1; shift ;;
    --tmp-dir) tmp=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -E/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1" ;;
  esac
done
[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "--rounds wants a positive integer"
[[ $mib =~ ^[1-9][0-9]*$ ]] || die "--size-mib wants a positive integer"
for tool in curl jq openssl sha256sum awk timeout; do
  command -v "$tool" >/dev/null || die "needs $tool"
done
curl --help all 2>/dev/null | grep -q -- --aws-sigv4 || die "curl lacks --aws-sigv4 (needs curl 7.75 or later)"

# Exit 2 on any failure, with where it happened; the EXIT trap cleans up.
trap 'echo "$me: failed at line $LINENO: $BASH_COMMAND" >&2; exit 2' ERR
trap 'echo "$me: interrupted" >&2; exit 2' INT TERM

# The store.
garage_env=$(timeout 1800 "$repo/scripts/garage" env) || die "scripts/garage env failed"
eval "$garage_env"
endpoint=$TEST_PINFOLD_S3_ENDPOINT bucket=$TEST_PINFOLD_S3_BUCKET region=$TEST_PINFOLD_S3_REGION
key_id=$TEST_PINFOLD_S3_ACCESS_KEY_ID secret=$TEST_PINFOLD_S3_SECRET_ACCESS_KEY
garage_dir=${PINFOLD_GARAGE_DIR:-/var/tmp/pinfold-garage}
garage_pid=""
if [[ -r $garage_dir/pid ]]; then
  garage_pid=$(cat "$garage_dir/pid")
  [[ -r /proc/$garage_pid/stat ]] || garage_pid=""
fi

# The server.
if ((build)); then
  (cd "$repo" && timeout 3600 cargo build --release -q -p pinfold) || die "cargo build --release -p pinfold failed"
fi
[[ -n $bin ]] || bin=$repo/target/release/pinfold
[[ $bin == /* ]] || bin=$PWD/$bin
[[ -x $bin ]] || die "$bin missing (build it or drop --no-build)"
"$bin" serve --help >/dev/null 2>&1 || die "$bin serve --help does not run"

# Room: each round leaves two blobs in Garage until the end (deleted at exit), and two files of
# the blob's size exist locally at a time.
free_mib() { df -Pm "$1" | awk 'NR == 2 {print $4}'; }
need=$((rounds * 2 * mib + mib + 1024))
(($(free_mib "$(dirname "$garage_dir")") >= need)) || die "needs about $need MiB free for Garage's data in $(dirname "$garage_dir")"
(($(free_mib "$tmp") >= 2 * mib + 512)) || die "needs about $((2 * mib + 512)) MiB free in $tmp"

work=$(mktemp -d "$tmp/pinfold-s3-bench.XXXXXX")
run_id=$(date -u +%Y%m%dT%H%M%SZ)-$(openssl rand -hex 4)
run_prefix=bench-s3/$run_id
pinfold_pid=""
ticks=$(getconf CLK_TCK)
bytes=$((mib * 1024 * 1024))

# A signed S3 request to Garage (curl's SigV4; Garage wants x-amz-content-sha256).
s3() {
  curl -sS --max-time 900 --aws-sigv4 "aws:amz:$region:s3" --user "$key_id:$secret" \
    -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$@"
}
# Everything under the run's prefix: objects, and multipart uploads left open.
s3_cleanup() {
  local listing key id i
  for ((i = 0; i < 20; i++)); do
    listing=$(s3 "$endpoint/$bucket?list-type=2&prefix=${run_prefix//\//%2F}%2F") || return 0
    [[ $listing == *"<Key>"* ]] || break
    while read -r key; do
      s3 -X DELETE -o /dev/null "$endpoint/$bucket/$key" || true
    done < <(grep -o '<Key>[^<]*</Key>' <<<"$listing" | sed 's/<[^>]*>//g')
  done
  listing=$(s3 "$endpoint/$bucket?prefix=${run_prefix//\//%2F}%2F&uploads=") || return 0
  while read -r key id; do
    [[ -n $id ]] && s3 -X DELETE -o /dev/null "$endpoint/$bucket/$key?uploadId=$id" || true
  done < <(grep -o '<Upload>.*</Upload>' <<<"$listing" | sed 's#</Upload>#\n#g' |
    sed -n 's#.*<Key>\([^<]*\)</Key>.*<UploadId>\([^<]*\)</UploadId>.*#\1 \2#p')
}
stop_pinfold() {
  [[ -n $pinfold_pid ]] || return 0
  kill "$pinfold_pid" 2>/dev/null || true
  for _ in $(seq 1 200); do kill -0 "$pinfold_pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pinfold_pid" 2>/dev/null || true
  wait "$pinfold_pid" 2>/dev/null || true
  pinfold_pid=""
}
cleanup() {
  trap - ERR INT TERM
  stop_pinfold
  s3_cleanup
  rm -rf "$work"
}
trap cleanup EXIT

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", b - a}'; }
cpu_ticks() { [[ -n $1 ]] && awk '{print $14 + $15}' "/proc/$1/stat" || echo 0; }
per_gib() { awk -v t="$1" -v hz="$ticks" -v m="$mib" 'BEGIN {printf "%.2f", t / hz * 1024 / m}'; }
mbps() { awk -v s="$1" -v b="$bytes" 'BEGIN {printf "%.1f", b / 1e6 / s}'; }

# Random bytes nobody stored before (see the top: Garage deduplicates blocks).
make_blob() { # file -> its sha256 hex
  head -c "$bytes" /dev/zero |
    openssl enc -aes-128-ctr -nosalt -K "$(openssl rand -hex 16)" -iv "$(openssl rand -hex 16)" >"$1"
  sha256sum "$1" | cut -d' ' -f1
}

start_pinfold() { # round
  local dir=$work/pinfold-$1 line
  mkdir -p "$dir"
  # [storage] in a config file (private to this run, removed at exit) rather than
  # PINFOLD_STORAGE_* variables: the file works with every build that has the S3 backend.
  (umask 077 && cat >"$dir/pinfold.toml" <<EOF
[storage]
backend = "s3"
endpoint = "$endpoint"
bucket = "$bucket"
region = "$region"
prefix = "$run_prefix/pinfold-$1"
access_key_id = "$key_id"
secret_access_key = "$secret"
$( ((redirect)) && echo "redirect = true" || true)
EOF
  )
  (
    cd "$work"
    unset "${!PINFOLD_STORAGE_@}"
    exec "$bin" serve --listen 127.0.0.1:0 --data-dir "$dir/data" --config "$dir/pinfold.toml"
  ) >"$dir/stdout" 2>"$dir/stderr" &
  pinfold_pid=$!
  base=""
  for _ in $(seq 1 600); do
    line=$(grep -m1 -o 'pinfold listening on http://[0-9.:]*' "$dir/stdout" 2>/dev/null || true)
    [[ -n $line ]] && { base=${line#pinfold listening on }; break; }
    kill -0 "$pinfold_pid" 2>/dev/null || { tail -5 "$dir/stderr" >&2; die "pinfold exited at start"; }
    sleep 0.1
  done
  [[ -n $base ]] || die "pinfold did not print its address within 60 s"
  for _ in $(seq 1 100); do curl -sf -o /dev/null "$base/healthz" && return 0; sleep 0.1; done
  die "pinfold at $base did not answer /healthz"
}

# Each measurement prints "seconds cpu-pinfold-per-GiB cpu-garage-per-GiB [extra...]".
direct_put() { # file key
  local g0 t0 t1 code
  g0=$(cpu_ticks "$garage_pid") t0=$(now)
  code=$(s3 -T "$1" -o /dev/null -w '%{http_code}' "$endpoint/$bucket/$2")
  t1=$(now)
  [[ $code == 200 ]] || die "direct PUT of $2 answered $code"
  echo "$(elapsed "$t0" "$t1") - $(per_gib $(($(cpu_ticks "$garage_pid") - g0)))"
}
direct_get() { # key
  local g0 out
  g0=$(cpu_ticks "$garage_pid")
  out=$(s3 -o /dev/null -w '%{http_code} %{size_download} %{time_total}' "$endpoint/$bucket/$1")
  read -r code size secs <<<"$out"
  [[ $code == 200 && $size == "$bytes" ]] || die "direct GET of $1 answered $code with $size bytes"
  echo "$secs - $(per_gib $(($(cpu_ticks "$garage_pid") - g0)))"
}
absolute() { [[ $1 == http* ]] && echo "$1" || echo "$base$1"; }
location() { tr -d '\r' <"$1" | awk 'tolower($1) == "location:" {print $2}' | tail -1; }
pinfold_push() { # file hex -> "seconds cpu garage post-s patch-s put-s"
  local p0 g0 t0 t1 out code post patch put loc sep
  p0=$(cpu_ticks "$pinfold_pid") g0=$(cpu_ticks "$garage_pid") t0=$(now)
  read -r code post < <(curl -sS -X POST -o /dev/null -D "$work/h1" -w '%{http_code} %{time_total}\n' \
    "$base/v2/bench/s3/blobs/uploads/")
  [[ $code == 202 ]] || die "POST uploads/ answered $code"
  loc=$(absolute "$(location "$work/h1")")
  read -r code patch < <(curl -sS --max-time 900 -X PATCH -T "$1" \
    -H 'Content-Type: application/octet-stream' -o "$work/b2" -D "$work/h2" -w '%{http_code} %{time_total}\n' "$loc")
  [[ $code == 202 ]] || die "PATCH answered $code: $(head -c 300 "$work/b2")"
  loc=$(absolute "$(location "$work/h2")")
  [[ $loc == *\?* ]] && sep='&' || sep='?'
  read -r code put < <(curl -sS --max-time 900 -X PUT -H 'Content-Length: 0' -o "$work/b3" \
    -w '%{http_code} %{time_total}\n' "$loc${sep}digest=sha256:$2")
  t1=$(now)
  [[ $code == 201 ]] || die "completing PUT answered $code: $(head -c 300 "$work/b3")"
  echo "$(elapsed "$t0" "$t1") $(per_gib $(($(cpu_ticks "$pinfold_pid") - p0))) $(per_gib $(($(cpu_ticks "$garage_pid") - g0))) $post $patch $put"
}
pinfold_pull() { # hex
  local p0 g0 out code size secs
  p0=$(cpu_ticks "$pinfold_pid") g0=$(cpu_ticks "$garage_pid")
  out=$(curl -sS -L --max-time 900 -o /dev/null -w '%{http_code} %{size_download} %{time_total}' \
    "$base/v2/bench/s3/blobs/sha256:$1")
  read -r code size secs <<<"$out"
  [[ $code == 200 && $size == "$bytes" ]] || die "Pinfold GET of the blob answered $code with $size bytes"
  echo "$secs $(per_gib $(($(cpu_ticks "$pinfold_pid") - p0))) $(per_gib $(($(cpu_ticks "$garage_pid") - g0)))"
}

# Per-round values, space-separated.
declare -A v
add() { v[$1]+="$2 "; }
run_direct() { # round
  local hex put get
  hex=$(make_blob "$work/direct.bin")
  put=$(direct_put "$work/direct.bin" "$run_prefix/direct-$1")
  rm -f "$work/direct.bin"
  get=$(direct_get "$run_prefix/direct-$1")
  read -r -a put <<<"$put"
  read -r -a get <<<"$get"
  add put_s "${put[0]}"; add put_garage_cpu "${put[2]}"
  add get_s "${get[0]}"; add get_garage_cpu "${get[2]}"
}
run_pinfold() { # round
  local hex push pull
  hex=$(make_blob "$work/pinfold.bin")
  push=$(pinfold_push "$work/pinfold.bin" "$hex")
  rm -f "$work/pinfold.bin"
  pull=$(pinfold_pull "$hex")
  read -r -a push <<<"$push"
  read -r -a pull <<<"$pull"
  add push_s "${push[0]}"; add push_cpu "${push[1]}"; add push_garage_cpu "${push[2]}"
  add push_post_s "${push[3]}"; add push_patch_s "${push[4]}"; add push_put_s "${push[5]}"
  add pull_s "${pull[0]}"; add pull_cpu "${pull[1]}"; add pull_garage_cpu "${pull[2]}"
}

last() { local a=(${v[$1]}); echo "${a[-1]}"; }
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
echo "$me: $rounds round(s), ${mib} MiB, Garage at $endpoint (bucket $bucket, prefix $run_prefix/), $bin" >&2
for ((round = 1; round <= rounds; round++)); do
  start_pinfold "$round"
  if ((round % 2)); then run_direct "$round"; run_pinfold "$round"; else run_pinfold "$round"; run_direct "$round"; fi
  stop_pinfold
  echo "round $round: direct PUT $(last put_s) s, Pinfold push $(last push_s) s (POST $(last push_post_s) + PATCH $(last push_patch_s) + PUT $(last push_put_s)), direct GET $(last get_s) s, Pinfold pull $(last pull_s) s; Pinfold CPU/GiB push $(last push_cpu), pull $(last pull_cpu)" >&2
done

median() { printf '%s\n' $1 | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
verdict() { awk -v r="$1" -v t="$2" 'BEGIN {print (r >= t) ? "PASS" : "FAIL"}'; }
per_round_ratios() { # direct-seconds pinfold-seconds -> ratios, each direct / pinfold
  paste -d' ' <(printf '%s\n' $1) <(printf '%s\n' $2) | awk '{printf "%s%.2f", (NR > 1 ? " " : ""), $1 / $2}'
}
declare -A m
for k in "${!v[@]}"; do m[$k]=$(median "${v[$k]}"); done
push_ratio=$(ratio "${m[put_s]}" "${m[push_s]}") pull_ratio=$(ratio "${m[get_s]}" "${m[pull_s]}")
push_verdict=$(verdict "$push_ratio" 0.8) pull_verdict=$(verdict "$pull_ratio" 0.9)
push_rounds=$(per_round_ratios "${v[put_s]}" "${v[push_s]}")
pull_rounds=$(per_round_ratios "${v[get_s]}" "${v[pull_s]}")
garage_cpu() { [[ -n $garage_pid ]] && echo "$1" || echo "-"; }

out=$repo/bench/results/$(date -u +%Y%m%dT%H%M%SZ)-s3
mkdir -p "$out"
commit=$(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown)
f2() { awk -v x="$1" 'BEGIN {printf "%.2f", x}'; }
f3() { awk -v x="$1" 'BEGIN {printf "%.3f", x}'; }
f3s() { local x r=""; for x in $1; do r+="$(f3 "$x") "; done; echo "${r% }"; }
{
  echo "| $mib MiB blob, Garage at $endpoint (median of $rounds) | direct S3 | Pinfold (s3 backend$( ((redirect)) && echo ", redirect = true" || true)) | ratio | goal | result |"
  echo "|---|---:|---:|---:|---|---|"
  echo "| push (POST, PATCH, PUT) vs direct PUT, MB/s | $(mbps "${m[put_s]}") | $(mbps "${m[push_s]}") | ${push_ratio}x | >= 0.8x | $push_verdict |"
  echo "| pull vs direct GET, MB/s | $(mbps "${m[get_s]}") | $(mbps "${m[pull_s]}") | ${pull_ratio}x | >= 0.9x | $pull_verdict |"
  echo "| Pinfold CPU s per GiB: push / pull | - | $(f2 "${m[push_cpu]}") / $(f2 "${m[pull_cpu]}") | - | - | - |"
  echo "| Garage CPU s per GiB: PUT or push / GET or pull | $(garage_cpu "$(f2 "${m[put_garage_cpu]}") / $(f2 "${m[get_garage_cpu]}")") | $(garage_cpu "$(f2 "${m[push_garage_cpu]}") / $(f2 "${m[pull_garage_cpu]}")") | - | - | - |"
  echo "| push time split, s: POST / PATCH / completing PUT | $(f3 "${m[put_s]}") (the PUT) | $(f3 "${m[push_post_s]}") / $(f3 "${m[push_patch_s]}") / $(f3 "${m[push_put_s]}") | - | - | - |"
  echo
  echo "MB = 10^6 bytes; ratio = Pinfold's throughput / direct's = median direct time / median Pinfold time."
  echo "Per round, s: direct PUT $(f3s "${v[put_s]}"); Pinfold push $(f3s "${v[push_s]}") (POST $(f3s "${v[push_post_s]}"); PATCH $(f3s "${v[push_patch_s]}"); PUT $(f3s "${v[push_put_s]}")); push ratio $push_rounds."
  echo "Per round, s: direct GET $(f3s "${v[get_s]}"); Pinfold pull $(f3s "${v[pull_s]}"); pull ratio $pull_rounds."
  echo "Per round, CPU s per GiB: Pinfold push ${v[push_cpu]% }, pull ${v[pull_cpu]% }; Garage PUT ${v[put_garage_cpu]% }, push ${v[push_garage_cpu]% }, GET ${v[get_garage_cpu]% }, pull ${v[pull_garage_cpu]% }."
  echo "Run: $(date -u +%FT%TZ), commit $commit, $(nproc) CPUs, $bin (built $(date -u -r "$bin" +%FT%TZ)); load average $load_start at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end."
} >"$out/summary.md"
list() { printf '%s\n' $1 | jq -R 'tonumber? // .' | jq -s .; }
{
  jq -n --arg commit "$commit" --arg endpoint "$endpoint" --arg bin "$bin" --arg built "$(date -u -r "$bin" +%FT%TZ)" \
    --argjson mib "$mib" --argjson rounds "$rounds" --argjson redirect "$( ((redirect)) && echo true || echo false)" --argjson bytes "$bytes" \
    --argjson push_ratio "$push_ratio" --argjson pull_ratio "$pull_ratio" \
    --arg push_verdict "$push_verdict" --arg pull_verdict "$pull_verdict" \
    --argjson put_mbps "$(mbps "${m[put_s]}")" --argjson push_mbps "$(mbps "${m[push_s]}")" \
    --argjson get_mbps "$(mbps "${m[get_s]}")" --argjson pull_mbps "$(mbps "${m[pull_s]}")" \
    --argjson push_rounds "$(list "$push_rounds")" --argjson pull_rounds "$(list "$pull_rounds")" \
    '{commit: $commit, endpoint: $endpoint, bin: $bin, bin_built: $built, redirect: $redirect, size_mib: $mib, bytes: $bytes, rounds: $rounds,
      push: {direct_put_mbps: $put_mbps, pinfold_push_mbps: $push_mbps, ratio: $push_ratio, goal: 0.8, result: $push_verdict, ratio_per_round: $push_rounds},
      pull: {direct_get_mbps: $get_mbps, pinfold_pull_mbps: $pull_mbps, ratio: $pull_ratio, goal: 0.9, result: $pull_verdict, ratio_per_round: $pull_rounds}}'
  for k in "${!v[@]}"; do
    jq -n --arg k "$k" --argjson median "$(jq -n "${m[$k]}" 2>/dev/null || echo null)" --argjson rounds "$(list "${v[$k]}")" \
      '{($k): {median: $median, rounds: $rounds}}'
  done | jq -s 'add | {per_round: .}'
} | jq -s 'add' >"$out/summary.json"

if ((json)); then cat "$out/summary.json"; else cat "$out/summary.md"; fi
echo "$me: results in $out" >&2
