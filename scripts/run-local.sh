#!/usr/bin/env bash
# `make run`: start the three-broker group of cluster/local-3.yaml in the background (data under
# ./data, logs under ./data/logs), wait for a leader, make a demo topic, show how to use it.
set -euo pipefail
cd "$(dirname "$0")/.."
CLI="node dist/src/cli/main.js"
CLUSTER=cluster/local-3.yaml

$CLI cluster up --cluster "$CLUSTER"
$CLI --cluster "$CLUSTER" topic create demo --queues 4 >/dev/null
echo
$CLI --cluster "$CLUSTER" status
cat <<'TEXT'

The cluster runs in the background (logs: ./data/logs, stop it with `make stop`).
Produce and consume (copy and paste):

  npx mambamq produce --topic demo --queue 0 hello world
  npx mambamq consume --topic demo --queue 0

More: npx mambamq --help, npx mambamq status --watch
TEXT
