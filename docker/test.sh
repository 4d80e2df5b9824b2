#!/usr/bin/env bash
# Proves the Docker side end to end, as root (not part of the pytest run):
#   1. a Docker daemon of its own, in a network namespace (sdbdk) with NAT to the outside;
#   2. a local base image (debootstrap of bookworm with python3 and python3-venv, docker import:
#      no registry is reachable here), its tarball cached under $CACHE for the next run;
#   3. the image (docker/Dockerfile with BASE=that image): size, no compiler, non-root, labels;
#   4. the one-liner: docker run -p 9090:9090, health check, redis-cli PING/EAPPEND/ESCAN,
#      docker stop -> SIGTERM -> clean exit 0; and the health check with SIERRA_REQUIREPASS;
#   5. docker/compose.yaml: three nodes form a cluster, a write on one is read on another;
#   6. swarm: docker/swarm/demo.sh (kill a task mid-write, scale, wipe and admit a replica;
#      every acknowledged event must be read back);
#   7. cleanup of all it created: containers, stack, swarm, volumes, images, the daemon and its
#      directories, the namespace, the NAT rule, ip_forward as it was. Also run first, for the
#      leftovers of a run that was killed.
#
#   sudo docker/test.sh           # CACHE=/var/cache/sierradb-docker by default
# The first run takes longer (debootstrap, about 2 minutes); later ones reuse the tarball.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
NS=sdbdk
VETH_HOST=sdbdk-h
VETH_NS=sdbdk-c
HOST_IP=10.203.119.1
NS_IP=10.203.119.2
SUBNET=10.203.119.0/30
DATA_ROOT=/var/lib/sdbdk-docker
RUN_DIR=/run/sdbdk
SOCK=$RUN_DIR/docker.sock
CACHE=${CACHE:-/var/cache/sierradb-docker}
BASE_TAR=$CACHE/bookworm-python3.tar
BASE_IMAGE=sierradb-base:bookworm
IMAGE=sierradb-py:test
WAIT_S=120

export DOCKER_HOST=unix://$SOCK
export PATH=/usr/bin:/usr/sbin:/bin:/sbin:$PATH  # Debian's docker CLI, matching the daemon

T0=$SECONDS
PHASE_T=$SECONDS
TIMES=()
say() { printf '\n### %s\n' "$*"; }
phase_done() { TIMES+=("$(printf '%-34s %4ds' "$1" $((SECONDS - PHASE_T)))"); PHASE_T=$SECONDS; }
fail() { echo "FAIL: $*" >&2; exit 1; }
in_ns() { nsenter --net=/run/netns/$NS "$@"; }
rcli() { in_ns redis-cli "$@" | tr -d '\r'; }

[[ $EUID == 0 ]] || fail "run as root"

# Until "$@" succeeds (quietly), at most WAIT_S seconds.
wait_until() {
    local what=$1; shift
    local deadline=$((SECONDS + WAIT_S))
    until "$@" > /dev/null 2>&1; do
        ((SECONDS < deadline)) || fail "timed out waiting for $what"
        sleep 1
    done
}

# --------------------------------------------------------------------------------- cleanup
cleanup() {
    set +e
    if [[ -S $SOCK ]] && docker info > /dev/null 2>&1; then
        docker stack rm sierradb > /dev/null 2>&1
        (cd "$REPO/docker" && SIERRADB_IMAGE=$IMAGE docker-compose -p sdbdk down -v > /dev/null 2>&1)
        docker swarm leave --force > /dev/null 2>&1
        docker ps -aq | xargs -r docker rm -f -v > /dev/null 2>&1
        docker volume ls -q | xargs -r docker volume rm > /dev/null 2>&1
        docker rmi -f "$IMAGE" "$BASE_IMAGE" > /dev/null 2>&1
        docker image prune -af > /dev/null 2>&1
    fi
    if [[ -f $RUN_DIR/dockerd.pid ]]; then
        local pid
        pid=$(cat "$RUN_DIR/dockerd.pid")
        kill "$pid" 2> /dev/null
        # (a dockerd this script started stays a zombie until the script exits: not alive)
        for _ in $(seq 30); do
            [[ -r /proc/$pid/stat && $(awk '{print $3}' "/proc/$pid/stat") != Z ]] || break
            sleep 1
        done
        kill -9 "$pid" 2> /dev/null
    fi
    # Mounts the daemon left (container layers, network namespaces), deepest first.
    awk -v a="$DATA_ROOT" -v b="$RUN_DIR" 'index($2, a) == 1 || index($2, b) == 1 {print $2}' \
        /proc/mounts | sort -r | xargs -r -n1 umount -l 2> /dev/null
    rm -rf --one-file-system "$DATA_ROOT" "$RUN_DIR"
    ip netns del $NS 2> /dev/null
    ip link del $VETH_HOST 2> /dev/null
    nft delete table ip sdbdk 2> /dev/null
    if [[ -f /run/sdbdk.ip_forward ]]; then
        cat /run/sdbdk.ip_forward > /proc/sys/net/ipv4/ip_forward
        rm -f /run/sdbdk.ip_forward
    fi
    return 0
}

on_exit() {
    local code=$?
    say "cleanup"
    cleanup
    phase_done "cleanup"
    ip netns list | grep -qw $NS && echo "WARNING: namespace $NS is still there"
    if ((code == 0)); then
        say "PASS in $((SECONDS - T0)) s"
    else
        say "FAILED (exit $code) after $((SECONDS - T0)) s; dockerd's log was $RUN_DIR/dockerd.log"
    fi
    printf '%s\n' "${TIMES[@]}"
}

# ---------------------------------------------------------------------------------- set up
say "packages"
need=()
command -v dockerd > /dev/null || need+=(docker.io)
command -v docker-compose > /dev/null || need+=(docker-compose)
command -v debootstrap > /dev/null || need+=(debootstrap)
command -v redis-cli > /dev/null || need+=(redis-tools)
command -v nft > /dev/null || need+=(nftables)
command -v ip > /dev/null || need+=(iproute2)
if ((${#need[@]})); then
    apt-get -o DPkg::Lock::Timeout=600 install -y "${need[@]}"
fi
phase_done "packages"

say "daemon in network namespace $NS"
cleanup
trap on_exit EXIT
ip netns add $NS
ip link add $VETH_HOST type veth peer name $VETH_NS
ip link set $VETH_NS netns $NS
ip addr add $HOST_IP/30 dev $VETH_HOST
ip link set $VETH_HOST up
ip -n $NS addr add $NS_IP/30 dev $VETH_NS
ip -n $NS link set $VETH_NS up
ip -n $NS link set lo up
ip -n $NS route add default via $HOST_IP
# Builds need apt and PyPI: NAT the namespace out through the host.
cat /proc/sys/net/ipv4/ip_forward > /run/sdbdk.ip_forward
echo 1 > /proc/sys/net/ipv4/ip_forward
nft add table ip sdbdk
nft add chain ip sdbdk postrouting '{ type nat hook postrouting priority 100; }'
nft add rule ip sdbdk postrouting ip saddr $SUBNET oifname != "$VETH_HOST" masquerade
mkdir -p "$DATA_ROOT" "$RUN_DIR"
# `ip netns exec` remounts /sys, which dockerd does not survive; nsenter only switches the net
# namespace. A containerd namespace of its own, in case the host runs a containerd of its own.
nsenter --net=/run/netns/$NS dockerd --data-root "$DATA_ROOT" --exec-root "$RUN_DIR/exec" \
    -H "unix://$SOCK" --pidfile "$RUN_DIR/dockerd.pid" \
    --containerd-namespace sdbdk --containerd-plugins-namespace sdbdk-plugins \
    > "$RUN_DIR/dockerd.log" 2>&1 &
wait_until "dockerd" docker info
docker version --format 'docker {{.Server.Version}}'
phase_done "daemon"

# ------------------------------------------------------------------------------ base image
say "base image $BASE_IMAGE"
if [[ ! -s $BASE_TAR ]]; then
    mirror=$(grep -rhoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list \
        /etc/apt/sources.list.d/ 2> /dev/null | awk '{print $2; exit}')
    mirror=${DEBIAN_MIRROR:-${mirror:-http://deb.debian.org/debian}}
    echo "debootstrap bookworm from $mirror (cached in $BASE_TAR for later runs)"
    mkdir -p "$CACHE"
    rootfs=$CACHE/rootfs.tmp
    rm -rf --one-file-system "$rootfs"
    debootstrap --variant=minbase --include=python3,python3-venv bookworm "$rootfs" "$mirror" \
        > "$CACHE/debootstrap.log" 2>&1 || fail "debootstrap failed, see $CACHE/debootstrap.log"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin \
        "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* \
        "$rootfs"/var/log/apt/* "$rootfs"/var/log/*.log
    # Where outbound TLS goes through an intercepting proxy (as here), the build's pip needs the
    # host's CA bundle: the base image carries this host's trust store, as the host's pip does.
    if [[ -s /etc/ssl/certs/ca-certificates.crt ]]; then
        install -D -m 644 /etc/ssl/certs/ca-certificates.crt \
            "$rootfs/etc/ssl/certs/ca-certificates.crt"
        printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' > "$rootfs/etc/pip.conf"
    fi
    tar -C "$rootfs" --numeric-owner -cf "$BASE_TAR.tmp" .
    mv "$BASE_TAR.tmp" "$BASE_TAR"
    rm -rf --one-file-system "$rootfs"
else
    echo "using the cached $BASE_TAR"
fi
docker import "$BASE_TAR" "$BASE_IMAGE" > /dev/null
phase_done "base image"

# ----------------------------------------------------------------------------------- image
say "build $IMAGE"
revision=$(git -C "$REPO" rev-parse HEAD 2> /dev/null || echo unknown)
docker build -f "$REPO/docker/Dockerfile" --build-arg BASE=$BASE_IMAGE \
    --build-arg REVISION="$revision" -t $IMAGE "$REPO" > "$RUN_DIR/build.log" 2>&1 ||
    { tail -30 "$RUN_DIR/build.log"; fail "docker build"; }
base_size=$(docker image inspect -f '{{.Size}}' $BASE_IMAGE)
image_size=$(docker image inspect -f '{{.Size}}' $IMAGE)
echo "image $((image_size / 1000000)) MB, base $((base_size / 1000000)) MB:" \
    "$(((image_size - base_size) / 1000000)) MB above the base"
((image_size - base_size < 200000000)) || fail "the image is 200 MB or more above its base"
[[ $(docker image inspect -f '{{.Config.User}}' $IMAGE) == sierradb ]] || fail "runs as root"
[[ $(docker image inspect -f '{{index .Config.Labels "org.opencontainers.image.revision"}}' \
    $IMAGE) == "$revision" ]] || fail "OCI labels"
if docker run --rm --entrypoint sh $IMAGE -c 'command -v gcc || command -v cc'; then
    fail "a compiler in the runtime image"
fi
echo "non-root, OCI labels, no compiler: ok"
phase_done "build"

# ------------------------------------------------------------------------------ one-liner
health() { docker inspect -f '{{.State.Health.Status}}' "$1"; }
wait_healthy() { wait_until "$1 healthy" bash -c "[[ \$(docker inspect -f '{{.State.Health.Status}}' $1) == healthy ]]"; }

say "docker run -p 9090:9090 $IMAGE"
docker run -d --name sdbdk-single -p 9090:9090 $IMAGE > /dev/null
wait_healthy sdbdk-single
echo "health: $(health sdbdk-single)"
[[ $(rcli -p 9090 PING) == PONG ]] || fail "PING"
appended=$(rcli -p 9090 EAPPEND user-123 UserCreated '{"name": "Alice"}')
echo "$appended" | sed -n 1,2p
grep -x stream_version <<< "$appended" > /dev/null || fail "EAPPEND: $appended"
has() { grep -x -- "$1" > /dev/null; }  # reads all its input (no SIGPIPE under pipefail)
rcli -p 9090 ESCAN user-123 - + | has '{"name": "Alice"}' || fail "ESCAN"
stop_start=$SECONDS
docker stop sdbdk-single > /dev/null
code=$(docker inspect -f '{{.State.ExitCode}}' sdbdk-single)
echo "docker stop: exit $code after $((SECONDS - stop_start)) s"
((code == 0)) || fail "the node did not exit 0 on SIGTERM"
log=$(docker logs sdbdk-single 2>&1)
grep "received SIGTERM" <<< "$log" > /dev/null || fail "no SIGTERM in the log"
grep "stopped cleanly" <<< "$log" > /dev/null || fail "no clean stop"
# Restarted on its volume, the event is still there.
docker start sdbdk-single > /dev/null
wait_until "restart" bash -c "[[ \$(nsenter --net=/run/netns/$NS redis-cli -p 9090 PING) == PONG ]]"
rcli -p 9090 ESCAN user-123 - + | has '{"name": "Alice"}' || fail "ESCAN after restart"
docker rm -f -v sdbdk-single > /dev/null

say "health check with SIERRA_REQUIREPASS"
docker run -d --name sdbdk-auth -e SIERRA_REQUIREPASS=s3cret -p 9093:9090 $IMAGE > /dev/null
wait_healthy sdbdk-auth
rcli -p 9093 ESVER user-123 | grep NOAUTH > /dev/null || fail "ESVER without AUTH should be refused"
[[ $(rcli -p 9093 -a s3cret --no-auth-warning PING) == PONG ]] || fail "PING with AUTH"
# The check does AUTH with SIERRA_REQUIREPASS: a wrong one makes it fail.
if docker exec -e SIERRA_REQUIREPASS=wrong sdbdk-auth python /app/healthcheck.py; then
    fail "the health check passed with a wrong password"
fi
echo "healthy with a password; clients without it get NOAUTH"
docker rm -f -v sdbdk-auth > /dev/null
phase_done "single node"

# -------------------------------------------------------------------------------- compose
say "docker-compose up (docker/compose.yaml)"
compose() { (cd "$REPO/docker" && SIERRADB_IMAGE=$IMAGE docker-compose -p sdbdk "$@"); }
compose up -d 2>&1 | grep -v '^$' || true
for port in 9090 9091 9092; do
    wait_until "node on $port in a cluster of 3" \
        bash -c "nsenter --net=/run/netns/$NS redis-cli -p $port INFO cluster | grep -q '^nodes_alive:3'"
done
rcli -p 9091 INFO cluster | grep -E '^(node_index|nodes_alive|cluster_id):'
# Nodes are up before every partition has elected its leader (TRYAGAIN until then: nothing
# was written, so retrying is safe).
wait_until "EAPPEND on 9090" bash -c "nsenter --net=/run/netns/$NS \
    redis-cli -p 9090 EAPPEND compose-stream Written '{\"via\": 9090}' | grep -qx stream_version"
wait_until "the event on 9092" \
    bash -c "nsenter --net=/run/netns/$NS redis-cli -p 9092 ESCAN compose-stream - + | grep -q 9090"
echo "written on 9090, read on 9092"
compose down -v 2>&1 | tail -1
phase_done "compose"

# ---------------------------------------------------------------------------------- swarm
say "swarm: docker/swarm/demo.sh"
docker swarm init --advertise-addr $NS_IP > /dev/null
in_ns env SIERRADB_IMAGE=$IMAGE PATH="$PATH" DOCKER_HOST="$DOCKER_HOST" \
    bash "$REPO/docker/swarm/demo.sh" || fail "the swarm demo"
docker swarm leave --force > /dev/null
phase_done "swarm demo"
