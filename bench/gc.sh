#!/usr/bin/env bash
# bench/gc.sh - issue 5's GC cost target: a garbage collection costs what the garbage costs, not
# what the registry holds. Three servers in one run, each with `[gc] grace_seconds = 0`:
#   small  N_SMALL referenced blobs + G_FEW garbage blobs
#   large  N_LARGE referenced blobs + G_FEW garbage blobs
#   heavy  N_LARGE referenced blobs + G_MANY garbage blobs
# Referenced blobs are layers of tagged images (100 layers each); garbage blobs are uploaded and
# never referenced. A first GC per server (untimed) settles the pushes; then 3 rounds, in
# alternating order: upload fresh garbage, time `POST /api/v1/gc` (wall time, curl), check the
# report removed exactly that garbage. Medians of 3.
#   large/small (same garbage, 10x the registry) must stay <= 1.5x: cost does not follow size;
#   heavy/large shows it follows the garbage (reported, with `examined`).
#
#   bench/gc.sh [--record] [--no-build] [--release] [--small N] [--large N] [--few G] [--many G]
#
# Exit status: 0 target met, 1 missed, 2 error. The servers listen on 127.0.0.1 only.
set -Eeuo pipefail
export LC_ALL=C
ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$ROOT"

record=0 build=1 profile=debug n_small=200 n_large=2000 g_few=20 g_many=1000
while (($#)); do
  case $1 in
    --record) record=1 ;;
    --no-build) build=0 ;;
    --release) profile=release ;;
    --small) n_small=$2; shift ;;
    --large) n_large=$2; shift ;;
    --few) g_few=$2; shift ;;
    --many) g_many=$2; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "bench/gc.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
for tool in curl jq sha256sum; do
  command -v $tool >/dev/null || { echo "bench/gc.sh: $tool is required" >&2; exit 2; }
done
if ((build)); then
  if [[ $profile == release ]]; then
    timeout 3600 cargo build --release -q -p pinfold
  else
    timeout 1800 cargo build -q -p pinfold
  fi
fi
bin=target/$profile/pinfold
[[ -x $bin ]] || { echo "bench/gc.sh: $bin missing" >&2; exit 2; }

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# start <name>: a server over $work/<name>; its URL in $work/<name>.url
start() {
  local name=$1
  mkdir -p "$work/$name"
  cat >"$work/$name.toml" <<TOML
listen = "127.0.0.1:0"
data_dir = "$work/$name/data"
[gc]
grace_seconds = 0
TOML
  "$bin" --config "$work/$name.toml" serve >"$work/$name.out" 2>"$work/$name.err" &
  pids+=($!)
  for _ in $(seq 100); do grep -q "listening on" "$work/$name.out" 2>/dev/null && break; sleep 0.1; done
  sed -n 's/^pinfold listening on //p' "$work/$name.out" >"$work/$name.url"
  [[ -s $work/$name.url ]] || { echo "bench/gc.sh: server $name did not start" >&2; cat "$work/$name.err" >&2; exit 2; }
}

# upload <base> <repo> <count> <dir>: <count> random 64-byte blobs, monolithic POST ?digest=,
# 8 at a time; digests into <dir>/digests.
upload() {
  local base=$1 repo=$2 count=$3 dir=$4 i
  mkdir -p "$dir"
  for ((i = 0; i < count; i++)); do head -c 64 /dev/urandom >"$dir/$i"; done
  (cd "$dir" && sha256sum -- $(seq 0 $((count - 1)))) | awk '{ print $2, "sha256:" $1 }' >"$dir/index"
  awk '{ print $2 }' "$dir/index" >"$dir/digests"
  # One curl per blob, 8 at a time; the inner shell gets the file name as $0, the digest as $1.
  # shellcheck disable=SC2016 # expanded by the inner shell
  BASE=$base DIR=$dir REPO=$repo xargs -P 8 -n 2 sh -c \
    'curl -sS -o /dev/null -w "%{http_code}\n" -X POST -H "Content-Type: application/octet-stream" \
       --data-binary "@$DIR/$0" "$BASE/v2/$REPO/blobs/uploads/?digest=$1"' \
    <"$dir/index" >"$dir/codes" 2>&1 || true
  local bad
  bad=$(grep -cv '^201$' "$dir/codes" || true)
  [[ $bad == 0 ]] || { echo "bench/gc.sh: $bad blob uploads failed" >&2; exit 2; }
}

# populate <name> <blobs>: tagged images of 100 layers each, <blobs> layers in all.
populate() {
  local name=$1 blobs=$2 base img
  base=$(cat "$work/$name.url")
  printf '{"architecture":"amd64","os":"linux"}' >"$work/$name/config"
  local cdigest="sha256:$(sha256sum "$work/$name/config" | cut -d' ' -f1)"
  local csize
  csize=$(stat -c %s "$work/$name/config")
  curl -fsS -X POST --data-binary @"$work/$name/config" -H 'Content-Type: application/octet-stream' \
    "$base/v2/bench/app/blobs/uploads/?digest=$cdigest" -o /dev/null
  upload "$base" bench/app "$blobs" "$work/$name/layers"
  split -l 100 -d -a 4 "$work/$name/layers/digests" "$work/$name/layers/group."
  img=0
  for group in "$work/$name"/layers/group.*; do
    jq -Rn --arg c "$cdigest" --argjson s "$csize" '{schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
        config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $c, size: $s},
        layers: [inputs | {mediaType: "application/vnd.oci.image.layer.v1.tar", digest: ., size: 64}]}' \
      <"$group" >"$work/$name/manifest.json"
    curl -fsS -X PUT --data-binary @"$work/$name/manifest.json" \
      -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
      "$base/v2/bench/app/manifests/img$img" -o /dev/null
    img=$((img + 1))
  done
  curl -fsS -X POST "$base/api/v1/gc" -o "$work/$name.settle.json"
  local deleted
  deleted=$(jq '.deleted | length' "$work/$name.settle.json")
  [[ $deleted == 0 ]] || { echo "bench/gc.sh: settling GC of $name deleted $deleted items" >&2; exit 2; }
}

# round <name> <garbage> <round>: fresh garbage, one timed GC; "seconds examined" into a file.
round() {
  local name=$1 garbage=$2 r=$3 base
  base=$(cat "$work/$name.url")
  rm -rf "$work/$name/garbage"
  upload "$base" bench/junk "$garbage" "$work/$name/garbage"
  local wall
  wall=$(curl -fsS -X POST "$base/api/v1/gc" -o "$work/$name.report.$r" -w '%{time_total}')
  local deleted examined server_ms
  deleted=$(jq '[.deleted[] | select(.kind == "blob")] | length' "$work/$name.report.$r")
  examined=$(jq '.examined' "$work/$name.report.$r")
  server_ms=$(jq '.duration_ms' "$work/$name.report.$r")
  [[ $deleted == "$garbage" ]] || { echo "bench/gc.sh: $name round $r deleted $deleted of $garbage" >&2; exit 2; }
  echo "$wall $examined $server_ms" >"$work/$name.$r"
  echo "round $r $name: ${wall} s (server ${server_ms} ms), examined $examined, registry $(wc -l <"$work/$name/layers/digests") referenced blobs"
}

start small
start large
start heavy
populate small "$n_small"
populate large "$n_large"
populate heavy "$n_large"
for r in 1 2 3; do
  if ((r % 2)); then order=(small large heavy); else order=(heavy large small); fi
  for name in "${order[@]}"; do
    case $name in
      small|large) round "$name" "$g_few" "$r" ;;
      heavy) round "$name" "$g_many" "$r" ;;
    esac
  done
done
median() { cat "$work/$1".{1,2,3} | awk -v f="$2" '{ print $f }' | sort -g | sed -n 2p; }
small=$(median small 1) large=$(median large 1) heavy=$(median heavy 1)
size_ratio=$(awk -v a="$large" -v b="$small" 'BEGIN { printf "%.2f", a / b }')
garbage_ratio=$(awk -v a="$heavy" -v b="$large" 'BEGIN { printf "%.2f", a / b }')
verdict=$(awk -v r="$size_ratio" 'BEGIN { print (r <= 1.5) ? "PASS" : "FAIL" }')
table="| target | measured (median of 3) | baseline (same run) | ratio | goal | result |
|---|---:|---:|---:|---|---|
| GC of $g_few garbage blobs in a registry of $n_large referenced blobs vs of $n_small | ${large} s (server $(median large 3) ms, examined $(median large 2)) | ${small} s (server $(median small 3) ms, examined $(median small 2)) | ${size_ratio}x | <= 1.5x | ${verdict} |
| GC of $g_many garbage blobs vs $g_few, registry of $n_large referenced blobs | ${heavy} s (server $(median heavy 3) ms, examined $(median heavy 2)) | ${large} s | ${garbage_ratio}x | grows with garbage | - |"
echo
echo "$table"
if ((record)); then
  {
    echo
    echo "## $(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD): GC cost follows the garbage (bench/gc.sh)"
    echo
    echo "Command: \`bench/gc.sh --small $n_small --large $n_large --few $g_few --many $g_many\` ($profile build; three servers in one run, \`grace_seconds = 0\`, 3 rounds alternating, medians of the wall time of \`POST /api/v1/gc\`)."
    echo
    echo "$table"
  } >>bench/RESULTS.md
fi
[[ $verdict == PASS ]]
