#!/usr/bin/env bash
# End-to-end on kind: a real cluster with real pods. Needs Docker, kind, kubectl, helm
# and internet access for the base images (it cannot run on a machine without a Docker
# engine; there, `make e2e` runs the same checks against the local control plane).
#
#   e2e/kind/run.sh            # create, test, delete the cluster
#   KEEP=1 e2e/kind/run.sh     # keep the cluster afterwards (delete: kind delete cluster --name iccache-e2e)
#
# Steps: create a kind cluster; build the project's images and a model store and load
# them into it; helm install the chart; run `helm test`; apply a CPU-only sample
# (llama.cpp models, managed Redis); wait for Ready; send OpenAI requests through the
# router and check the answers and the offload metrics; run the pytest e2e suite against
# the same cluster; tear down.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CLUSTER="${CLUSTER:-iccache-e2e}"
NS_SYSTEM=iccache-system
NS_APP=iccache-demo
TAG=e2e
KUBECONFIG_FILE="$(mktemp -t kind-iccache.XXXXXX)"
export KUBECONFIG="$KUBECONFIG_FILE"

step() { printf '\n== %s\n' "$*"; }
need() { command -v "$1" >/dev/null || { echo "e2e/kind: $1 is required" >&2; exit 2; }; }
for tool in docker kind kubectl helm curl python3; do need "$tool"; done
docker info >/dev/null 2>&1 || { echo "e2e/kind: no Docker engine is reachable" >&2; exit 2; }

cleanup() {
  status=$?
  [ -n "${PF_PID:-}" ] && kill "$PF_PID" 2>/dev/null || true
  if [ $status -ne 0 ]; then
    step "failed; state for debugging"
    kubectl get pods -A -o wide || true
    kubectl -n "$NS_APP" get icc demo -o yaml || true
    kubectl -n "$NS_SYSTEM" logs deploy/iccache --tail=100 || true
  fi
  if [ "${KEEP:-0}" != 1 ]; then kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true; fi
  rm -f "$KUBECONFIG_FILE"
  exit $status
}
trap cleanup EXIT INT TERM

step "creating kind cluster $CLUSTER"
kind create cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG_FILE" --wait 180s

step "building images (the project's four, from the Dockerfiles make images uses, and the model store)"
"$ROOT/.venv/bin/python" -m iccache_dev.local.images stage-model  # the ONNX embedder
docker build -f "$ROOT/operator/Dockerfile" -t "iccache/operator:$TAG" "$ROOT"
docker build -f "$ROOT/sidecar/Dockerfile" -t "iccache/sidecar:$TAG" "$ROOT"
docker build -f "$ROOT/images/redis/Dockerfile" -t "iccache/redis:$TAG" "$ROOT"
docker build -f "$ROOT/images/llama-server/Dockerfile" -t "iccache/llama-server:$TAG" "$ROOT"
docker build -f "$ROOT/e2e/kind/models.Dockerfile" -t "iccache/model-store:$TAG" "$ROOT"
for image in operator sidecar redis llama-server model-store; do
  kind load docker-image --name "$CLUSTER" "iccache/$image:$TAG"
done

step "helm install"
helm install iccache "$ROOT/charts/iccache" -n "$NS_SYSTEM" --create-namespace \
  --set image.repository=iccache/operator --set image.tag=$TAG --set image.pullPolicy=Never \
  --set sidecarImage.repository=iccache/sidecar --set sidecarImage.tag=$TAG \
  --wait --timeout 5m
helm test iccache -n "$NS_SYSTEM" --logs

step "applying the CPU sample and waiting for Ready (model loading takes minutes)"
kubectl create namespace "$NS_APP"
# The model store the sample's url sources download from.
kubectl -n "$NS_APP" create deployment model-store --image "iccache/model-store:$TAG" --port 8000
kubectl -n "$NS_APP" expose deployment model-store --port 8000
kubectl -n "$NS_APP" rollout status deployment/model-store --timeout=5m
kubectl apply -n "$NS_APP" -f "$ROOT/e2e/kind/sample.yaml"
kubectl wait -n "$NS_APP" --for=condition=Ready icc/demo --timeout=20m
kubectl get icc -n "$NS_APP"

step "OpenAI requests through the router"
kubectl -n "$NS_APP" port-forward svc/demo-router 18080:8080 >/dev/null 2>&1 &
PF_PID=$!
for _ in $(seq 60); do curl -sf localhost:18080/readyz >/dev/null && break; sleep 1; done
ask() {
  curl -sf localhost:18080/v1/chat/completions -H 'content-type: application/json' \
    -d "{\"model\":\"iccache\",\"max_tokens\":24,\"messages\":[{\"role\":\"user\",\"content\":\"$1\"}]}" \
    | python3 -c 'import json,sys; r=json.load(sys.stdin); t=r["choices"][0]["message"]["content"]; assert t.strip(), r; print("  ->", t.strip()[:80])'
}
for q in "What is the capital of France?" "Which city is the capital of France?" \
         "What is the capital of Germany?" "Which city is the capital of Germany?" \
         "What is the capital of Italy?" "Name the capital city of Italy."; do
  echo "$q"; ask "$q"
done
metrics="$(curl -sf localhost:18080/metrics)"
python3 - "$metrics" <<'PY'
import re, sys
text = sys.argv[1]
served = {m.group(1): float(m.group(2)) for m in re.finditer(r'iccache_requests_total\{route="(\w+)"[^}]*\} ([0-9.e+]+)', text)}
ratio = re.search(r"^iccache_offload_ratio ([0-9.e+-]+)", text, re.M)
assert sum(served.values()) >= 6, f"requests not counted: {served}"
assert ratio is not None, "no iccache_offload_ratio metric"
print(f"  requests by route: {served}; offload ratio {float(ratio.group(1)):.2f}")
PY

step "pytest e2e against this cluster"
ICCACHE_E2E_KUBECONFIG="$KUBECONFIG_FILE" "$ROOT/.venv/bin/pytest" "$ROOT/e2e" -q

step "uninstall"
kubectl delete -n "$NS_APP" icc/demo --wait=true --timeout=2m
helm uninstall iccache -n "$NS_SYSTEM" --wait
left="$(kubectl get all,serviceaccounts,roles,rolebindings,clusterroles,clusterrolebindings -A \
  -l app.kubernetes.io/instance=iccache,app.kubernetes.io/name=iccache-operator -o name)"
[ -z "$left" ] || { echo "left after uninstall: $left" >&2; exit 1; }
echo "e2e on kind passed"
