#!/usr/bin/env bash
# NVIDIA Dynamo frontend: OpenAI-compatible HTTP (/v1/completions, /v1/models) with the KV-aware
# router in front of the TensorRT-LLM workers started by worker.sh. A sketch for teams; foreground.
#
#   engine_builds/dynamo/frontend.sh
#
# Environment: PORT [8000], PYTHON [python3].
set -euo pipefail
PORT=${PORT:-8000}
PYTHON=${PYTHON:-python3}
TOTAL=3; STEP=0
step() { STEP=$((STEP + 1)); echo "== [$STEP/$TOTAL] $*"; }
die() { echo "error: $*" >&2; exit 1; }

step "Dynamo"
version=$("$PYTHON" -c "import importlib.metadata as m; print(m.version('ai-dynamo'))" 2>/dev/null) \
  || die "ai-dynamo is not installed for $PYTHON (pip install 'ai-dynamo[trtllm]==0.8.1.post3' with NVIDIA's index; engine_builds/README.md)"
echo "ai-dynamo $version"

step "discovery (etcd) and events (NATS)"
# Dynamo 0.8's quickstart starts both first (docker compose -f deploy/docker-compose.yml up -d in the
# Dynamo repository); later versions make them optional (--discovery-backend, ZMQ events).
etcd_up=0; nats_up=0
(exec 3<>/dev/tcp/127.0.0.1/2379) 2>/dev/null && etcd_up=1
(exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null && nats_up=1
echo "etcd on :2379: $([ $etcd_up = 1 ] && echo up || echo down); NATS on :4222: $([ $nats_up = 1 ] && echo up || echo down)"
if [ "${version%%.*}" = 0 ] && { [ $etcd_up = 0 ] || [ $nats_up = 0 ]; }; then
  [ -n "${ETCD_ENDPOINTS:-}" ] || die "Dynamo $version expects etcd and NATS: start them (docker compose -f deploy/docker-compose.yml up -d in the Dynamo repo) or set ETCD_ENDPOINTS / NATS_SERVER"
fi

step "frontend on port $PORT, router mode kv"
echo "then start one worker per GPU (engine_builds/dynamo/worker.sh) and point completer at http://THIS_HOST:$PORT/v1"
set -x
exec "$PYTHON" -m dynamo.frontend --http-port "$PORT" --router-mode kv
