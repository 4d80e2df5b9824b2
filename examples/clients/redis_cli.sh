#!/usr/bin/env bash
# SierraDB from redis-cli, default settings (RESP2; output not to a terminal is --raw, one line
# per value, nested arrays flattened).
#   bash examples/clients/redis_cli.sh [port]
# The consumer uses EPREAD ... BLOCK (redis-cli shows pushes, but a script cannot answer them).
set -euo pipefail
PORT=${1:-9090}
cli() { redis-cli -p "$PORT" "$@"; }
fail() { echo "failed: $*" >&2; exit 1; }
# The values that follow each line equal to $1 in a flattened reply on stdin.
values() { awk -v k="$1" 'take { print; take = 0; next } $0 == k { take = 1 }'; }
stream=account-$RANDOM$RANDOM

# Append with an expected version; a conflict's error code reaches the caller.
opened=$(cli EAPPEND "$stream" Opened PAYLOAD '{"owner":"ann"}' EXPECTED_VERSION empty)
id=$(values event_id <<<"$opened"); key=$(values partition_key <<<"$opened")
partition=$(values partition_id <<<"$opened"); seq=$(values partition_sequence <<<"$opened")
cli EAPPEND "$stream" Deposited PAYLOAD '{"amount":10}' EXPECTED_VERSION 0 >/dev/null
conflict=$(cli EAPPEND "$stream" Deposited EXPECTED_VERSION 0)
[[ $conflict == WRONGVER* ]] || fail "conflict: $conflict"

# Several events in one partition, atomically.
[[ $(cli EMAPPEND "$key" "$stream" A "$stream" B | values stream_version | xargs) == "2 3" ]] \
  || fail EMAPPEND

# Read back by stream, by partition and by event id.
[[ $(cli ESCAN "$stream" - + | values event_name | xargs) == "Opened Deposited A B" ]] || fail ESCAN
[[ $(cli EPSCAN "$partition" "$seq" "$seq" | values event_id) == "$id" ]] || fail EPSCAN
[[ $(cli EGET "$id" | values event_name) == Opened ]] || fail EGET

# Page to the end.
versions=() start=0
while :; do
  page=$(cli ESCAN "$stream" "$start" + COUNT 3)
  got=($(values stream_version <<<"$page"))
  versions+=("${got[@]}")
  [[ $(values has_more <<<"$page") == 1 ]] || break
  start=$(( ${got[-1]} + 1 ))
done
[[ "${versions[*]}" == "0 1 2 3" ]] || fail "paging: ${versions[*]}"

# 50 pipelined appends: --pipe sends them all, then counts the replies.
piped=$(for i in $(seq 0 49); do
  printf '*5\r\n$7\r\nEAPPEND\r\n$%d\r\n%s\r\n$5\r\nPiped\r\n$7\r\nPAYLOAD\r\n$%d\r\n%s\r\n' \
    ${#stream} "$stream" ${#i} "$i"
done | cli --pipe)
[[ $piped == *"errors: 0, replies: 50"* ]] || fail "pipeline: $piped"
[[ $(cli ESVER "$stream") == 53 ]] || fail "pipeline versions"

# A consumer follows the partition from sequence 0 into live events while another connection
# appends; every event once, in order.
LIVE=30
( for i in $(seq 0 $((LIVE - 1))); do cli EAPPEND "$stream" Live PAYLOAD "$i" >/dev/null; done ) &
writer=$!
position=0 live=() writer_done=0
while :; do
  if (( ! writer_done )) && ! kill -0 "$writer" 2>/dev/null; then wait "$writer"; writer_done=1; fi
  (( writer_done )) && (( position > $(cli EPSEQ "$partition") )) && break
  reply=$(cli EPREAD COUNT 100 BLOCK 2000 FROM "$partition" "$position")
  for s in $(values partition_sequence <<<"$reply"); do
    (( s == position )) || fail "out of order: $s at $position"
    position=$((position + 1))
  done
  live+=($(awk -v s="$stream" '
    prev == "stream_id" { sid = $0 } prev == "event_name" { name = $0 }
    prev == "payload" && sid == s && name == "Live" { print }
    { prev = $0 }' <<<"$reply"))
done
[[ "${live[*]}" == "$(seq -s ' ' 0 $((LIVE - 1)))" ]] || fail "live events: ${live[*]}"

# Binary payload round trip (-x: the last argument from stdin); the payload is the reply's end.
blob=$(mktemp); trap 'rm -f "$blob"' EXIT
for i in $(seq 0 1023); do printf "\\x$(printf %02x $((i % 256)))"; done > "$blob"
stored=$(cli -x EAPPEND "$stream" Blob PAYLOAD < "$blob")
cmp -s <(cli EGET "$(values event_id <<<"$stored")" | tail -c 1025 | head -c 1024) "$blob" \
  || fail "binary payload"
echo "OK redis-cli $(redis-cli --version | cut -d' ' -f2)"
