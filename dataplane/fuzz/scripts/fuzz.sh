#!/bin/sh
# Builds the dataplane fuzz targets and runs each for N seconds (default 30).
# Exits 0 when no target crashed; a crash leaves its input in artifacts/<target>/.
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and a C++ compiler. Works on the
# stable toolchain: RUSTC_BOOTSTRAP=1 lets stable accept the -Z sanitizer flags
# cargo-fuzz passes. The seed corpus is generated from the unit-test golden vectors
# (dataplane/src/wire/testvec.rs); libFuzzer's finds go to a scratch directory, so
# the seed directory stays as generated.
set -eu

secs="${1:-30}"
fuzz_dir="$(cd "$(dirname "$0")/.." && pwd)"
root="$(cd "$fuzz_dir/../.." && pwd)"
targets="parse_meta geneve_options pipeline_burst nat_rewrite policy_compile"

export RUSTC_BOOTSTRAP=1

if [ ! -d "$fuzz_dir/corpus/parse_meta" ]; then
    echo "== generating seed corpus from the golden vectors"
    (cd "$root" && DATAPLANE_FUZZ_CORPUS="$fuzz_dir/corpus" \
        cargo test -q -p dataplane --lib write_fuzz_seed_corpus -- --ignored)
fi

cd "$fuzz_dir"
echo "== building fuzz targets"
start=$(date +%s)
cargo fuzz build -O
echo "== build took $(( $(date +%s) - start )) s"

for t in $targets; do
    work="$fuzz_dir/target/work-corpus/$t"
    # pipeline_burst, nat_rewrite and policy_compile have no seeds of their own: libFuzzer starts
    # from nothing.
    mkdir -p "$work" "$fuzz_dir/corpus/$t"
    echo "== fuzzing $t for ${secs}s"
    cargo fuzz run -O "$t" "$work" "$fuzz_dir/corpus/$t" -- \
        -max_total_time="$secs" -print_final_stats=1
done
echo "== no crashes"
