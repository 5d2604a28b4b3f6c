#!/usr/bin/env bash
# bench/apt.sh - issue 7's APT performance targets, measured on this machine:
#   * indices of a repository with 10,000 packages regenerated after one upload: < 1 s
#   * a Packages file for 50,000 packages generated: < 5 s
# Each is measured 3 times by crates/pinfold-server/examples/apt_bench.rs (release build) and
# judged on the median. With --record, a dated section is appended to bench/RESULTS.md.
#
#   bench/apt.sh [--record] [--no-build]
#
# Exit status: 0 all targets met, 1 a target missed, 2 error. Nothing listens on the network:
# the benchmark drives the APT service in-process on a temporary data directory (SQLite, blob
# store, fsyncs as in `pinfold serve`), so it measures the reindex work, not HTTP.
set -Eeuo pipefail
export LC_ALL=C
ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$ROOT"

record=0 build=1
for arg in "$@"; do
  case $arg in
    --record) record=1 ;;
    --no-build) build=0 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "bench/apt.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

if ((build)); then
  timeout 1800 cargo build --release -q -p pinfold-server --example apt_bench
fi
bin=target/release/examples/apt_bench
[[ -x $bin ]] || { echo "bench/apt.sh: $bin missing (build it or drop --no-build)" >&2; exit 2; }

out=$(mktemp)
trap 'rm -f "$out"' EXIT
timeout 600 "$bin" reindex 10000 | tee -a "$out"
timeout 600 "$bin" packages 50000 | tee -a "$out"

# metric <name> <t1> <t2> <t3> median <m>
median() { awk -v m="$1" '$1 == "metric" && $2 == m { print $NF }' "$out"; }
runs() { awk -v m="$1" '$1 == "metric" && $2 == m { print $3 ", " $4 ", " $5 }' "$out"; }
judge() { awk -v v="$1" -v limit="$2" 'BEGIN { print (v + 0 < limit + 0) ? "PASS" : "FAIL" }'; }

reindex=$(median apt_reindex_after_one_upload_10000_packages_seconds)
packages=$(median apt_packages_file_50000_packages_seconds)
packages_c=$(median apt_packages_gz_xz_50000_packages_seconds)
[[ -n $reindex && -n $packages && -n $packages_c ]] || { echo "bench/apt.sh: a metric is missing" >&2; exit 2; }

table=$(cat <<TABLE
| target | metric | median | runs (s) | goal | result |
|---|---|---:|---|---|---|
| indices after one upload, 10,000-package repository (Packages, .gz, .xz, Release, InRelease, Release.gpg written durably) | \`apt_reindex_after_one_upload_10000_packages_seconds\` | ${reindex} s | $(runs apt_reindex_after_one_upload_10000_packages_seconds) | < 1 s | $(judge "$reindex" 1) |
| Packages file, 50,000 packages | \`apt_packages_file_50000_packages_seconds\` | ${packages} s | $(runs apt_packages_file_50000_packages_seconds) | < 5 s | $(judge "$packages" 5) |
| Packages + .gz + .xz, 50,000 packages | \`apt_packages_gz_xz_50000_packages_seconds\` | ${packages_c} s | $(runs apt_packages_gz_xz_50000_packages_seconds) | < 5 s | $(judge "$packages_c" 5) |
TABLE
)
echo
echo "$table"

if ((record)); then
  {
    echo
    echo "## APT indices (issue 7), $(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD)"
    echo
    echo "Command: \`bench/apt.sh --record\` (release build; medians of 3). Machine: $(nproc) vCPU, shared."
    echo
    echo "$table"
  } >> bench/RESULTS.md
fi
grep -q FAIL <<<"$table" && exit 1
exit 0
