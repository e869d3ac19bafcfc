# callhook container image.
#
#   docker build -t callhook .
#   docker build --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" -t callhook .
#
# Two stages: a full Rust toolchain to compile, and a slim Debian runtime that
# carries only the binary and the CA bundle. Only the service is built: the
# simulator (crates/simulator, callhook-sim) is a workspace member, so cargo
# needs its manifest, but its sources never enter the image.

# ---------------------------------------------------------------------------
# Builder
# ---------------------------------------------------------------------------
# The toolchain must satisfy rust-version in Cargo.toml. The bookworm variant is
# chosen so the binary links against the same glibc as the runtime stage; the
# slim image already ships gcc/libc6-dev, which ring and aws-lc-sys need (no
# cmake, no OpenSSL: TLS is rustls).
FROM rust:1.95-slim-bookworm AS builder

WORKDIR /build

# Static SQL is checked at compile time (sqlx::query!) against the committed
# .sqlx/ data, never against a database, which the build does not have.
ENV SQLX_OFFLINE=true \
    CARGO_TERM_COLOR=never

# Dependency caching, "dummy main" style (chosen over cargo-chef so the build
# does not first compile an extra tool): compile every dependency against the
# real Cargo.toml/Cargo.lock with placeholder sources. This layer is reused
# until the manifest or lockfile changes, so an edit under src/ only recompiles
# callhook itself instead of ~300 crates.
# The placeholder crate's own artifacts are then removed with `cargo clean -p`:
# COPY keeps the build context's mtimes, so real sources older than this layer
# would otherwise look up to date and the dummy binary would be shipped.
# The simulator's placeholder sources stay: cargo loads every member's manifest
# and targets, but builds only --package callhook.
COPY Cargo.toml Cargo.lock ./
COPY crates/platform/Cargo.toml ./crates/platform/
COPY crates/simulator/Cargo.toml ./crates/simulator/
RUN mkdir src crates/platform/src crates/simulator/src \
    && printf 'fn main() {}\n' > src/main.rs \
    && : > src/lib.rs \
    && : > crates/platform/src/lib.rs \
    && printf 'fn main() {}\n' > crates/simulator/src/main.rs \
    && : > crates/simulator/src/lib.rs \
    && cargo build --release --locked --package callhook \
    && cargo clean --release --package callhook --package callhook-platform \
    && rm -rf src crates/platform/src

# Everything the crate reads at compile time: sqlx::migrate!() embeds
# migrations/ and include_str! embeds config.toml, so both must be here.
# config.toml is the embedded defaults, which hold no secrets (see its header);
# it stays in this stage. A deployment's own file is mounted at run time
# (/etc/callhook/config.toml, or --config), never copied into the image.
COPY src ./src
COPY crates/platform ./crates/platform
COPY migrations ./migrations
COPY .sqlx ./.sqlx
COPY config.toml ./

# Copy the binary out of target/ here so the runtime stage does not depend on
# cargo's target layout.
RUN cargo build --release --locked --package callhook \
    && install -m 0755 target/release/callhook /usr/local/bin/callhook

# ---------------------------------------------------------------------------
# Runtime
# ---------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime

# ca-certificates is the only runtime dependency: outbound TLS (rustls) is
# verified against the system roots.
# A fixed numeric uid/gid lets orchestrators verify runAsNonRoot and lets
# mounted files be chowned predictably.
# DL3008 (pin apt versions) is ignored on purpose: bookworm's archive carries
# only the current ca-certificates, so a pin would break the build at the next
# point release, and picking up refreshed CA roots is what we want.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 callhook \
    && useradd --system --uid 10001 --gid 10001 \
        --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin callhook \
    && mkdir -p /var/lib/callhook/spool \
    && chown 10001:10001 /var/lib/callhook/spool

COPY --from=builder /usr/local/bin/callhook /usr/local/bin/callhook

# Numeric, not the name: runAsNonRoot checks cannot resolve names.
USER 10001:10001

# Container log collectors expect one JSON object per line. The spool holds
# acknowledged callbacks while PostgreSQL is unreachable: it must outlive the
# container (one volume per replica), or what it holds at replacement is lost.
ENV CALLHOOK_LOG__FORMAT=json \
    CALLHOOK_SPOOL__DIR=/var/lib/callhook/spool
VOLUME ["/var/lib/callhook/spool"]

EXPOSE 8080

# callhook shuts down gracefully on SIGTERM. It runs as PID 1 without an init
# shim because it handles the signal itself and spawns no children.
STOPSIGNAL SIGTERM

# The binary is its own probe client, so the image needs no curl/wget. It hits
# http://127.0.0.1:8080/healthz; pass --url if serve is given another --listen.
# start-period covers database creation and migrations at startup.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["callhook", "healthcheck"]

# Placed last so that changing them never invalidates the layers above.
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="callhook" \
      org.opencontainers.image.description="Receives Huawei Cloud VoiceCall status and CDR callbacks into PostgreSQL" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="docker.io/library/debian:bookworm-slim"

ENTRYPOINT ["callhook"]
CMD ["serve"]
