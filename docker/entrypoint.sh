#!/bin/sh
# The image's entry point: derive the node index from a swarm task slot, then exec the node, so
# that the node is PID 1 and `docker stop`'s SIGTERM reaches it (it hands over its partitions and
# says goodbye to its peers before it exits).
#
# Docker swarm numbers the replicas of a service 1..n and gives a replacement task the slot of
# the task it replaces; a stack passes it in as SIERRA_TASK_SLOT="{{.Task.Slot}}". Node indexes
# are 0..n-1, and a Go template cannot subtract, so the subtraction happens here.
set -eu
if [ -n "${SIERRA_TASK_SLOT:-}" ]; then
    case "$SIERRA_TASK_SLOT" in
        *[!0-9]*) echo "sierradb: error: SIERRA_TASK_SLOT must be a number, got '$SIERRA_TASK_SLOT'" >&2; exit 1 ;;
    esac
    if [ -n "${SIERRA_NODE_INDEX:-}" ]; then
        echo "sierradb: error: set SIERRA_TASK_SLOT or SIERRA_NODE_INDEX, not both" >&2
        exit 1
    fi
    SIERRA_NODE_INDEX=$((SIERRA_TASK_SLOT - 1))
    export SIERRA_NODE_INDEX
fi
exec "$@"
