#!/usr/bin/env bash
# Every test: the Rust crate's (cargo test), then the Python package's (pytest), with the
# package built from python/ by pip and maturin into a virtual environment of its own
# (target/venv; GPUMF_VENV names another). Needs Rust and Python 3.9+ with pip; the rest
# (maturin, numpy, scipy, pandas, pytest) comes from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release
# The benchmarks are not run here, but they must still build.
cargo check --release --benches --quiet
# The docs, internals included (they explain the design), must have no broken links.
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --document-private-items --quiet
# The library and the binary must build for Windows and macOS too (their own code paths: the
# cache's file I/O, the adapter's memory on DX12 and Metal); checked, not linked, where rustup
# has or can fetch those targets' standard libraries.
for target in x86_64-pc-windows-gnu aarch64-apple-darwin; do
    if command -v rustup >/dev/null && { rustup target list --installed | grep -qx "$target" || rustup target add "$target" >/dev/null 2>&1; }; then
        cargo check --release --lib --bins --quiet --target "$target"
    else
        echo "scripts/test.sh: skipped the $target build check (rustup could not fetch its standard library)"
    fi
done
venv=${GPUMF_VENV:-target/venv}
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "./python[test]"
# From outside the source tree, so that the installed package is the one imported.
cd python/tests
"../../$venv/bin/python" -m pytest -q -p no:cacheprovider .
