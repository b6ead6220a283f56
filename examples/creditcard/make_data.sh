#!/usr/bin/env bash
# Write examples/creditcard/data.csv (or the path given) from AER's CreditCard, with the
# three columns a stream needs added:
#
#   applicant_id  "a" + the applicant's row number in AER::CreditCard (a0001..a1319)
#   event_id      "creditcard-" + the row's position in the stream (creditcard-0001..)
#   event_time    2026-01-01T00:00:00Z + one hour per position (RFC 3339, UTC)
#
# The stream order is a fixed permutation of the rows: set.seed(1319) and sample.int()
# with R's default generator pinned (Mersenne-Twister, Inversion, Rejection), so every run
# writes the same bytes.
#
# One cleaning step: AER's documentation (?CreditCard, "Details") says that 'age' "has
# some suspiciously low values (below one year)"; those 7 ages are written as empty cells
# (missing), so the data has missing values to impute. Every other value is as in AER.
#
# Needs Rscript and AER: deploy/setup.sh examples (Debian: r-base-core r-cran-aer).
set -euo pipefail
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
out=${1:-$here/data.csv}
if ! command -v Rscript >/dev/null; then
    echo "make_data.sh: Rscript not found: run 'deploy/setup.sh examples' first" >&2
    exit 2
fi
Rscript --vanilla - "$out" <<'RSCRIPT'
out <- commandArgs(trailingOnly = TRUE)[1]
if (!requireNamespace("AER", quietly = TRUE))
    stop("R package AER not installed: run 'deploy/setup.sh examples'")
data("CreditCard", package = "AER", envir = environment())
d <- CreditCard
d$age[d$age < 1] <- NA
suppressWarnings(RNGkind("Mersenne-Twister", "Inversion", "Rejection"))
set.seed(1319)
order <- sample.int(nrow(d))
pos <- seq_along(order)
base <- as.POSIXct("2026-01-01 00:00:00", tz = "UTC")
s <- d[order, ]
df <- data.frame(
    event_id = sprintf("creditcard-%04d", pos),
    applicant_id = sprintf("a%04d", order),
    event_time = format(base + (pos - 1) * 3600, "%Y-%m-%dT%H:%M:%SZ", tz = "UTC"),
    stringsAsFactors = FALSE)
for (col in names(s)) df[[col]] <- if (is.factor(s[[col]])) as.character(s[[col]]) else s[[col]]
tmp <- paste0(out, ".tmp")
write.csv(df, tmp, row.names = FALSE, na = "")
invisible(file.rename(tmp, out))
cat(sprintf("make_data.sh: wrote %s: %d rows, %d ages missing\n", out, nrow(df), sum(is.na(df$age))),
    file = stderr())
RSCRIPT
