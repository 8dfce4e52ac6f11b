#!/bin/sh
# RUSTC_WRAPPER for `make test-fuzz`: rustc as cargo calls it ($1 is rustc), with libFuzzer's
# coverage instrumentation (the flags cargo-fuzz passes with `-s none`) added for the crates that
# FUZZ_INSTRUMENT names (space-separated: webllama and the fuzz targets, from the Makefile) alone.
# The dependencies compile as in the test build and are shared with it (same target folder, same
# profile): the smoke run builds webllama and the targets, not the world.
rustc="$1"
shift
for crate in $FUZZ_INSTRUMENT; do
    case " $* " in
    *" --crate-name $crate "*)
        exec "$rustc" "$@" --cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
            -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
            -Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks
        ;;
    esac
done
exec "$rustc" "$@"
