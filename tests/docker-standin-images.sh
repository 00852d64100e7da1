#!/usr/bin/env bash
# Stand-ins for the Dockerfile's two base images, for a Docker engine that can reach no
# registry (where one can, even a mirror, use it: README, "Install on a cluster"). Made
# from Debian packages and the Rust toolchain on this machine, under the names the
# Dockerfile's ARG defaults use, so a plain `docker build .` then builds as it would with
# the real ones:
#   rust:1.95-bookworm                      debootstrap'd Debian 12 (gcc, libc6-dev,
#                                           ca-certificates) + this machine's toolchain
#                                           (`rustc --print sysroot`) on PATH, CARGO_HOME
#                                           /usr/local/cargo as in the official image, and
#                                           the CA certificates this machine trusts
#   gcr.io/distroless/cc-debian12:nonroot   what distroless' cc image holds for a Rust
#                                           binary: glibc, libgcc_s, CA certificates,
#                                           /etc/passwd with nonroot (65532), /tmp
# Needs root, a running Docker engine (Debian: docker.io, then `dockerd &`), debootstrap
# and Debian's package mirror. The build stage still fetches crates from crates.io.
# Usage: tests/docker-standin-images.sh [WORK_DIR]   (default target/standin-images)
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(realpath -m "${1:-target/standin-images}")
rust_tag=$(sed -n 's/^ARG RUST_IMAGE=//p' Dockerfile)
runtime_tag=$(sed -n 's/^ARG RUNTIME_IMAGE=//p' Dockerfile)
[ -n "$rust_tag" ] && [ -n "$runtime_tag" ] || { echo "no ARG RUST_IMAGE=/RUNTIME_IMAGE= in the Dockerfile" >&2; exit 1; }
for tool in docker debootstrap rustc tar; do
  command -v "$tool" > /dev/null || { echo "missing: $tool" >&2; exit 1; }
done
mkdir -p "$work"

# The build image: Debian 12 and this machine's Rust toolchain.
rootfs=$work/rust-rootfs
if [ ! -x "$rootfs/usr/bin/gcc" ]; then
  rm -rf "$rootfs"
  debootstrap --variant=minbase --include=gcc,libc6-dev,ca-certificates bookworm "$rootfs" \
    "${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
fi
sysroot=$(rustc --print sysroot)
rm -rf "$rootfs/usr/local/rust" "$rootfs/usr/local/cargo"
mkdir -p "$rootfs/usr/local/cargo/bin"
cp -a "$sysroot" "$rootfs/usr/local/rust"
for tool in cargo rustc rustdoc; do ln -s "../../rust/bin/$tool" "$rootfs/usr/local/cargo/bin/$tool"; done
# The CAs this machine trusts, so that the build reaches crates.io as cargo does here
# (through a proxy that presents its own CA, too).
cp -L /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
tar -C "$rootfs" -c . | docker import \
  --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV CARGO_HOME=/usr/local/cargo' - "$rust_tag"

# The runtime image: what a glibc Rust binary needs, and the nonroot user.
runtime=$work/runtime-rootfs
rm -rf "$runtime"
mkdir -p "$runtime"/{etc/ssl/certs,lib/x86_64-linux-gnu,lib64,tmp,home/nonroot}
chmod 1777 "$runtime/tmp"
for lib in libc.so.6 libm.so.6 libgcc_s.so.1 libdl.so.2 libpthread.so.0 librt.so.1; do
  cp -L "/lib/x86_64-linux-gnu/$lib" "$runtime/lib/x86_64-linux-gnu/"
done
cp -L /lib64/ld-linux-x86-64.so.2 "$runtime/lib64/"
cp -L /etc/ssl/certs/ca-certificates.crt "$runtime/etc/ssl/certs/"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$runtime/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$runtime/etc/group"
chown 65532:65532 "$runtime/home/nonroot"
tar -C "$runtime" -c . | docker import --change 'USER 65532' --change 'WORKDIR /home/nonroot' - "$runtime_tag"
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E "^(${rust_tag}|${runtime_tag}) "
