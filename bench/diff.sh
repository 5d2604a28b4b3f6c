#!/usr/bin/env bash
# bench/diff.sh - benchmark `pinfold diff` against gunzip of the same layers, in ONE invocation.
#
#   bench/diff.sh [options]            (see --help and bench/README.md)
#
# Issue 4, item 6: a diff of two images with 1 GiB of layers each must finish within 2x the
# time it takes to gunzip those layers once, with a peak RSS of at most 200 MiB.
#
# What it does, in order:
#   1. checks the tools (installs nothing) and builds Pinfold in release unless --no-build;
#   2. generates two OCI image layouts with --mib MiB of gzip layers each (4 layers per image,
#      files of mixed sizes, about 3:1 compressible, a dpkg status database in the base layer;
#      the two images share no layer: the worst case, every byte is read);
#   3. reads every layer blob once so both contenders start from the page cache;
#   4. --runs times, alternating: `gzip -dc` of all 8 layer blobs to /dev/null (the baseline),
#      then `pinfold diff --no-cache --json oci:A oci:B` to /dev/null; both under
#      `/usr/bin/time -v` (wall clock and maximum resident set size);
#   5. one extra `pinfold diff` with a warm layer cache (for information: the "second diff
#      against the same base" case);
#   6. prints the medians and the verdicts and writes bench/results/<UTC>-diff/summary.{md,json}.
#
# Exit status: 0 = the run completed (whatever PASS/FAIL says), 1 = a target FAILed and --strict
# was given, 2 = error / interrupted. Temporary data (about 2.2 GiB at the default size) is
# removed at exit, also after an error or Ctrl-C.
set -Eeuo pipefail
export LC_ALL=C
umask 022

PROG=bench/diff.sh
SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(cd -- "$SCRIPT_DIR/.." && pwd -P)

BUILD=1
STRICT=0
RUNS=3
MIB=1024
LAYERS=4
TMP_BASE=${TMPDIR:-/tmp}
RESULTS_BASE=$SCRIPT_DIR/results
PINFOLD_BIN=""
RUN_TIMEOUT=900         # seconds for one gunzip or diff run
BUILD_TIMEOUT=3600

usage() {
  cat <<EOF
Usage: $PROG [options]

Benchmarks 'pinfold diff' of two generated images against gunzip of their layers, in one
invocation, and checks issue 4's targets (time <= 2x gunzip, peak RSS <= 200 MiB).

Options:
  --no-build             do not run 'cargo build --release -p pinfold' first
  --pinfold-bin PATH     Pinfold binary          [\${CARGO_TARGET_DIR:-<repo>/target}/release/pinfold]
  --mib N                MiB of gzip layer blobs per image                     [$MIB]
  --runs N               timed runs of each contender (medians reported)      [$RUNS]
  --quick                64 MiB per image, 1 run: tests the plumbing, NOT a benchmark
  --tmp-dir DIR          where the images are generated                        [\${TMPDIR:-/tmp}]
  --results-dir DIR      where <UTC timestamp>-diff/ goes                      [bench/results]
  --strict               exit 1 if a target FAILs
  -h, --help             this text
EOF
}

log()  { printf '[%s] diff.sh: %s\n' "$(date +%T)" "$*" >&2; }
die()  { printf '[%s] diff.sh: FATAL: %s\n' "$(date +%T)" "$*" >&2; exit 2; }
is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
need_val() { (($# >= 2)) || die "option $1 needs a value"; }

while (($#)); do
  case $1 in
    -h|--help) usage; exit 0 ;;
    --no-build) BUILD=0 ;;
    --strict) STRICT=1 ;;
    --quick) MIB=64; RUNS=1 ;;
    --pinfold-bin) need_val "$@"; PINFOLD_BIN=$2; shift ;;
    --mib) need_val "$@"; MIB=$2; shift ;;
    --runs) need_val "$@"; RUNS=$2; shift ;;
    --tmp-dir) need_val "$@"; TMP_BASE=$2; shift ;;
    --results-dir) need_val "$@"; RESULTS_BASE=$2; shift ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done
is_uint "$MIB" && ((MIB >= LAYERS)) || die "--mib must be an integer >= $LAYERS"
is_uint "$RUNS" && ((RUNS >= 1)) || die "--runs must be a positive integer"

MISSING=()
need() { command -v "$1" >/dev/null 2>&1 || MISSING+=("$1 (Debian package: $2)"); }
need gzip gzip; need python3 python3; need jq jq; need timeout coreutils; need awk mawk
[[ -x /usr/bin/time ]] || MISSING+=("/usr/bin/time (Debian package: time)")
((BUILD)) && need cargo "cargo (or rustup)"
if ((${#MISSING[@]})); then
  printf '%s: missing tools:\n' "$PROG" >&2; printf '  %s\n' "${MISSING[@]}" >&2
  exit 2
fi

if [[ -z $PINFOLD_BIN ]]; then
  PINFOLD_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/pinfold
fi
if ((BUILD)); then
  log "building: cargo build --release -p pinfold"
  (cd "$ROOT" && timeout "$BUILD_TIMEOUT" cargo build --release -p pinfold) >&2 ||
    die "cargo build failed"
fi
[[ -x $PINFOLD_BIN ]] || die "no Pinfold binary at $PINFOLD_BIN (build it or give --pinfold-bin)"

need_kib=$(( (MIB * 2 + 256) * 1024 ))
free_kib=$(df -Pk "$TMP_BASE" | awk 'NR==2 {print $4}')
((free_kib > need_kib)) || die "$TMP_BASE has $((free_kib / 1024)) MiB free; need about $((need_kib / 1024)) MiB"

WORK=$(mktemp -d "$TMP_BASE/pinfold-bench-diff.XXXXXX")
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RES=$RESULTS_BASE/$STAMP-diff
mkdir -p "$RES"
cleanup() {
  local rc=$?
  trap - ERR INT TERM HUP
  set +e
  rm -rf -- "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 2' INT TERM HUP
log "temporary data: $WORK"
log "results: $RES"

# ------------------------------------------------------------------------------------------
# 2. the images
cat > "$WORK/gen.py" <<'PY'
"""Writes an OCI image layout of LAYERS gzip tar layers totalling about TARGET compressed bytes.

Files have mixed sizes (70% 1-32 KiB, 25% 64-512 KiB, 5% 1-8 MiB); their content interleaves
random bytes with text so that gzip -1 compresses about 3:1, like real image layers. The base
layer holds a dpkg status database whose versions depend on the seed.
"""
import hashlib, io, json, os, random, sys, tarfile, zlib

out, target, layers, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rnd = random.Random(seed)
text = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor. " * 16
pool = bytearray()
while len(pool) < 64 * 1024 * 1024:
    pool += os.urandom(384) + text[: 896 + rnd.randrange(128)]
pool = bytes(pool)
os.makedirs(os.path.join(out, "blobs", "sha256"), exist_ok=True)


class GzipSink:
    """A file object for tarfile: gzip-compresses, hashes both streams, counts bytes."""

    def __init__(self, path):
        self.f = open(path, "wb")
        self.z = zlib.compressobj(1, zlib.DEFLATED, 31)
        self.raw = hashlib.sha256()
        self.blob = hashlib.sha256()
        self.size = 0

    def write(self, data):
        self.raw.update(data)
        self._out(self.z.compress(data))
        return len(data)

    def _out(self, data):
        if data:
            self.blob.update(data)
            self.size += len(data)
            self.f.write(data)

    def close(self):
        self._out(self.z.flush())
        self.f.close()


def status(n):
    stanzas = []
    for i in range(n):
        version = f"1.{i % 7}.{seed + (i % 3 == 0)}-1"
        stanzas.append(
            f"Package: pkg{i}\nStatus: install ok installed\nArchitecture: amd64\n"
            f"Version: {version}\nDescription: package {i}\n long text\n"
        )
    stanzas.append(
        "Package: libssl3\nStatus: install ok installed\nArchitecture: amd64\n"
        f"Version: 3.0.{11 + seed}-1~deb12u1\nDescription: ssl\n"
    )
    return "\n".join(stanzas).encode()


descriptors, diff_ids, history = [], [], []
per_layer = target // layers
for layer in range(layers):
    tmp = os.path.join(out, f"layer{layer}.tmp")
    sink = GzipSink(tmp)
    tar = tarfile.open(fileobj=sink, mode="w|", format=tarfile.GNU_FORMAT)
    count = 0

    def add(name, data):
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), 0o644, 1700000000
        tar.addfile(info, io.BytesIO(data))

    if layer == 0:
        add("var/lib/dpkg/status", status(400))
    while sink.size < per_layer:
        r = rnd.random()
        size = rnd.randrange(1024, 32768) if r < 0.7 else rnd.randrange(65536, 524288) if r < 0.95 else rnd.randrange(1 << 20, 8 << 20)
        off = rnd.randrange(0, len(pool) - size)
        add(f"layer{layer}/d{count % 97}/f{count}-{seed}.bin", pool[off : off + size])
        count += 1
    tar.close()
    sink.close()
    digest = sink.blob.hexdigest()
    os.rename(tmp, os.path.join(out, "blobs", "sha256", digest))
    descriptors.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:" + digest, "size": sink.size})
    diff_ids.append("sha256:" + sink.raw.hexdigest())
    history.append({"created_by": f"bench layer {layer} ({count} files)"})


def put(obj):
    data = json.dumps(obj).encode()
    d = hashlib.sha256(data).hexdigest()
    with open(os.path.join(out, "blobs", "sha256", d), "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + d, "size": len(data)}


config = put({"architecture": "amd64", "os": "linux", "config": {"Env": [f"BENCH_SEED={seed}"]},
              "rootfs": {"type": "layers", "diff_ids": diff_ids}, "history": history})
manifest = put({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": dict(config, mediaType="application/vnd.oci.image.config.v1+json"),
                "layers": descriptors})
with open(os.path.join(out, "index.json"), "w") as f:
    json.dump({"schemaVersion": 2, "manifests": [dict(manifest, mediaType="application/vnd.oci.image.manifest.v1+json")]}, f)
with open(os.path.join(out, "oci-layout"), "w") as f:
    f.write('{"imageLayoutVersion":"1.0.0"}')
PY
log "generating two images of $MIB MiB of gzip layers each ($LAYERS layers; both cores)"
TARGET=$((MIB * 1024 * 1024))
timeout 1800 python3 "$WORK/gen.py" "$WORK/a" "$TARGET" "$LAYERS" 1 & GEN_A=$!
timeout 1800 python3 "$WORK/gen.py" "$WORK/b" "$TARGET" "$LAYERS" 2 & GEN_B=$!
wait "$GEN_A" || die "generating image A failed"
wait "$GEN_B" || die "generating image B failed"

mapfile -t BLOBS < <(for img in a b; do
  jq -r '.manifests[0].digest' "$WORK/$img/index.json" | sed 's/^sha256://' |
    xargs -I{} jq -r '.layers[].digest' "$WORK/$img/blobs/sha256/{}" | sed "s|^sha256:|$WORK/$img/blobs/sha256/|"
done)
((${#BLOBS[@]} == 2 * LAYERS)) || die "expected $((2 * LAYERS)) layer blobs, found ${#BLOBS[@]}"
BLOB_BYTES=$(du -cb "${BLOBS[@]}" | awk 'END {print $1}')
TAR_BYTES=$(gzip -dc "${BLOBS[@]}" | wc -c)
log "layer blobs: $((BLOB_BYTES / 1048576)) MiB gzip, $((TAR_BYTES / 1048576)) MiB of tar"
cat "${BLOBS[@]}" > /dev/null   # 3. into the page cache

# ------------------------------------------------------------------------------------------
# 4. timed runs
# `/usr/bin/time -v` output -> "seconds max_rss_kib cpu_seconds" (cpu = user + system)
parse_time() {
  awk -F': ' '
    /Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i] }
    /Maximum resident set size/ { rss = $2 }
    /User time \(seconds\)|System time \(seconds\)/ { cpu += $2 }
    END { printf "%.3f %d %.2f\n", s, rss, cpu }' "$1"
}
median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

DIFF_ARGS=(diff --no-cache --json "oci:$WORK/a" "oci:$WORK/b")
: > "$RES/runs.txt"
for ((i = 1; i <= RUNS; i++)); do
  log "run $i/$RUNS: gzip -dc of the $((2 * LAYERS)) layer blobs"
  timeout "$RUN_TIMEOUT" /usr/bin/time -v -o "$WORK/gunzip.time" gzip -dc "${BLOBS[@]}" > /dev/null ||
    die "gzip -dc failed"
  read -r g_s g_rss g_cpu < <(parse_time "$WORK/gunzip.time")
  log "run $i/$RUNS: pinfold diff --no-cache"
  rc=0
  timeout "$RUN_TIMEOUT" /usr/bin/time -v -o "$WORK/diff.time" \
    "$PINFOLD_BIN" "${DIFF_ARGS[@]}" > "$WORK/report.json" 2> "$WORK/diff.err" || rc=$?
  # `pinfold diff` exits 1 when the images differ, which they do.
  ((rc == 1)) || { cat "$WORK/diff.err" >&2; die "pinfold diff exited $rc (expected 1)"; }
  read -r d_s d_rss d_cpu < <(parse_time "$WORK/diff.time")
  printf 'run=%d gunzip_s=%s gunzip_rss_kib=%s diff_s=%s diff_rss_kib=%s gunzip_cpu_s=%s diff_cpu_s=%s\n' \
    "$i" "$g_s" "$g_rss" "$d_s" "$d_rss" "$g_cpu" "$d_cpu" | tee -a "$RES/runs.txt" >&2
done
jq '{equal, a: .a, b: .b, packages: (.packages | length), files: .files | {added, removed, modified},
     explanation: .explanation.items[:3]}' "$WORK/report.json" > "$RES/report-excerpt.json"

# 5. a second diff against the same images with a warm cache
CACHE=$WORK/cache
"$PINFOLD_BIN" diff --cache-dir "$CACHE" --json "oci:$WORK/a" "oci:$WORK/b" > /dev/null 2>&1 || true
rc=0
/usr/bin/time -v -o "$WORK/cached.time" "$PINFOLD_BIN" diff --cache-dir "$CACHE" --json \
  "oci:$WORK/a" "oci:$WORK/b" > /dev/null 2>&1 || rc=$?
((rc == 1)) || die "cached pinfold diff exited $rc (expected 1)"
read -r c_s c_rss _ < <(parse_time "$WORK/cached.time")

# ------------------------------------------------------------------------------------------
# 6. summary
G=$(awk '{split($2, a, "="); print a[2]}' "$RES/runs.txt" | median)
D=$(awk '{split($4, a, "="); print a[2]}' "$RES/runs.txt" | median)
R=$(awk '{split($5, a, "="); print a[2]}' "$RES/runs.txt" | sort -n | tail -1)
RATIO=$(awk -v d="$D" -v g="$G" 'BEGIN {printf "%.2f", d / g}')
# CPU seconds (user + system): what the diff would take on one core, for information.
GC=$(awk '{split($6, a, "="); print a[2]}' "$RES/runs.txt" | median)
DC=$(awk '{split($7, a, "="); print a[2]}' "$RES/runs.txt" | median)
RSS_MIB=$(awk -v r="$R" 'BEGIN {printf "%.1f", r / 1024}')
TIME_OK=$(awk -v r="$RATIO" 'BEGIN {print (r <= 2.0) ? "PASS" : "FAIL"}')
RSS_OK=$(awk -v r="$RSS_MIB" 'BEGIN {print (r <= 200) ? "PASS" : "FAIL"}')
GIT_DESC=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)
{
  printf '| target | measured | reference (same run) | ratio | goal | result |\n|---|---:|---:|---:|---|---|\n'
  printf '| diff of 2 x %d MiB of gzip layers vs gunzip of them (median of %d) | %.2f s | %.2f s | %sx | <= 2x | %s |\n' \
    "$MIB" "$RUNS" "$D" "$G" "$RATIO" "$TIME_OK"
  printf '| CPU time (user + system), median (information) | %.2f s | %.2f s | %sx | | |\n' \
    "$DC" "$GC" "$(awk -v d="$DC" -v g="$GC" 'BEGIN {printf "%.2f", d / g}')"
  printf '| peak RSS of pinfold diff (max over runs) | %s MiB | | | <= 200 MiB | %s |\n' "$RSS_MIB" "$RSS_OK"
  printf '| second diff, layer cache warm (information) | %.2f s, %.1f MiB | | | | |\n' "$c_s" "$(awk -v r="$c_rss" 'BEGIN {print r / 1024}')"
  printf '\n%d layer blobs, %d MiB gzip, %d MiB tar; git %s; per run: see runs.txt\n' \
    "${#BLOBS[@]}" "$((BLOB_BYTES / 1048576))" "$((TAR_BYTES / 1048576))" "$GIT_DESC"
} > "$RES/summary.md"
jq -n --arg g "$G" --arg d "$D" --arg ratio "$RATIO" --arg rss "$RSS_MIB" --arg c "$c_s" \
  --arg gc "$GC" --arg dc "$DC" --arg t "$TIME_OK" --arg m "$RSS_OK" --argjson mib "$MIB" --argjson runs "$RUNS" \
  --argjson blob "$BLOB_BYTES" --argjson tar "$TAR_BYTES" --arg git "$GIT_DESC" \
  '{mib_per_image: $mib, runs: $runs, blob_bytes: $blob, tar_bytes: $tar, git: $git,
    gunzip_median_s: ($g | tonumber), diff_median_s: ($d | tonumber), ratio: ($ratio | tonumber),
    gunzip_cpu_median_s: ($gc | tonumber), diff_cpu_median_s: ($dc | tonumber),
    diff_peak_rss_mib: ($rss | tonumber), cached_diff_s: ($c | tonumber),
    time_target: $t, rss_target: $m}' > "$RES/summary.json"
cat "$RES/summary.md"
if ((STRICT)) && [[ $TIME_OK != PASS || $RSS_OK != PASS ]]; then exit 1; fi
exit 0
