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
venv=${GPUMF_VENV:-target/venv}
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "./python[test]"
# From outside the source tree, so that the installed package is the one imported.
cd python/tests
"../../$venv/bin/python" -m pytest -q -p no:cacheprovider .
