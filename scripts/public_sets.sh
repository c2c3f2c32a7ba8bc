#!/usr/bin/env bash
# Writes three public rating sets of other kinds than films, from data that Debian's R
# packages ship (so they come from a package registry, not a download), as `user item rating`
# tab-separated files, and a seeded 80/20 split of each, for benchmarks beside the peers.
# They stay out of the repository: pass a folder outside it, or the default target/public-sets.
#
# usage: scripts/public_sets.sh [OUT_DIR]
#   insteval.tsv  lme4's InstEval: ETH Zurich lecture evaluations, 73,421 ratings 1-5 of
#                 1,128 lecturers by 2,972 students (sparse, 2%); lme4 is GPL-2+
#   spi.tsv       psychTools' spi: SAPA Personality Inventory, 4,000 people x 135 items,
#                 1-6 agreement (nearly dense); psychTools is GPL-2+, SAPA data are public
#   msq.tsv       psychTools' msqR: Motivational State Questionnaire, 6,411 people x 75 mood
#                 words, 0-3 (7.8% missing); same licence
#   NAME.train.tsv / NAME.test.tsv: 80/20, seeded (42), every rating in exactly one
# Needs R with lme4 and psychTools: installed with apt-get (as root) when missing.
set -euo pipefail
out=${1:-$(cd "$(dirname "$0")/.." && pwd)/target/public-sets}
mkdir -p "$out"
if ! Rscript -e 'library(lme4); library(psychTools)' >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
        echo "error: R with lme4 and psychTools is needed: apt-get install r-base-core r-cran-lme4 r-cran-psychtools (as root)" >&2
        exit 2
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends r-base-core r-cran-lme4 r-cran-psychtools >/dev/null
fi
Rscript - "$out" <<'R'
out <- commandArgs(trailingOnly = TRUE)[1]
long <- function(m, path) {
  # person row i, item column j, value: one line per known entry
  m <- as.matrix(m)
  known <- which(!is.na(m), arr.ind = TRUE)
  write.table(data.frame(known[, 1], known[, 2], m[known]), path, sep = "\t", row.names = FALSE, col.names = FALSE, quote = FALSE)
}
data(InstEval, package = "lme4")
write.table(InstEval[, c("s", "d", "y")], file.path(out, "insteval.tsv"), sep = "\t", row.names = FALSE, col.names = FALSE, quote = FALSE)
library(psychTools)
long(spi[, grep("^q_", colnames(spi))], file.path(out, "spi.tsv"))
long(msqR[, 1:75], file.path(out, "msq.tsv"))
R
python3 - "$out" <<'PY'
import random, sys, pathlib
out = pathlib.Path(sys.argv[1])
for name in ["insteval", "spi", "msq"]:
    lines = (out / f"{name}.tsv").read_text().splitlines()
    rng = random.Random(42)
    test = set(rng.sample(range(len(lines)), len(lines) // 5))
    with open(out / f"{name}.train.tsv", "w") as tr, open(out / f"{name}.test.tsv", "w") as te:
        for i, line in enumerate(lines):
            (te if i in test else tr).write(line + "\n")
    print(f"{out / name}.tsv: {len(lines)} ratings, {len(lines) - len(test)} train / {len(test)} test")
PY
