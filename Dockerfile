# nsguard: build with the Rust toolchain, run from a distroless non-root image (no shell,
# no package manager). Build: docker build -t <registry>/nsguard:<tag> .
# Base images from a registry mirror (nothing else is fetched: no frontend image, no
# BuildKit-only syntax, so the classic builder and BuildKit both build it):
#   docker build --build-arg RUST_IMAGE=<mirror>/library/rust:1.95-bookworm \
#     --build-arg RUNTIME_IMAGE=<mirror>/distroless/cc-debian12:nonroot -t <registry>/nsguard:<tag> .
# The build stage runs with the network (crates.io) unless a vendored registry is given.
ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
WORKDIR /src
# Everything the nsguard binary compiles from: the manifest and lock file, the sources and
# the example dump it embeds. The build context (.dockerignore) holds nothing else.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY examples ./examples
RUN cargo build --release --locked --bin nsguard && cp target/release/nsguard /nsguard

FROM ${RUNTIME_IMAGE}
COPY --from=build /nsguard /usr/local/bin/nsguard
# 65532 is distroless' nonroot user; the Deployment also sets runAsNonRoot.
USER 65532:65532
EXPOSE 8443 9090
ENTRYPOINT ["/usr/local/bin/nsguard"]
CMD ["serve", "--tls-cert=/etc/nsguard/tls/tls.crt", "--tls-key=/etc/nsguard/tls/tls.key", "--log-format=json"]
