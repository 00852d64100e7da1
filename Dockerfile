# syntax=docker/dockerfile:1
# nsguard: build with the Rust toolchain, run from a distroless non-root image (no shell,
# no package manager). Build: docker build -t <registry>/nsguard:<tag> .

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Everything the nsguard binary compiles from: the manifest and lock file, the sources,
# the example dump it embeds, and the declared bench target (cargo reads every target).
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY examples ./examples
COPY benches ./benches
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin nsguard \
    && cp target/release/nsguard /nsguard

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /nsguard /usr/local/bin/nsguard
# 65532 is distroless' nonroot user; the Deployment also sets runAsNonRoot.
USER 65532:65532
EXPOSE 8443 9090
ENTRYPOINT ["/usr/local/bin/nsguard"]
CMD ["serve", "--tls-cert=/etc/nsguard/tls/tls.crt", "--tls-key=/etc/nsguard/tls/tls.key", "--log-format=json"]
