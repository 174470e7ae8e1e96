# ledgersync in a container: `docker compose up` (docker-compose.yml) runs it with RabbitMQ, or
#   docker build -t ledgersync .
#   docker run --rm -v ledgersync-data:/var/lib/ledgersync ledgersync
# serves with the configuration at /etc/ledgersync/ledgersync.toml (a copy of
# config/ledgersync.toml; mount your own over /etc/ledgersync). Any other command works the same
# way: `docker run --rm ledgersync --help`, `docker compose exec ledgersync ledgersync mailbox list`.

# --- build -------------------------------------------------------------------------------------
FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
# The `ledgersync` binary of the package `ledgersync` (crates/cli), with the locked versions.
RUN cargo build --release --locked -p ledgersync \
 && install -m 0755 target/release/ledgersync /usr/local/bin/ledgersync

# --- run ---------------------------------------------------------------------------------------
FROM debian:bookworm-slim
# ca-certificates: amqps:// brokers are verified against the platform's trust store.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 ledgersync \
 && useradd --system --uid 10001 --gid ledgersync --home-dir /var/lib/ledgersync \
      --no-create-home --shell /usr/sbin/nologin ledgersync \
 && install -d -o ledgersync -g ledgersync -m 0700 /var/lib/ledgersync \
 && install -d -m 0755 /etc/ledgersync
COPY --from=builder /usr/local/bin/ledgersync /usr/local/bin/ledgersync
COPY config/ledgersync.toml /etc/ledgersync/ledgersync.toml
USER ledgersync:ledgersync
# Relative paths of the configuration (`data.dir = "data"`, the vdir collections and Maildirs
# under data/) land in the volume.
WORKDIR /var/lib/ledgersync
VOLUME ["/var/lib/ledgersync"]
ENTRYPOINT ["ledgersync"]
CMD ["--config", "/etc/ledgersync/ledgersync.toml", "serve"]
