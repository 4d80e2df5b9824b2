#!/usr/bin/env bash
# SierraDB on Docker swarm, step by step: deploy three tasks, write through the published ports,
# kill a task while writing, scale down and up, wipe a replica and admit it, read everything back,
# tear down. Every acknowledged event must be readable at the end (exit 1 otherwise).
#
#   docker swarm init          # once, if this host is not in a swarm yet
#   docker/swarm/demo.sh       # needs the image (SIERRADB_IMAGE, default sierradb-py) and redis-cli
#
# Meant for a one-host swarm (it reads the tasks' published ports on this host). KEEP=1 leaves the
# stack and its volumes in place at the end.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
STACK=${STACK:-sierradb}
SERVICE=${STACK}_sierradb
IMAGE=${SIERRADB_IMAGE:-sierradb-py}
REDIS_CLI=${REDIS_CLI:-redis-cli}
WAIT_S=${WAIT_S:-120}
STATE=$(mktemp -d)
ACKED=$STATE/acked.txt
: > "$ACKED"
chmod -R a+rX "$STATE"
export SIERRADB_IMAGE=$IMAGE

step() { printf '\n== %s\n' "$*"; }
die() { echo "demo: $*" >&2; exit 1; }
command -v "$REDIS_CLI" > /dev/null || die "needs redis-cli (apt-get install -y redis-tools)"

# slot port: one line per running task of the service
ports() {
    docker ps --filter "label=com.docker.swarm.service.name=$SERVICE" \
        --format '{{.Label "com.docker.swarm.task.name"}} {{.Ports}}' |
        sed -nE 's/^[^.]+\.([0-9]+)\.[^ ]+ .*:([0-9]+)->9090\/tcp.*/\1 \2/p' | sort -n
}
port_of() { ports | awk -v s="$1" '$1 == s {print $2}'; }
addresses() { ports | awk '{printf "%s127.0.0.1:%s", (NR > 1 ? "," : ""), $2}'; }
container_of() { docker ps -q --filter "label=com.docker.swarm.service.name=$SERVICE" --filter "name=$SERVICE.$1."; }
cli() { local slot=$1; shift; "$REDIS_CLI" -p "$(port_of "$slot")" "$@"; }
info() { cli "$1" INFO cluster | tr -d '\r' | grep -E "^($2):" | sed 's/^/    /'; }

# events.py in a throwaway container of the image (it has the Python client), on the host's network
events() {
    docker run --rm --network host -e SIERRADB_ADDRESSES="$(addresses)" \
        -v "$HERE/events.py:/events.py:ro" -v "$STATE:/state:ro" \
        --entrypoint python "$IMAGE" /events.py "$@"
}

# Until every slot in "$@" runs a task that answers with the cluster formed and this many alive.
wait_for() {
    local alive=$1; shift
    local deadline=$((SECONDS + WAIT_S)) slot ok
    while :; do
        ok=1
        for slot in "$@"; do
            [[ -n $(port_of "$slot") ]] &&
                cli "$slot" INFO cluster 2> /dev/null | tr -d '\r' | grep "^nodes_alive:$alive$" > /dev/null ||
                ok=0
        done
        ((ok)) && return 0
        ((SECONDS < deadline)) || die "slots $* not up with $alive nodes alive after ${WAIT_S}s"
        sleep 1
    done
}

# Until exactly $1 tasks of the service run (scaling returns before the old containers are gone).
wait_tasks() {
    local deadline=$((SECONDS + WAIT_S))
    until [[ $(ports | wc -l) == "$1" ]]; do
        ((SECONDS < deadline)) || die "not $1 running tasks after ${WAIT_S}s"
        sleep 1
    done
}

step "deploy: docker stack deploy -c $HERE/stack.yaml $STACK"
docker stack deploy -c "$HERE/stack.yaml" "$STACK"
wait_for 3 1 2 3
docker service ps "$SERVICE" --format '{{.Name}} {{.CurrentState}} {{.Ports}}'
for slot in 1 2 3; do
    echo "slot $slot: redis-cli -p $(port_of "$slot")"
    info "$slot" "node_index|member_id|nodes_alive"
done

step "write 200 events through the published ports"
events write 0 200 >> "$ACKED"
events watermarks --wait

step "kill slot 2's task (SIGKILL) while writing 300 more events"
events write 200 300 50 >> "$ACKED" &
writer=$!
sleep 2
docker kill "$(container_of 2)" > /dev/null
echo "killed; swarm starts a replacement in slot 2, on volume ${SERVICE}-data-2"
wait_for 3 1 2 3
echo "the replacement (same member id, next incarnation):"
info 2 "node_index|member_id|incarnation|nodes_alive|learner"
wait "$writer" || die "the writer failed"
events watermarks --wait
echo "one partition in the replacement's INFO cluster (watermark: events confirmed):"
info 2 "partition5"

step "scale down to 2 tasks, write 200 events, scale back to 3"
docker service scale "$SERVICE=2" > /dev/null
wait_tasks 2
gone=$(comm -13 <(ports | awk '{print $1}') <(printf '1\n2\n3\n'))
echo "slot $gone stopped (SIGTERM: it handed over its partitions); writing on the other two"
events write 500 200 >> "$ACKED"
docker service scale "$SERVICE=3" > /dev/null
wait_for 3 1 2 3
echo "slot $gone is back on its volume and caught up:"
events watermarks --wait

step "wipe a replica: scale down, delete slot ${gone}'s volume, scale up"
docker service scale "$SERVICE=2" > /dev/null
wait_tasks 2
gone=$(comm -13 <(ports | awk '{print $1}') <(printf '1\n2\n3\n'))
docker ps -aq --filter "volume=${SERVICE}-data-$gone" | xargs -r docker rm -f > /dev/null
docker volume rm "${SERVICE}-data-$gone" > /dev/null
docker service scale "$SERVICE=3" > /dev/null
wait_for 3 1 2 3
echo "slot $gone has a new data dir, so a new member id at a known index: it is a learner"
info "$gone" "node_index|member_id|learner"
echo "a learner catches up (and serves reads) but does not vote:"
events watermarks --wait
some=$(ports | awk -v s="$gone" '$1 != s {print $1; exit}')
echo "an operator admits it: redis-cli -p $(port_of "$some") CLUSTER ADMIT $((gone - 1))"
cli "$some" CLUSTER ADMIT $((gone - 1))
sleep 2
info "$gone" "learner"

step "read every acknowledged event back"
result=0
events check /state/acked.txt || result=1

if [[ ${KEEP:-0} == 1 ]]; then
    step "kept: docker stack rm $STACK; docker volume rm ${SERVICE}-data-{1,2,3}"
else
    step "tear down: docker stack rm $STACK, then its volumes"
    docker stack rm "$STACK"
    deadline=$((SECONDS + WAIT_S))
    while [[ -n $(docker ps -aq --filter "label=com.docker.swarm.service.name=$SERVICE") ]]; do
        ((SECONDS < deadline)) || die "the stack's containers are still there"
        docker ps -aq --filter "label=com.docker.swarm.service.name=$SERVICE" --filter status=exited |
            xargs -r docker rm > /dev/null 2>&1 || true
        sleep 1
    done
    docker volume rm "${SERVICE}-data-1" "${SERVICE}-data-2" "${SERVICE}-data-3"
fi
rm -rf "$STATE"
exit "$result"
