<?php
// The scenario every PHP client runs (phpredis.php, predis.php): each passes a $client with
// call(array $args) (throws RuntimeException with the server's error text), pipeline(array of
// arg arrays) and connect() (a new connection of the same kind).
function as_map(array $flat): array {
    $m = [];
    for ($i = 0; $i < count($flat); $i += 2) $m[$flat[$i]] = $flat[$i + 1];
    return $m;
}
function check(bool $ok, string $what): void { if (!$ok) { fwrite(STDERR, "failed: $what\n"); exit(1); } }

function run_scenario(callable $connect, string $name): void {
    $r = $connect();
    $stream = 'account-' . bin2hex(random_bytes(4));

    // Append with an expected version; a conflict's error code reaches the caller.
    $opened = as_map($r->call(['EAPPEND', $stream, 'Opened', 'PAYLOAD', '{"owner":"ann"}',
                               'EXPECTED_VERSION', 'empty']));
    $r->call(['EAPPEND', $stream, 'Deposited', 'PAYLOAD', '{"amount":10}', 'EXPECTED_VERSION', '0']);
    try {
        $r->call(['EAPPEND', $stream, 'Deposited', 'EXPECTED_VERSION', '0']);
        check(false, 'a stale expected version was accepted');
    } catch (RuntimeException $e) {
        check(str_starts_with($e->getMessage(), 'WRONGVER'), $e->getMessage());
    }
    $partition = $opened['partition_id'];

    // Several events in one partition, atomically.
    $multi = as_map($r->call(['EMAPPEND', $opened['partition_key'], $stream, 'A', $stream, 'B']));
    check(array_map(fn($e) => as_map($e)['stream_version'], $multi['events']) === [2, 3], 'EMAPPEND');

    // Read back by stream, by partition and by event id.
    $all = array_map('as_map', as_map($r->call(['ESCAN', $stream, '-', '+']))['events']);
    check(array_column($all, 'event_name') === ['Opened', 'Deposited', 'A', 'B'], 'ESCAN');
    $seq = $opened['partition_sequence'];
    $byPartition = as_map($r->call(['EPSCAN', "$partition", "$seq", "$seq"]))['events'];
    check(as_map($byPartition[0])['event_id'] === $opened['event_id'], 'EPSCAN');
    check(as_map($r->call(['EGET', $opened['event_id']]))['event_name'] === 'Opened', 'EGET');

    // Page to the end.
    $versions = [];
    for ($start = 0; ;) {
        $page = as_map($r->call(['ESCAN', $stream, "$start", '+', 'COUNT', '3']));
        $got = array_map(fn($e) => as_map($e)['stream_version'], $page['events']);
        array_push($versions, ...$got);
        if ($page['has_more'] == 0) break;
        $start = end($got) + 1;
    }
    check($versions === [0, 1, 2, 3], 'paging');

    // 50 pipelined appends.
    $piped = $r->pipeline(array_map(fn($i) => ['EAPPEND', $stream, 'Piped', 'PAYLOAD', "$i"], range(0, 49)));
    check(array_map(fn($x) => as_map($x)['stream_version'], $piped) === range(4, 53), 'pipeline');

    // Binary payload round trip.
    $blob = implode('', array_map(fn($i) => chr($i % 256), range(0, 1023)));
    $stored = as_map($r->call(['EAPPEND', $stream, 'Blob', 'PAYLOAD', $blob]));
    check(as_map($r->call(['EGET', $stored['event_id']]))['payload'] === $blob, 'binary payload');

    // A consumer follows the partition from sequence 0 into live events while another process
    // appends; every event once, in order. PHP has no threads: the writer is a forked child.
    $live = 30;
    $pid = pcntl_fork();
    if ($pid === 0) {
        $w = $connect();
        for ($i = 0; $i < $live; $i++) $w->call(['EAPPEND', $stream, 'Live', 'PAYLOAD', "$i"]);
        exit(0);
    }
    $consumer = $connect();  // a blocked read holds its connection
    $seen = [];
    $position = 0;
    $writerDone = false;
    while (true) {
        if (!$writerDone && pcntl_waitpid($pid, $status, WNOHANG) === $pid) {
            check(pcntl_wexitstatus($status) === 0, 'writer');
            $writerDone = true;
        }
        if ($writerDone && $position > $r->call(['EPSEQ', "$partition"])) break;
        $reply = $consumer->call(['EPREAD', 'COUNT', '100', 'BLOCK', '2000', 'FROM', "$partition", "$position"]);
        foreach (as_map($reply) as $part) {
            foreach (as_map($part)['events'] as $e) {
                $event = as_map($e);
                check($event['partition_sequence'] === $position, 'in order');
                $seen[] = $event;
                $position++;
            }
        }
    }
    $mine = array_values(array_filter($seen, fn($e) => $e['stream_id'] === $stream));
    check(array_column($mine, 'stream_version') === range(0, count($mine) - 1), 'every version once');
    $liveSeen = array_column(array_values(array_filter($mine, fn($e) => $e['event_name'] === 'Live')), 'payload');
    check($liveSeen === array_map('strval', range(0, $live - 1)), 'live events');
    echo "OK $name\n";
}
