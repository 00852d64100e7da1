#!/usr/bin/env bash
# Install nsguard without cert-manager: make a CA and serving certificate with
# `nsguard certs`, apply the base manifests, put the CA into every nsguard webhook's
# caBundle, and store the pair as Secret nsguard-tls. Run from the repository root.
# Re-run to rotate: each run makes a new CA, and the caBundle keeps the previous CA beside
# it, so the API server trusts both the pods that still serve the old certificate (the
# kubelet updates a mounted Secret within a minute or two, and nsguard then reloads it)
# and those that serve the new one: no review fails during a rotation.
set -euo pipefail

NSGUARD=${NSGUARD:-target/release/nsguard}
OUT=${OUT:-certs/cluster}
NAMESPACE=nsguard-system

[ -x "$NSGUARD" ] || { echo "build nsguard first (cargo build --release) or set NSGUARD=" >&2; exit 2; }

"$NSGUARD" certs --out "$OUT" --force \
  --dns-name nsguard.nsguard-system.svc --dns-name nsguard.nsguard-system.svc.cluster.local

kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f -
kubectl apply -k manifests/base

# The caBundle first (the new CA, and the newest CA it held before), then the Secret.
for kind in validatingwebhookconfiguration mutatingwebhookconfiguration; do
  count=$(kubectl get "$kind" nsguard -o jsonpath='{range .webhooks[*]}x{end}' 2>/dev/null | wc -c) || count=0
  [ "$count" -gt 0 ] || continue
  previous=$(kubectl get "$kind" nsguard -o jsonpath='{.webhooks[0].clientConfig.caBundle}' \
    | base64 -d 2>/dev/null | awk '/-BEGIN CERTIFICATE-/ {n++} n == 1') || previous=""
  ca_bundle=$({ cat "$OUT/ca.crt"; if [ -n "$previous" ]; then printf '%s\n' "$previous"; fi; } \
    | base64 | tr -d '\n')
  patch=""
  for ((i = 0; i < count; i++)); do
    patch+="${patch:+,}{\"op\":\"add\",\"path\":\"/webhooks/$i/clientConfig/caBundle\",\"value\":\"$ca_bundle\"}"
  done
  kubectl patch "$kind" nsguard --type=json -p "[$patch]"
done

kubectl -n "$NAMESPACE" create secret tls nsguard-tls \
  --cert="$OUT/tls.crt" --key="$OUT/tls.key" --dry-run=client -o yaml | kubectl apply -f -
kubectl -n "$NAMESPACE" rollout status deployment/nsguard --timeout=120s
