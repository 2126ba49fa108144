#!/usr/bin/env bash
# `make run`: start the three-broker group of cluster/local-3.yaml in the background (data under
# ./data, logs under ./data/logs), wait for a leader, make a demo topic, show how to use it.
set -euo pipefail
cd "$(dirname "$0")/.."
CLI="node dist/src/cli/main.js"
CLUSTER=cluster/local-3.yaml

# Security on: TLS certificates, the brokers' own key, and an admin key on first start whose
# credentials file (./data/credentials) the CLI finds without flags.
scripts/make-certs.sh data/certs b1 b2 b3 b4 b5 b6 >/dev/null
$CLI --cluster "$CLUSTER" key create --id broker --if-missing >/dev/null
if [ ! -f data/credentials ]; then
  $CLI --cluster "$CLUSTER" key create --id admin --write-credentials data/credentials >/dev/null
  echo "made access key admin; its credentials: ./data/credentials (the CLI reads them from there)"
fi
$CLI cluster up --cluster "$CLUSTER"
$CLI --cluster "$CLUSTER" topic create demo --queues 4 >/dev/null
echo
$CLI --cluster "$CLUSTER" status
cat <<'TEXT'

The cluster runs in the background (logs: ./data/logs, stop it with `make stop`), over TLS
(CA ./data/certs/ca.crt) with access keys: the CLI signs with the admin key in ./data/credentials
(or MAMBA_KEY_ID/MAMBA_KEY_SECRET, or --credentials <file>). More keys: npx mambamq --cluster
cluster/local-3.yaml key create, then grant them in cluster/local-3.permissions.yaml.
Produce and consume (copy and paste):

  npx mambamq produce --topic demo --queue 0 hello world
  npx mambamq consume --topic demo --queue 0

MQTT on ports 7401-7403 and STOMP on 7501-7503, over TLS (CA ./data/certs/ca.crt); user name
and password (login and passcode) are key_id and key_secret of ./data/credentials: README "MQTT
and STOMP gateways" has mosquitto_pub/mosquitto_sub and STOMP commands to paste.

More: npx mambamq --help, npx mambamq status --watch
TEXT
