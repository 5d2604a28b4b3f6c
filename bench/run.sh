#!/usr/bin/env bash
# bench/run.sh - benchmark Pinfold against Debian's docker-registry (CNCF distribution 2.8) and
# the machine's physical references, in ONE invocation, and report the issue's target ratios.
#
#   bench/run.sh [options]            (see --help and bench/README.md)
#
# What it does, in order:
#   1. checks the tools (installs nothing), builds Pinfold in release unless --no-build;
#   2. starts docker-registry (distribution) on 127.0.0.1:5101 with fresh filesystem storage,
#      runs the shared harness (../shared/bench/registry-bench.sh) against it with --no-refs,
#      stops it and deletes its storage;
#   3. starts `target/release/pinfold serve` on 127.0.0.1:5102 with a fresh data dir, runs the
#      harness against it WITH the physical references (dd+fsync, nginx, hashing), stops it;
#   4. computes the target ratios from the metric lines of the two outputs, prints them
#      (Markdown, or JSON with --json) and writes bench/results/<UTC timestamp>/summary.{md,json}.
#   With --rounds N, steps 2-3 are repeated N times in alternating order (D P, P D, ...) and the
#   table holds the medians.
#
# Exit status: 0 = the run completed (whatever PASS/FAIL says), 1 = a target FAILed (or a metric
# was missing) and --strict was given, 2 = error / interrupted (nothing to compare).
# Only 127.0.0.1 is contacted. Every wait, build and benchmark run is time-bounded. Servers are
# stopped by PID and temporary data is removed at exit, also after an error or Ctrl-C.
set -Eeuo pipefail
export LC_ALL=C
umask 022

PROG=bench/run.sh
SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(cd -- "$SCRIPT_DIR/.." && pwd -P)
ORIG_ARGS=("$@")

# ------------------------------------------------------------------------------------------
# defaults
HARNESS=$ROOT/../shared/bench/registry-bench.sh
RESULTS_BASE=$SCRIPT_DIR/results
DIST_PORT=5101
PIN_PORT=5102
BUILD=1
JSON=0
STRICT=0
TMP_BASE=${TMPDIR:-/tmp}
BUILD_TIMEOUT=3600      # cargo build --release
START_TIMEOUT=60        # seconds for a server to become ready
STOP_TIMEOUT=20         # seconds between TERM and KILL when stopping a server
NOISY_PCT=30            # cpu_other above this (% of one core) marks a row as noisy (harness' quiet threshold)
PINFOLD_BIN=""          # default: $CARGO_TARGET_DIR or <root>/target, then release/pinfold
SUMMARIZE_DIR=""
# development: something else in the "pinfold" slot (until Pinfold's server exists)
PIN_CMD=""              # --pinfold-cmd: command line, placeholders {listen} {port} {data} {tmp}
PIN_READY=""            # readiness path; default /healthz for Pinfold, /v2/ for --pinfold-cmd
CAND_DIST=0             # --candidate-distribution: a second docker-registry in the pinfold slot
# harness options we pass through (and the ones we need to know ourselves)
declare -a PASS=()
QUICK=0 RUNS=3 BIG_MIB=1024 CHUNKED_MIB=512 PAR_MIB=64 MAX_SECONDS=3600 NGINX_PORT=5199
ROUNDS=1                # --rounds: distribution/Pinfold pairs, alternating order

usage() {
  cat <<EOF
Usage: $PROG [options]

Benchmarks Pinfold against Debian's docker-registry (distribution 2.8) and the physical
references of this machine in one invocation, then prints the target ratios.

Options:
  --no-build             do not run 'cargo build --release -p pinfold' first
  --pinfold-bin PATH     Pinfold binary          [\${CARGO_TARGET_DIR:-<repo>/target}/release/pinfold]
  --harness PATH         registry-bench.sh       [<repo>/../shared/bench/registry-bench.sh]
  --results-dir DIR      where <UTC timestamp>/ goes                         [bench/results]
  --tmp-dir DIR          parent of the temporary data dirs                   [\${TMPDIR:-/tmp}]
  --dist-port P          distribution port on 127.0.0.1                      [$DIST_PORT]
  --pinfold-port P       Pinfold port on 127.0.0.1                           [$PIN_PORT]
  --build-timeout S      limit for the cargo build                           [$BUILD_TIMEOUT]
  --start-timeout S      limit for a server to answer its readiness check    [$START_TIMEOUT]
  --json                 print the ratio table as JSON instead of Markdown
  --strict               exit 1 if any target FAILs or is MISSING
  --rounds N             N pairs of runs in alternating order (D P, P D, D P, ...), each with fresh
                         servers; the table shows the medians of the per-round values   [1]
  --summarize DIR        only (re)compute the table from DIR/distribution.txt and DIR/pinfold.txt
  -h, --help             this text

Passed through to the harness (same meaning as there; both registries get the same values):
  --quick  --runs N  --big-mib N  --chunked-mib N  --chunk-mib N  --par-mib N  --par-n N
  --tags N  --page-n N  --duration S  --conns "A B"  --wrk-threads N  --nginx-port P
  --nginx-workers N  --no-hey  --upload-mode M  --wait-quiet S  --quiet-pct P  --max-seconds S
  (--quick uses tiny sizes: it tests the plumbing and is NOT a benchmark.)

Development (put something else in the "pinfold" slot, e.g. while Pinfold's server is not ready):
  --candidate-distribution   a second docker-registry, same config, on the Pinfold port
  --pinfold-cmd CMD          start CMD instead of Pinfold (exec'd, so its PID is the server's);
                             placeholders: {listen} {port} {data} {tmp}; implies --no-build
  --ready-path PATH          readiness check path [/healthz for Pinfold, /v2/ otherwise]

Exit: 0 run completed (regardless of PASS/FAIL), 1 a target failed and --strict, 2 error.
Needs: curl jq wrk hey nginx docker-registry openssl (+ cargo unless --no-build).
A full run takes about 5-6 minutes plus the build and needs about 8 GiB free in /tmp (bench/README.md).
EOF
}

# ------------------------------------------------------------------------------------------
# helpers
log()  { printf '[%s] run.sh: %s\n' "$(date +%T)" "$*" >&2; }
warn() { printf '[%s] run.sh: WARNING: %s\n' "$(date +%T)" "$*" >&2; }
die()  { printf '[%s] run.sh: FATAL: %s\n' "$(date +%T)" "$*" >&2; exit 2; }
is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
need_val() { (($# >= 2)) || die "option $1 needs a value"; }

# ------------------------------------------------------------------------------------------
# arguments
while (($#)); do
  case $1 in
    -h|--help) usage; exit 0 ;;
    --no-build) BUILD=0; shift ;;
    --json) JSON=1; shift ;;
    --strict) STRICT=1; shift ;;
    --rounds) need_val "$@"; ROUNDS=$2; shift 2 ;;
    --pinfold-bin) need_val "$@"; PINFOLD_BIN=$2; shift 2 ;;
    --harness) need_val "$@"; HARNESS=$2; shift 2 ;;
    --results-dir) need_val "$@"; RESULTS_BASE=$2; shift 2 ;;
    --tmp-dir) need_val "$@"; TMP_BASE=$2; shift 2 ;;
    --dist-port) need_val "$@"; DIST_PORT=$2; shift 2 ;;
    --pinfold-port) need_val "$@"; PIN_PORT=$2; shift 2 ;;
    --build-timeout) need_val "$@"; BUILD_TIMEOUT=$2; shift 2 ;;
    --start-timeout) need_val "$@"; START_TIMEOUT=$2; shift 2 ;;
    --summarize) need_val "$@"; SUMMARIZE_DIR=$2; shift 2 ;;
    --candidate-distribution) CAND_DIST=1; shift ;;
    --pinfold-cmd) need_val "$@"; PIN_CMD=$2; shift 2 ;;
    --ready-path) need_val "$@"; PIN_READY=$2; shift 2 ;;
    # pass-through flags
    --quick) QUICK=1; PASS+=("$1"); shift ;;
    --no-hey) PASS+=("$1"); shift ;;
    # pass-through options with a value (a few of them we need for the disk estimate / limits)
    --runs|--big-mib|--chunked-mib|--chunk-mib|--par-mib|--par-n|--tags|--page-n|--duration|--conns|\
    --wrk-threads|--nginx-port|--nginx-workers|--upload-mode|--wait-quiet|--quiet-pct|--max-seconds)
      need_val "$@"
      case $1 in
        --runs) RUNS=$2 ;; --big-mib) BIG_MIB=$2 ;; --chunked-mib) CHUNKED_MIB=$2 ;;
        --par-mib) PAR_MIB=$2 ;; --max-seconds) MAX_SECONDS=$2 ;; --nginx-port) NGINX_PORT=$2 ;;
      esac
      PASS+=("$1" "$2"); shift 2 ;;
    --no-refs) die "--no-refs cannot be passed through: the references are what the Pinfold run measures" ;;
    --pid|--label) die "$1 is set by $PROG itself" ;;
    *) usage >&2; die "unknown argument '$1'" ;;
  esac
done

for v in DIST_PORT PIN_PORT NGINX_PORT BUILD_TIMEOUT START_TIMEOUT ROUNDS RUNS BIG_MIB CHUNKED_MIB PAR_MIB MAX_SECONDS; do
  if ! is_uint "${!v}" || ((${!v} == 0)); then die "${v,,} must be a positive integer (got '${!v}')"; fi
done
((ROUNDS <= 9)) || die "--rounds must be 1..9"
((DIST_PORT < 65536 && PIN_PORT < 65536)) || die "bad port"
((DIST_PORT != PIN_PORT && DIST_PORT != NGINX_PORT && PIN_PORT != NGINX_PORT)) || die "the distribution, Pinfold and nginx ports must differ"
((CAND_DIST == 0)) || [[ -z $PIN_CMD ]] || die "--candidate-distribution and --pinfold-cmd exclude each other"
[[ -z $PIN_READY || $PIN_READY == /* ]] || die "--ready-path must start with /"
if ((QUICK)); then RUNS=2 BIG_MIB=64 CHUNKED_MIB=32 PAR_MIB=8; fi   # what the harness' --quick uses

# ==========================================================================================
# metrics -> JSON, ratio table
# ==========================================================================================
# metrics_json FILE: {"name": {"value": "193.1", "unit": "MB/s"}, ...} from the metric lines
metrics_json() {
  awk '/^[A-Za-z0-9_.]+=/ {
         i = index($0, "="); name = substr($0, 1, i - 1); rest = substr($0, i + 1)
         j = index(rest, " "); if (j) { v = substr(rest, 1, j - 1); u = substr(rest, j + 1) } else { v = rest; u = "" }
         printf "%s\t%s\t%s\n", name, v, u }' "$1" |
    jq -R -n '[inputs | split("\t") | {key: .[0], value: {value: .[1], unit: .[2]}}] | from_entries'
}

# The table. $d = distribution metrics, $p = candidate metrics (its run also holds the refs),
# $x = values run.sh measured itself (VmHWM at stop), $meta = run information.
# Metric names carry the sizes, so they are found by pattern: a --quick run has other sizes.
# shared by the per-round table and the combination of rounds
read -r -d '' JQ_LIB <<'JQ' || true
def verdict($op; $tgt): if . == null then "MISSING" elif ($op == ">=" and . >= $tgt) or ($op == "<=" and . <= $tgt) then "PASS" else "FAIL" end;
def count_status: .counts = ({PASS: 0, FAIL: 0, MISSING: 0} + (.rows | group_by(.status) | map({key: .[0].status, value: length}) | from_entries));
JQ
read -r -d '' RATIO_JQ <<'JQ' || true
def num($m; $k): if $k == null then null else ($m[$k].value // null) | if . == null then null else (try tonumber catch null) end end;
def unit($m; $k): if $k == null then null else ($m[$k].unit // null) end;
def keyre($m; $re): [$m | keys[] | select(test($re))] | sort | .[0] // null;
def other($m; $k): if $k == null then null else num($m; ($k | sub("\\.(rps|p50|p99)$"; "")) + ".cpu_other") end;
# row(id; what; measured map; measured key; reference source; reference map; reference key;
#     ratio style "x" | "%"; target on "ratio" | "measured"; op; target value; target text)
def row($id; $what; $mm; $mk; $rsrc; $rm; $rk; $style; $on; $op; $tgt; $tgttext):
  num($mm; $mk) as $mv | num($rm; $rk) as $rv |
  (if $mv != null and $rv != null and $rv != 0 then $mv / $rv else null end) as $ratio |
  (if $on == "ratio" then $ratio else $mv end) as $x |
  ([ (other($mm; $mk) | select(. != null and . > $meta.noisy_pct) | "candidate cpu_other \(.)%core"),
     (other($rm; $rk) | select(. != null and . > $meta.noisy_pct) | "\($rsrc) cpu_other \(.)%core")
   ] | join("; ")) as $note |
  { id: $id, what: $what,
    measured: {metric: $mk, value: $mv, unit: unit($mm; $mk)},
    reference: {source: $rsrc, metric: $rk, value: $rv, unit: unit($rm; $rk)},
    ratio: $ratio, ratio_style: $style,
    target: {on: $on, op: $op, value: $tgt, text: $tgttext},
    status: ($x | verdict($op; $tgt)),
    note: $note };
# peak RSS in MiB: the largest of the 5 Hz sampled peak, VmHWM at the end of the harness run and
# VmHWM read by run.sh just before it stopped the server (covers the whole life of the process)
def rss($m; $stop):
  [num($m; "registry_rss_peak_sampled"), num($m; "registry_vmhwm"), $stop] | map(select(. != null)) |
  if length == 0 then {} else {peak_rss: {value: (max / 1024), unit: "MiB"}} end;

keyre($p; "^blob_push_monolithic_[0-9]+MiB$") as $mono |
(if $mono then "ref_write_fsync_" + ($mono | capture("_(?<n>[0-9]+MiB)$").n) else null end) as $dd |
keyre($p; "^blob_push_chunked_[0-9]+MiB_[0-9]+MiB_chunks$") as $chunk |
keyre($p; "^blob_pull_[0-9]+MiB$") as $pull |
(if $pull then "ref_nginx_get_" + ($pull | capture("_(?<n>[0-9]+MiB)$").n) else null end) as $ngget |
keyre($p; "^blob_pull_parallel_[0-9]+x[0-9]+MiB$") as $par |
(if $par then "ref_nginx_get_parallel_" + ($par | capture("_(?<n>[0-9]+x[0-9]+MiB)$").n) else null end) as $ngpar |
# manifest GET at 64 connections (if --conns left 64 out: the highest count that was measured)
([$p | keys[] | capture("^manifest_get_c(?<c>[0-9]+)\\.rps$") | .c | tonumber]) as $conns |
(if ($conns | index(64)) != null then 64 elif ($conns | length) > 0 then ($conns | max) else 64 end) as $c |
keyre($p; "^tags_push_[0-9]+$") as $tags |
rss($p; $x.candidate_vmhwm_at_stop) as $prss | rss($d; $x.distribution_vmhwm_at_stop) as $drss |
{
  meta: $meta,
  rows: [
    row("push_mono_vs_dist"; "blob push, monolithic, vs distribution";
        $p; $mono; "distribution"; $d; $mono; "x"; "ratio"; ">="; 2.5; ">= 2.5x"),
    row("push_mono_vs_fsync"; "blob push, monolithic, vs dd write+fsync";
        $p; $mono; "reference"; $p; $dd; "%"; "ratio"; ">="; 0.80; ">= 80%"),
    row("push_chunked_vs_dist"; "blob push, chunked, vs distribution";
        $p; $chunk; "distribution"; $d; $chunk; "x"; "ratio"; ">="; 2.5; ">= 2.5x"),
    row("push_chunked_vs_fsync"; "blob push, chunked, vs dd write+fsync";
        $p; $chunk; "reference"; $p; $dd; "%"; "ratio"; ">="; 0.80; ">= 80%"),
    row("pull_vs_nginx"; "blob pull vs nginx GET (sendfile)";
        $p; $pull; "reference"; $p; $ngget; "%"; "ratio"; ">="; 0.95; ">= 95%"),
    row("pull_parallel_vs_nginx"; "parallel blob pulls vs nginx";
        $p; $par; "reference"; $p; $ngpar; "%"; "ratio"; ">="; 0.90; ">= 90%"),
    row("manifest_get_vs_dist"; "manifest GET (wrk) vs distribution";
        $p; "manifest_get_c\($c).rps"; "distribution"; $d; "manifest_get_c\($c).rps"; "x"; "ratio"; ">="; 15; ">= 15x"),
    row("manifest_get_vs_nginx"; "manifest GET (wrk) vs nginx small-file GET";
        $p; "manifest_get_c\($c).rps"; "reference"; $p; "ref_nginx_small_get_c\($c).rps"; "%"; "ratio"; ">="; 0.40; ">= 40%"),
    row("manifest_get_p99"; "manifest GET p99 latency";
        $p; "manifest_get_c\($c).p99"; "distribution"; $d; "manifest_get_c\($c).p99"; "x"; "measured"; "<="; 10; "<= 10 ms"),
    row("tags_push_rate"; "tags pushed one after another";
        $p; $tags; "distribution"; $d; $tags; "x"; "measured"; ">="; 1000; ">= 1000 tags/s"),
    row("tags_list_paginated"; "tags/list ?n= pagination";
        $p; "tags_list_paginated_supported"; "distribution"; $d; "tags_list_paginated_supported"; "x"; "measured"; ">="; 1; "supported"),
    (row("peak_rss"; "peak RSS over the whole run";
         $prss; "peak_rss"; "distribution"; $drss; "peak_rss"; "x"; "measured"; "<="; 64; "<= 64 MiB")
     | .measured.metric = "max(registry_rss_peak_sampled, registry_vmhwm, VmHWM at stop)"
     | .reference.metric = .measured.metric)
  ]
}
| count_status
JQ
# several rounds -> one table: medians of the per-round values; the ratio is the median of the
# per-round ratios (each round pairs runs made back to back), the verdict is taken on the medians
read -r -d '' COMBINE_JQ <<'JQ' || true
def median: sort | if length == 0 then null elif length % 2 == 1 then .[(length - 1) / 2] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
. as $rs | $rs[0] as $first |
{ meta: ($first.meta + {results: $results, rounds: ($rs | length), round_results: [$rs[].meta.results],
                        distribution: ($first.meta.distribution + {started: ([$rs[].meta.distribution.started] | join(", ")),
                                                                    bench_status: ([$rs[].meta.distribution.bench_status] | unique | join(","))}),
                        candidate: ($first.meta.candidate + {started: ([$rs[].meta.candidate.started] | join(", ")),
                                                              bench_status: ([$rs[].meta.candidate.bench_status] | unique | join(","))})}),
  rows: [ range(0; $first.rows | length) as $i | [$rs[].rows[$i]] as $v | $v[0] as $r0 |
    ([$v[].measured.value | select(. != null)] | median) as $mv |
    ([$v[].reference.value | select(. != null)] | median) as $rv |
    ([$v[].ratio | select(. != null)] | median) as $ratio |
    $r0 + { measured: ($r0.measured + {value: $mv}), reference: ($r0.reference + {value: $rv}), ratio: $ratio,
            status: ((if $r0.target.on == "ratio" then $ratio else $mv end) | verdict($r0.target.op; $r0.target.value)),
            per_round: [$v[] | {measured: .measured.value, reference: .reference.value, ratio: .ratio, status: .status}],
            note: ([$v[].note | select(. != "")] | if length > 0 then "noisy in \(length) of \($rs | length) rounds" else "" end) } ]
} | count_status
JQ

# summarize DIR [INFO_JSON]: DIR/{distribution,pinfold}.txt -> DIR/summary.json + DIR/summary.md
summarize() {
  local dir=$1 info=${2:-$1/run-info.json} d p x meta
  [[ -s $dir/distribution.txt && -s $dir/pinfold.txt ]] || die "$dir must contain distribution.txt and pinfold.txt"
  d=$(metrics_json "$dir/distribution.txt"); p=$(metrics_json "$dir/pinfold.txt")
  x='{}'
  if [[ -s $dir/servers.txt ]]; then x=$(metrics_json "$dir/servers.txt" | jq 'map_values(.value | tonumber? // null)'); fi
  hdr() { sed -n "s/^# $1//p" "$2" | head -1; }
  status_of() { grep -E '^bench_status=' "$1" | tail -1 | sed 's/^bench_status=//; s/ -$//'; }
  meta=$(jq -n \
    --arg results "$dir" \
    --arg dist_label "$(hdr 'label: ' "$dir/distribution.txt")" --arg cand_label "$(hdr 'label: ' "$dir/pinfold.txt")" \
    --arg dist_sizes "$(hdr 'sizes: ' "$dir/distribution.txt")" --arg cand_sizes "$(hdr 'sizes: ' "$dir/pinfold.txt")" \
    --arg dist_started "$(hdr 'registry-bench v[0-9]*  ' "$dir/distribution.txt")" \
    --arg cand_started "$(hdr 'registry-bench v[0-9]*  ' "$dir/pinfold.txt")" \
    --arg host "$(hdr 'host: ' "$dir/pinfold.txt")" \
    --arg dist_status "$(status_of "$dir/distribution.txt")" --arg cand_status "$(status_of "$dir/pinfold.txt")" \
    --argjson info "$(if [[ -s $info ]]; then cat "$info"; else echo '{}'; fi)" \
    --argjson noisy "$NOISY_PCT" \
    '{results: $results, host: $host, noisy_pct: $noisy, rounds: 1,
      distribution: {label: $dist_label, started: $dist_started, sizes: $dist_sizes, bench_status: $dist_status},
      candidate: {label: $cand_label, started: $cand_started, sizes: $cand_sizes, bench_status: $cand_status},
      quick: (($cand_sizes | test("QUICK")) or ($dist_sizes | test("QUICK")))} + $info')
  jq -n --argjson d "$d" --argjson p "$p" --argjson x "$x" --argjson meta "$meta" "$JQ_LIB $RATIO_JQ" > "$dir/summary.json.tmp"
  mv -f "$dir/summary.json.tmp" "$dir/summary.json"
  render_md "$dir/summary.json" > "$dir/summary.md.tmp"
  mv -f "$dir/summary.md.tmp" "$dir/summary.md"
}

# combine DIR ROUND_DIR...: the rounds' summary.json -> DIR/summary.json + DIR/summary.md
combine() {
  local dir=$1; shift
  local -a files=()
  for r; do files+=("$r/summary.json"); done
  jq -s --arg results "$dir" "$JQ_LIB $COMBINE_JQ" "${files[@]}" > "$dir/summary.json.tmp"
  mv -f "$dir/summary.json.tmp" "$dir/summary.json"
  render_md "$dir/summary.json" > "$dir/summary.md.tmp"
  mv -f "$dir/summary.md.tmp" "$dir/summary.md"
}

# render_md SUMMARY_JSON: the Markdown table (numbers formatted by awk's printf)
render_md() {
  local s=$1
  jq -r '.meta as $m |
    "# Pinfold benchmark: target ratios",
    "",
    "- results: `\($m.results)`",
    "- candidate: **\($m.candidate.label)** (\($m.candidate.started), bench_status=\($m.candidate.bench_status))",
    "- baseline: **\($m.distribution.label)** (\($m.distribution.started), bench_status=\($m.distribution.bench_status))",
    "- host: \($m.host)",
    "- sizes: \($m.candidate.sizes)",
    (if $m.rounds > 1 then "- rounds: \($m.rounds), in alternating order; the table holds the medians over the rounds (ratio = median of the per-round ratios); each round has its own table in round-N/summary.md" else empty end),
    (if $m.command then "- command: `\($m.command)`" else empty end),
    (if $m.git then "- git: \($m.git)\(if ($m.pinfold_bin_mtime // "") != "" then ", binary built \($m.pinfold_bin_mtime)" else "" end)" else empty end),
    (if ($m.server_env // "") != "" then "- environment given to Pinfold: `\($m.server_env | rtrimstr("\n") | gsub("\n"; " "))`" else empty end),
    (if $m.quick then "- **QUICK MODE: tiny sizes, a test of the plumbing, NOT a benchmark**" else empty end),
    (if $m.candidate_is_pinfold == false then "- **DEVELOPMENT RUN: the candidate slot was NOT Pinfold**" else empty end),
    (if $m.distribution.sizes != $m.candidate.sizes then "- **WARNING: the two runs used different sizes**" else empty end),
    ""' "$s"
  printf '| target | metric (candidate) | measured | reference | ratio | goal | result | note |\n'
  printf '|---|---|---:|---:|---:|---|---|---|\n'
  jq -r '.rows[] | [.what, (.measured.metric // "-"), (.measured.value // "-"), (.measured.unit // ""),
                   (.reference.value // "-"), (.reference.unit // ""),
                   (if .reference.source == "distribution" then "distribution" else (.reference.metric // "-") end),
                   (.ratio // "-"), .ratio_style, .target.text, .status, (.note // ""), .target.on,
                   ((.per_round // []) | map(if .ratio != null then .ratio else "-" end) | join(",")),
                   ((.per_round // []) | map(.measured // "-") | join(","))] | map(tostring) | @tsv' "$s" |
    awk -F'\t' '
      function fmt(v, u) {
        if (v == "-" || v == "null") return "-"
        if (u == "bool") return (v + 0 ? "yes" : "no")
        if (u == "ms") return sprintf("%.2f ms", v)
        return sprintf("%.1f %s", v, u)
      }
      function fratio(v, style) {
        if (v == "-" || v == "null") return "-"
        return (style == "%") ? sprintf("%.1f%%", 100 * v) : sprintf("%.2fx", v)
      }
      {
        ratio = fratio($8, $9)
        ref = fmt($5, $6); if (ref != "-") ref = ref " (" $7 ")"
        res = ($11 == "PASS") ? "PASS" : "**" $11 "**"
        note = $12
        if ($14 != "") {   # several rounds: show what the verdict was taken on, per round
          n = split(($13 == "ratio") ? $14 : $15, a, ","); pr = ""
          for (i = 1; i <= n; i++) pr = pr (i > 1 ? ", " : "") (($13 == "ratio") ? fratio(a[i], $9) : fmt(a[i], $4))
          note = "rounds: " pr (note != "" ? "; " note : "")
        }
        printf "| %s | `%s` | %s | %s | %s | %s | %s | %s |\n", $1, $2, fmt($3, $4), ref, ratio, $10, res, note
      }'
  jq -r '"",
    "\(.counts.PASS) PASS, \(.counts.FAIL) FAIL, \(.counts.MISSING) MISSING.",
    "Ratios are candidate / reference from this one invocation. \"distribution\" = the docker-registry run,",
    "\"reference\" = the physical reference measured in the candidate run (dd, nginx). Differences under about",
    "20-30 % are noise on this machine; a note flags rows where other processes used > \(.meta.noisy_pct) %core",
    "(cpu_other). Raw harness outputs: distribution.txt, pinfold.txt\(if .meta.rounds > 1 then " in round-N/" else "" end)."' "$s"
}

# summarize_all DIR: one round (DIR/*.txt) or several (DIR/round-N/*.txt)
summarize_all() {
  local dir=$1 r
  local -a rounds=()
  for r in "$dir"/round-[0-9]*; do [[ -d $r ]] && rounds+=("$r"); done
  if ((${#rounds[@]})); then
    for r in "${rounds[@]}"; do summarize "$r" "$dir/run-info.json"; done
    combine "$dir" "${rounds[@]}"
  else
    summarize "$dir"
  fi
}
show_summary() { if ((JSON)); then cat "$1/summary.json"; else cat "$1/summary.md"; fi; }

if [[ -n $SUMMARIZE_DIR ]]; then
  for t in jq awk; do command -v "$t" >/dev/null 2>&1 || { echo "$PROG: missing tool '$t' (Debian package: $t)" >&2; exit 2; }; done
  [[ -d $SUMMARIZE_DIR ]] || die "--summarize: no such directory $SUMMARIZE_DIR"
  summarize_all "$SUMMARIZE_DIR"
  show_summary "$SUMMARIZE_DIR"
  exit 0
fi

# ==========================================================================================
# preflight: tools (installs nothing), harness, ports, disk
# ==========================================================================================
declare -a MISSING=()
need() { command -v "$1" >/dev/null 2>&1 || MISSING+=("$1 (Debian package: $2)"); }
need curl curl; need jq jq; need wrk wrk; need hey hey; need nginx nginx-light
need docker-registry docker-registry; need openssl openssl; need awk mawk; need timeout coreutils
if ((BUILD)) && [[ -z $PIN_CMD ]] && ((CAND_DIST == 0)); then need cargo "cargo (or rustup)"; fi
if ((${#MISSING[@]})); then
  printf '%s: missing tools:\n' "$PROG" >&2; printf '  %s\n' "${MISSING[@]}" >&2
  printf 'install them with: apt-get install -y --no-install-recommends curl jq wrk hey nginx-light docker-registry openssl\n' >&2
  exit 2
fi
[[ -f $HARNESS && -r $HARNESS ]] || die "harness not found: $HARNESS (use --harness PATH)"
HARNESS=$(cd -- "$(dirname -- "$HARNESS")" && pwd -P)/$(basename -- "$HARNESS")

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$DIST_PORT" "$PIN_PORT" "$NGINX_PORT"; do
  ! port_in_use "$p" || die "port 127.0.0.1:$p is already in use (something else is listening there)"
done

[[ -d $TMP_BASE && -w $TMP_BASE ]] || die "--tmp-dir $TMP_BASE is not a writable directory"
# disk: the harness refuses to start without (RUNS+2)*big + 2*chunked + par + 256 MiB free in /tmp;
# while it runs it holds up to 3*big (monolithic phase) and the registry's storage grows to
# RUNS*(big+chunked) + par. Only one registry's storage exists at a time (deleted after its run).
HARNESS_NEED=$(( (RUNS + 2) * BIG_MIB + 2 * CHUNKED_MIB + PAR_MIB + 256 ))
HARNESS_PEAK=$(( 3 * BIG_MIB + 256 ))
STORE_NEED=$(( RUNS * (BIG_MIB + CHUNKED_MIB) + PAR_MIB + 64 ))
avail_mib() { df -Pk "$1" | awk 'NR==2{print int($4/1024)}'; }
max() { if (($1 > $2)); then echo "$1"; else echo "$2"; fi; }
if [[ $(stat -c %d /tmp) == "$(stat -c %d "$TMP_BASE")" ]]; then
  need_mib=$(( $(max "$HARNESS_NEED" $((HARNESS_PEAK + STORE_NEED))) + 512 ))
  (($(avail_mib /tmp) > need_mib)) || die "not enough space in /tmp: need ~$need_mib MiB (harness + registry storage), have $(avail_mib /tmp) MiB"
else
  need_mib=$(( $(max "$HARNESS_NEED" "$HARNESS_PEAK") + 512 ))
  (($(avail_mib /tmp) > need_mib)) || die "not enough space in /tmp for the harness: need ~$need_mib MiB, have $(avail_mib /tmp) MiB"
  (($(avail_mib "$TMP_BASE") > STORE_NEED + 512)) || die "not enough space in $TMP_BASE for registry storage: need ~$((STORE_NEED + 512)) MiB"
fi

# ==========================================================================================
# state, cleanup (only what this script created or started, by PID)
# ==========================================================================================
TS=$(date -u +%Y%m%dT%H%M%SZ)
RES=""; RD=""; WORK=""; OWN_MARK=.pinfold-bench-owned   # RD: the current round's output dir
DIST_PID=""; PIN_PID=""; JOB_PID=""; TAIL_PID=""

stop_pid() {  # stop_pid PID SIGNAL SECONDS: signal a process we started, wait, then KILL
  local p=$1 sig=$2 secs=$3 i
  [[ -n $p ]] || return 0
  if kill -0 "$p" 2>/dev/null; then
    kill "-$sig" "$p" 2>/dev/null || true
    for ((i = 0; i < secs * 10; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$p" 2>/dev/null; then
      warn "pid $p did not stop within ${secs}s after SIG$sig; sending SIGKILL"
      kill -KILL "$p" 2>/dev/null || true
    fi
  fi
  wait "$p" 2>/dev/null || true
}
save_log() {  # save_log SRC NAME: keep the end of a server log with the round's results
  [[ -n $RD && -d $RD && -f $1 ]] || return 0
  tail -c 262144 -- "$1" > "$RD/$2" 2>/dev/null || true
}
# shellcheck disable=SC2317  # (invoked through the EXIT trap)
cleanup() {
  local rc=$?
  trap - ERR INT TERM HUP
  set +e
  # the harness/build runs under timeout(1), which passes the signal on to its process group
  stop_pid "$JOB_PID" TERM 30; JOB_PID=""
  stop_pid "$TAIL_PID" TERM 2; TAIL_PID=""
  stop_pid "$PIN_PID" TERM "$STOP_TIMEOUT"; PIN_PID=""
  stop_pid "$DIST_PID" TERM "$STOP_TIMEOUT"; DIST_PID=""
  if [[ -n $WORK && -f $WORK/$OWN_MARK && $(cat "$WORK/$OWN_MARK") == "$$" ]]; then
    for f in "$WORK"/*.server.log; do [[ -f $f ]] && save_log "$f" "${f##*/}"; done
    rm -rf -- "$WORK"
  fi
  if ((rc != 0 && rc != 1)); then
    # nothing worth keeping (no harness output, no build log): do not leave an empty results dir
    if [[ -n $RES && -d $RES ]] && [[ -z $(find "$RES" -type f ! -name run-info.json -print -quit) ]]; then
      rm -rf -- "$RES"; RES=""
    fi
    log "run did NOT complete (exit $rc)${RES:+; partial outputs in $RES}"
    rc=2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'die "interrupted"' INT TERM HUP
trap 'die "unexpected error (exit $?) at line $LINENO: $BASH_COMMAND"' ERR

# run_bounded SECONDS LOGFILE CMD...: run CMD under timeout(1) in the background (so that a
# Ctrl-C reaches our trap at once), stream LOGFILE to stderr, return CMD's exit status
run_bounded() {
  local secs=$1 logf=$2 rc=0; shift 2
  : > "$logf"
  timeout --kill-after=30 "$secs" "$@" 2>>"$logf" &
  JOB_PID=$!
  tail -n +1 -f --pid="$JOB_PID" -- "$logf" >&2 &
  TAIL_PID=$!
  wait "$JOB_PID" || rc=$?
  JOB_PID=""
  stop_pid "$TAIL_PID" TERM 3; TAIL_PID=""
  ((rc != 124)) || warn "timed out after ${secs}s: $*"
  return "$rc"
}

# ------------------------------------------------------------------------------------------
mkdir -p -- "$RESULTS_BASE"
RES=$(cd -- "$RESULTS_BASE" && pwd -P)/$TS
[[ ! -e $RES ]] || die "$RES already exists"
mkdir -p -- "$RES"
WORK=$(mktemp -d -- "$TMP_BASE/pinfold-bench.XXXXXXXX")
echo $$ > "$WORK/$OWN_MARK"
log "results: $RES"
log "temporary data: $WORK"

GIT_DESC=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)
DIST_VERSION=$(docker-registry --version 2>/dev/null | awk '{print $NF}')
DIST_LABEL=distribution-${DIST_VERSION:-unknown}

# ------------------------------------------------------------------------------------------
# the candidate: Pinfold (default) or, for development, something else in its slot
CAND_IS_PINFOLD=1 PINFOLD_BIN_MTIME=""
if ((CAND_DIST)); then
  CAND_IS_PINFOLD=0; BUILD=0; CAND_LABEL="dev-candidate-$DIST_LABEL"
  PIN_CMD="docker-registry serve {tmp}/candidate.yml"
elif [[ -n $PIN_CMD ]]; then
  CAND_IS_PINFOLD=0; BUILD=0; first=${PIN_CMD%% *}; CAND_LABEL="dev-candidate-${first##*/}"
else
  CAND_LABEL=pinfold-$GIT_DESC
fi
[[ -n $PIN_READY ]] || { [[ -n $PIN_CMD ]] && PIN_READY=/v2/ || PIN_READY=/healthz; }

if ((CAND_IS_PINFOLD)); then
  if [[ -z $PINFOLD_BIN ]]; then
    PINFOLD_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/pinfold
    [[ $PINFOLD_BIN == /* ]] || PINFOLD_BIN=$ROOT/$PINFOLD_BIN
  fi
  if ((BUILD)); then
    log "building: cargo build --release -p pinfold (limit ${BUILD_TIMEOUT}s)"
    run_bounded "$BUILD_TIMEOUT" "$RES/build.log" cargo build --release -p pinfold --manifest-path "$ROOT/Cargo.toml" ||
      die "cargo build --release -p pinfold failed (log: $RES/build.log)"
  fi
  [[ -x $PINFOLD_BIN ]] || die "Pinfold binary not found or not executable: $PINFOLD_BIN"
  # fail now rather than after the distribution run
  timeout 10 "$PINFOLD_BIN" serve --help > /dev/null 2>&1 || die "'$PINFOLD_BIN serve --help' failed: is this Pinfold with a serve command?"
  PINFOLD_BIN_MTIME=$(date -u -r "$PINFOLD_BIN" +%Y-%m-%dT%H:%M:%SZ)
  ((BUILD)) || log "using the existing binary $PINFOLD_BIN (built $PINFOLD_BIN_MTIME, not rebuilt: --no-build)"
fi

# environment that changes how the servers behave: REGISTRY_* is removed for docker-registry (the
# baseline had none); PINFOLD_* and RUST_LOG reach Pinfold and are recorded with the results
declare -a REG_ENV_UNSET=()
for v in $(compgen -e); do [[ $v == REGISTRY_* ]] && REG_ENV_UNSET+=(-u "$v"); done
((${#REG_ENV_UNSET[@]} == 0)) || log "removing $((${#REG_ENV_UNSET[@]} / 2)) REGISTRY_* variable(s) from docker-registry's environment"
SERVER_ENV=$(for v in $(compgen -e); do [[ $v == PINFOLD_* || $v == RUST_LOG ]] && printf '%s=%s\n' "$v" "${!v}"; done; true)
[[ -z $SERVER_ENV ]] || warn "these variables reach Pinfold and may change what is measured: $(tr '\n' ' ' <<<"$SERVER_ENV")"

jq -n --arg server_env "$SERVER_ENV" --arg command "$PROG${ORIG_ARGS[*]:+ ${ORIG_ARGS[*]}}" --arg git "$GIT_DESC" --arg harness "$HARNESS" \
  --arg harness_sha256 "$(sha256sum "$HARNESS" | cut -d' ' -f1)" \
  --arg pinfold_bin "${PINFOLD_BIN:-}" --arg pinfold_bin_mtime "$PINFOLD_BIN_MTIME" --arg pinfold_cmd "${PIN_CMD:-}" \
  --argjson candidate_is_pinfold "$( ((CAND_IS_PINFOLD)) && echo true || echo false)" \
  --arg passthrough "${PASS[*]:-}" \
  '{command: $command, git: $git, harness: $harness, harness_sha256: $harness_sha256,
    pinfold_bin: $pinfold_bin, pinfold_bin_mtime: $pinfold_bin_mtime, pinfold_cmd: $pinfold_cmd, candidate_is_pinfold: $candidate_is_pinfold,
    passthrough: $passthrough, server_env: $server_env}' > "$RES/run-info.json"

# ------------------------------------------------------------------------------------------
# servers
write_dist_config() {  # write_dist_config FILE PORT DATADIR: the recorded baseline's config
  cat > "$1" <<EOF
# docker-registry (distribution 2.8, Debian) config written by $PROG; mirrors the config in
# ../shared/bench/baseline-distribution-2.8.2.txt (only the port and the storage dir differ)
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: $3
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$2
  headers:
    X-Content-Type-Options: [nosniff]
EOF
}
wait_ready() {  # wait_ready PID URL LOG NAME: poll URL until 200 (bounded), fail if PID exits
  local pid=$1 url=$2 logf=$3 name=$4 i code
  for ((i = 0; i < START_TIMEOUT * 5; i++)); do
    kill -0 "$pid" 2>/dev/null || die "$name exited during start-up: $(tail -c 2000 "$logf" 2>/dev/null)"
    code=$(curl -s -o /dev/null --connect-timeout 1 --max-time 2 -w '%{http_code}' "$url" 2>/dev/null || true)
    [[ $code == 200 ]] && return 0
    sleep 0.2
  done
  die "$name did not answer 200 on $url within ${START_TIMEOUT}s (last: ${code:-none}); log: $(tail -c 2000 "$logf" 2>/dev/null)"
}
start_distribution() {  # -> DIST_PID
  local data=$WORK/distribution-data cfg=$WORK/distribution.yml logf=$WORK/distribution.server.log
  mkdir -p "$data"; write_dist_config "$cfg" "$DIST_PORT" "$data"; cp "$cfg" "$RD/distribution.yml"
  ! port_in_use "$DIST_PORT" || die "port $DIST_PORT was taken in the meantime"
  # from $WORK (nothing there to pick up), without REGISTRY_* overrides: the baseline's conditions
  (cd "$WORK" && exec env "${REG_ENV_UNSET[@]}" docker-registry serve "$cfg") > "$logf" 2>&1 &
  DIST_PID=$!
  wait_ready "$DIST_PID" "http://127.0.0.1:$DIST_PORT/v2/" "$logf" distribution
  log "distribution ready: pid $DIST_PID ($(tr '\0' ' ' < "/proc/$DIST_PID/cmdline"))"
}
start_candidate() {  # -> PIN_PID
  local data=$WORK/pinfold-data logf=$WORK/pinfold.server.log cmd
  mkdir -p "$data"
  ! port_in_use "$PIN_PORT" || die "port $PIN_PORT was taken in the meantime"
  if ((CAND_IS_PINFOLD)); then
    # cwd = $WORK, so that no ./pinfold.toml is picked up (PINFOLD_* variables are, and are recorded)
    (cd "$WORK" && exec "$PINFOLD_BIN" serve --listen "127.0.0.1:$PIN_PORT" --data-dir "$data") > "$logf" 2>&1 &
    PIN_PID=$!
  else
    ((CAND_DIST)) && { write_dist_config "$WORK/candidate.yml" "$PIN_PORT" "$data"; cp "$WORK/candidate.yml" "$RD/candidate.yml"; }
    cmd=${PIN_CMD//\{listen\}/127.0.0.1:$PIN_PORT}; cmd=${cmd//\{port\}/$PIN_PORT}
    cmd=${cmd//\{data\}/$data}; cmd=${cmd//\{tmp\}/$WORK}
    log "starting development candidate: $cmd"
    if ((CAND_DIST)); then
      (cd "$WORK" && exec env "${REG_ENV_UNSET[@]}" bash -c "exec $cmd") > "$logf" 2>&1 &
    else
      (cd "$WORK" && exec bash -c "exec $cmd") > "$logf" 2>&1 &
    fi
    PIN_PID=$!
  fi
  wait_ready "$PIN_PID" "http://127.0.0.1:$PIN_PORT$PIN_READY" "$logf" "$CAND_LABEL"
  if ((CAND_IS_PINFOLD)) && ! grep -qF "pinfold listening on http://127.0.0.1:$PIN_PORT" "$logf"; then
    warn "Pinfold answers $PIN_READY but did not print 'pinfold listening on http://127.0.0.1:$PIN_PORT'"
  fi
  log "$CAND_LABEL ready: pid $PIN_PID ($(tr '\0' ' ' < "/proc/$PIN_PID/cmdline"))"
}
stop_server() {  # stop_server VARNAME KEY SLOT: record VmHWM as SLOT_vmhwm_at_stop, stop by PID, remove its data
  local var=$1 key=$2 slot=$3 pid=${!1} hwm
  [[ -n $pid ]] || return 0
  kill -0 "$pid" 2>/dev/null || die "$key server (pid $pid) died during the benchmark"
  hwm=$(awk '$1=="VmHWM:"{print $2}' "/proc/$pid/status" 2>/dev/null || true)
  [[ -n $hwm ]] && echo "${slot}_vmhwm_at_stop=$hwm KiB" >> "$RD/servers.txt"
  stop_pid "$pid" TERM "$STOP_TIMEOUT"
  printf -v "$var" '%s' ""
  save_log "$WORK/$key.server.log" "$key.server.log"
  [[ $key == distribution ]] && rm -rf -- "$WORK/distribution-data" "$WORK/distribution.server.log"
  [[ $key == pinfold ]] && rm -rf -- "$WORK/pinfold-data" "$WORK/pinfold.server.log"
  return 0
}

# run_harness NAME PORT PID LABEL [EXTRA...]: raw stdout -> $RD/NAME.txt, stderr -> $RD/NAME.log
run_harness() {
  local name=$1 port=$2 pid=$3 label=$4 rc=0 repo; shift 4
  repo=bench/$name-${TS,,}$( ((ROUNDS == 1)) || echo "-r$ROUND")
  log "harness vs $label (pid $pid, repo $repo): ${PASS[*]:-(defaults)} $*"
  run_bounded $((MAX_SECONDS + 180)) "$RD/$name.log" \
    bash "$HARNESS" --pid "$pid" --label "$label" "${PASS[@]}" "$@" "http://127.0.0.1:$port" "$repo" \
    > "$RD/$name.txt" || rc=$?
  if ((rc != 0)) || [[ $(grep -E '^bench_status=' "$RD/$name.txt" | tail -1) != "bench_status=OK -" ]]; then
    die "harness run against $label failed (exit $rc); see $RD/$name.log: $(grep -m1 FATAL "$RD/$name.log" || tail -3 "$RD/$name.log")"
  fi
  log "harness vs $label: done"
}

# ==========================================================================================
# the runs: distribution (no refs) and the candidate (with the physical references), each with a
# fresh server and fresh storage; with --rounds, pairs in alternating order (D P, P D, ...)
# ==========================================================================================
run_distribution() {
  start_distribution
  run_harness distribution "$DIST_PORT" "$DIST_PID" "$DIST_LABEL" --no-refs
  stop_server DIST_PID distribution distribution
}
run_candidate() {
  start_candidate
  run_harness pinfold "$PIN_PORT" "$PIN_PID" "$CAND_LABEL"
  stop_server PIN_PID pinfold candidate
}
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
  if ((ROUNDS == 1)); then RD=$RES; else RD=$RES/round-$ROUND; mkdir -p "$RD"; log "== round $ROUND/$ROUNDS"; fi
  : > "$RD/servers.txt"
  if ((ROUND % 2 == 1)); then run_distribution; run_candidate; else run_candidate; run_distribution; fi
done

# ==========================================================================================
summarize_all "$RES"
show_summary "$RES"
FAILS=$(jq '.counts.FAIL + .counts.MISSING' "$RES/summary.json")
log "summary: $RES/summary.md ($(jq -r '"\(.counts.PASS) PASS, \(.counts.FAIL) FAIL, \(.counts.MISSING) MISSING"' "$RES/summary.json"))"
if ((STRICT && FAILS > 0)); then exit 1; fi
exit 0
