# One image for the five services and mlopsctl; docker-compose.yml picks the binary with
# `command:`. Debian 12, like the machines the local stack runs on, so the libraries
# (librdkafka 2.0.2, libpq 15, ...) are the ones the tests run against.
#
#   docker build -t mlops:local .
#   docker run --rm mlops:local mlops-scorer --help

# ------------------------------------------------------------------------ build
FROM debian:12 AS build

RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        gcc libc6-dev cmake ninja-build pkg-config \
        librdkafka-dev libpq-dev libjansson-dev libevent-dev libhiredis-dev \
        libcurl4-openssl-dev libssl-dev libcsv-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# .dockerignore lets in only what the build needs (no .state: it holds secrets).
COPY . .
# Warnings are errors here as in CI. Criterion is not installed, so the C tests are not
# built (tests/CMakeLists.txt says so and returns).
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMLOPS_WERROR=ON \
        -DCMAKE_INSTALL_PREFIX=/usr/local \
    && ninja -C /build \
    && DESTDIR=/out cmake --install /build --strip

# ---------------------------------------------------------------------- runtime
FROM debian:12 AS runtime

# The shared libraries the binaries link (and ca-certificates for HTTPS to Slack), plus
# curl for the compose healthchecks (GET /health); libcurl4 is needed anyway.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        librdkafka1 libpq5 libjansson4 libevent-2.1-7 libevent-pthreads-2.1-7 \
        libhiredis0.14 libcurl4 libssl3 libcsv3 ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*

COPY --from=build /out/usr/local/bin/ /usr/local/bin/
# the example feature specs (docker-compose's ingest serves the attrition one)
COPY --from=build /src/examples/ /usr/local/share/mlops/examples/

# Fail the build, not the first start, if a library is missing from the list above.
RUN set -e; for b in /usr/local/bin/mlops*; do \
        if ldd "$b" | grep 'not found'; then echo "$b: missing library" >&2; exit 1; fi; \
        "$b" --version >/dev/null; \
    done

# Not root. State (MLOPS_STATE_DIR) goes to /var/lib/mlops; mount a volume there to keep it.
RUN groupadd --system --gid 10001 mlops \
    && useradd --system --uid 10001 --gid mlops --home-dir /var/lib/mlops --shell /usr/sbin/nologin mlops \
    && install -d -o mlops -g mlops -m 0700 /var/lib/mlops
ENV MLOPS_STATE_DIR=/var/lib/mlops
WORKDIR /var/lib/mlops
USER 10001:10001

# The services bind 127.0.0.1 by default; in a container set MLOPS_BIND_ADDRESS=0.0.0.0
# (docker-compose.yml does) so that published ports reach them.
CMD ["mlopsctl", "--help"]
