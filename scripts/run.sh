#!/usr/bin/env bash
# make run: the whole system on this machine with embedded defaults — the
# hub (with its embedded MQTT broker), one edge agent pointed at it, and the
# store simulator sending omnichannel traffic. Ctrl-C stops everything.
#
# Ports and rate can be changed through the environment:
#   HUB_HTTP=:8090 HUB_MQTT=:1883 EDGE_HTTP=:8080 RATE=50 ./scripts/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-bin}
DATA=${DATA:-data}
HUB_HTTP=${HUB_HTTP:-:8090}
HUB_MQTT=${HUB_MQTT:-:1883}
EDGE_HTTP=${EDGE_HTTP:-:8080}
RATE=${RATE:-50}
TOKEN=${UNICO_ADMIN_TOKEN:-demo-admin-token}
WRITE_KEY=${WRITE_KEY:-demo-write-key}

port() { echo "${1##*:}"; }
for addr in "$HUB_HTTP" "$HUB_MQTT" "$EDGE_HTTP"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$(port "$addr")") 2>/dev/null; then
    echo "run: port $(port "$addr") is already in use (set HUB_HTTP, HUB_MQTT or EDGE_HTTP to other addresses)" >&2
    exit 1
  fi
done

mkdir -p "$DATA/logs"
pids=()
stop() {
  trap - INT TERM EXIT
  echo
  echo "run: stopping" >&2
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM "${pids[i]}" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "run: stopped; data is in $DATA/, logs in $DATA/logs/" >&2
}
trap stop INT TERM EXIT

wait_http() { # url name
  for _ in $(seq 1 100); do
    if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "run: $2 did not become ready; see $DATA/logs/$2.log" >&2
  exit 1
}

"$BIN/hub" --data-dir "$DATA/hub" --http-addr "$HUB_HTTP" --mqtt-addr "$HUB_MQTT" \
  --admin-token "$TOKEN" >"$DATA/logs/hub.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$(port "$HUB_HTTP")/healthz" hub

"$BIN/edge-agent" --data-dir "$DATA/edge" --http-addr "$EDGE_HTTP" \
  --hub-url "mqtt://127.0.0.1:$(port "$HUB_MQTT")" --edge-id store-1 --write-key "$WRITE_KEY" \
  --default-channel pos --default-country-code 44 >"$DATA/logs/edge.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$(port "$EDGE_HTTP")/healthz" edge

HUB="http://127.0.0.1:$(port "$HUB_HTTP")"
EDGE="http://127.0.0.1:$(port "$EDGE_HTTP")"
cat <<MSG

  Unico is running.

  Web UI        $HUB/#token=$TOKEN
  Hub API       curl -H 'Authorization: Bearer $TOKEN' $HUB/api/v1/stats
                curl -H 'Authorization: Bearer $TOKEN' '$HUB/api/v1/profiles?limit=5'
                curl -H 'Authorization: Bearer $TOKEN' $HUB/api/v1/edges
  Edge agent    curl $EDGE/v1/status
                curl '$EDGE/v1/profiles/lookup?type=email&value=<an e-mail shown in the UI>'  (works offline)
                curl -u $WRITE_KEY: $EDGE/v1/track -d '{"userId":"u-1","event":"Order Completed","properties":{"revenue":42}}'
  Metrics       $HUB/metrics   $EDGE/metrics
  Logs          $DATA/logs/

  The simulator sends $RATE events/s of store traffic. Ctrl-C stops everything.

MSG

"$BIN/simulator" --edge "$EDGE" --write-key "$WRITE_KEY" --rate "$RATE" --stores 1 \
  --population 2000 --country-code 44 --progress 10s 2>"$DATA/logs/simulator.log" >/dev/null &
pids+=($!)
wait "${pids[-1]}" || true
