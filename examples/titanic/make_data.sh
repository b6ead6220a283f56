#!/usr/bin/env bash
# Write examples/titanic/data.csv (or the path given) from carData's TitanicSurvival,
# with the three columns a stream needs added:
#
#   passenger_id  "p" + the passenger's row number in carData::TitanicSurvival (p0001..p1309)
#   event_id      "titanic-" + the row's position in the stream (titanic-0001..)
#   event_time    2026-01-01T00:00:00Z + one hour per position (RFC 3339, UTC)
#
# The stream order is a fixed permutation of the rows: set.seed(1912) and sample.int()
# with R's default generator pinned (Mersenne-Twister, Inversion, Rejection), so every run
# writes the same bytes. Missing ages (NA in R) are written as empty cells. The passengers'
# names (the data frame's row names) are left out.
#
# Needs Rscript and carData: deploy/setup.sh examples (Debian: r-base-core r-cran-cardata).
set -euo pipefail
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
out=${1:-$here/data.csv}
if ! command -v Rscript >/dev/null; then
    echo "make_data.sh: Rscript not found: run 'deploy/setup.sh examples' first" >&2
    exit 2
fi
Rscript --vanilla - "$out" <<'RSCRIPT'
out <- commandArgs(trailingOnly = TRUE)[1]
if (!requireNamespace("carData", quietly = TRUE))
    stop("R package carData not installed: run 'deploy/setup.sh examples'")
data("TitanicSurvival", package = "carData", envir = environment())
d <- TitanicSurvival
suppressWarnings(RNGkind("Mersenne-Twister", "Inversion", "Rejection"))
set.seed(1912)
order <- sample.int(nrow(d))
pos <- seq_along(order)
base <- as.POSIXct("2026-01-01 00:00:00", tz = "UTC")
s <- d[order, ]
df <- data.frame(
    event_id = sprintf("titanic-%04d", pos),
    passenger_id = sprintf("p%04d", order),
    event_time = format(base + (pos - 1) * 3600, "%Y-%m-%dT%H:%M:%SZ", tz = "UTC"),
    survived = as.character(s$survived),
    sex = as.character(s$sex),
    age = s$age,
    passengerClass = as.character(s$passengerClass),
    stringsAsFactors = FALSE)
tmp <- paste0(out, ".tmp")
write.csv(df, tmp, row.names = FALSE, na = "")
invisible(file.rename(tmp, out))
cat(sprintf("make_data.sh: wrote %s: %d rows, %d ages missing\n", out, nrow(df), sum(is.na(df$age))),
    file = stderr())
RSCRIPT
