#!/usr/bin/env bash
# Install nsguard without cert-manager: make a CA and serving certificate with
# `nsguard certs`, store them as Secret nsguard-tls, apply the base manifests, and put the
# CA into every nsguard webhook's caBundle. Run from the repository root. Re-run to rotate.
set -euo pipefail

NSGUARD=${NSGUARD:-target/release/nsguard}
OUT=${OUT:-certs/cluster}
NAMESPACE=nsguard-system

[ -x "$NSGUARD" ] || { echo "build nsguard first (cargo build --release) or set NSGUARD=" >&2; exit 2; }

"$NSGUARD" certs --out "$OUT" --force \
  --dns-name nsguard.nsguard-system.svc --dns-name nsguard.nsguard-system.svc.cluster.local

kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f -
kubectl -n "$NAMESPACE" create secret tls nsguard-tls \
  --cert="$OUT/tls.crt" --key="$OUT/tls.key" --dry-run=client -o yaml | kubectl apply -f -

kubectl apply -k manifests/base

ca_bundle=$(base64 < "$OUT/ca.crt" | tr -d '\n')
for kind in validatingwebhookconfiguration mutatingwebhookconfiguration; do
  count=$(kubectl get "$kind" nsguard -o jsonpath='{range .webhooks[*]}x{end}' 2>/dev/null | wc -c) || count=0
  patch=""
  for ((i = 0; i < count; i++)); do
    patch+="${patch:+,}{\"op\":\"add\",\"path\":\"/webhooks/$i/clientConfig/caBundle\",\"value\":\"$ca_bundle\"}"
  done
  if [ -n "$patch" ]; then
    kubectl patch "$kind" nsguard --type=json -p "[$patch]"
  fi
done
kubectl -n "$NAMESPACE" rollout status deployment/nsguard --timeout=120s
