# syntax=docker/dockerfile:1
#
# One image holds every nowstream binary; the command picks what runs:
#
#   docker build -t nowstream .
#   docker run --rm -v "$PWD/nowstream.toml:/etc/nowstream/nowstream.toml:ro" \
#     nowstream nowstream-sink --config /etc/nowstream/nowstream.toml
#
# One image instead of one per stage: the stages share nearly all their code, so a single
# build is faster, and docker-compose.yml and the Helm chart only choose the command.

# The toolchain the project is developed and tested with; the workspace's rust-version is
# the oldest it promises to build with.
ARG RUST_VERSION=1.95
# Builder and runtime use the same Debian release so the binaries find the glibc they were
# linked against.
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS builder

# rdkafka-sys compiles librdkafka from source (./configure and make) and links zlib;
# rusqlite compiles its bundled SQLite.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential pkg-config zlib1g-dev libssl-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .

# The binaries the image carries: the three stages, and the simulator and sei-local for the
# docker-compose demo. (The `nowstream` demo command is left out: it runs its own broker.)
ARG BINARIES="nowstream-fetcher nowstream-normalizer nowstream-sink nowstream-sei-local nowstream-servicenow-sim"

# --locked: the image is built from exactly the dependency versions the tests ran with.
# The registry and target caches make rebuilds incremental (BuildKit); binaries are copied
# out of the cached target directory because a cache mount is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    set -eu; \
    bin_flags=""; \
    for binary in ${BINARIES}; do bin_flags="${bin_flags} --bin ${binary}"; done; \
    cargo build --release --locked ${bin_flags}; \
    mkdir -p /out; \
    for binary in ${BINARIES}; do cp "target/release/${binary}" /out/; done

FROM debian:${DEBIAN_RELEASE}-slim AS runtime

# ca-certificates: ServiceNow and SEI are reached over TLS. curl: the docker-compose health
# checks call /healthz with it (Kubernetes probes need nothing in the image). zlib1g: linked
# by librdkafka; libssl3: Kafka over TLS (SSL, SASL_SSL).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl zlib1g libssl3 \
    && rm -rf /var/lib/apt/lists/*

# A fixed numeric uid/gid, so Kubernetes' runAsNonRoot can verify it without a passwd lookup.
# /var/lib/nowstream is the only place a process writes (sei-local's database, OAuth refresh
# tokens); mount a volume there.
RUN groupadd --system --gid 10001 nowstream \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /var/lib/nowstream --shell /usr/sbin/nologin nowstream \
    && mkdir -p /etc/nowstream /var/lib/nowstream \
    && chown 10001:10001 /var/lib/nowstream

COPY --from=builder /out/ /usr/local/bin/

LABEL org.opencontainers.image.title="nowstream" \
      org.opencontainers.image.description="ServiceNow ITSM data into Harness SEI through Kafka" \
      org.opencontainers.image.licenses="Apache-2.0"

# glibc's malloc is tuned by the binaries themselves (two arenas; the fetcher also a fixed
# mmap threshold: crates/runtime/src/allocator.rs, docs/performance.md). MALLOC_ARENA_MAX or
# MALLOC_MMAP_THRESHOLD_ in the environment still override them.

USER 10001:10001
WORKDIR /var/lib/nowstream
# /healthz, /readyz and /metrics of every stage ([http] listen).
EXPOSE 9090

# No entrypoint: the command names the binary, e.g. `nowstream-normalizer --config … run`.
ENTRYPOINT []
CMD ["nowstream-fetcher", "--config", "/etc/nowstream/nowstream.toml"]
