<?php
// SierraDB from phpredis (Debian php-redis, the C extension), default settings (RESP2).
//   php examples/clients/php/phpredis.php [port]
// Consumers use EPREAD ... BLOCK (phpredis takes no pushes outside its pub/sub API).
require __DIR__ . '/scenario.php';

$port = (int)($argv[1] ?? 9090);

final class PhpRedisClient {
    private Redis $r;
    public function __construct(int $port) { $this->r = new Redis(); $this->r->connect('127.0.0.1', $port); }
    public function call(array $args) {
        try {
            $reply = $this->r->rawCommand(...$args);
        } catch (RedisException $e) {  // most error replies are thrown, with the server's text
            throw new RuntimeException($e->getMessage(), 0, $e);
        }
        if ($reply === false && ($error = $this->r->getLastError()) !== null) {
            $this->r->clearLastError();
            throw new RuntimeException($error);
        }
        return $reply;
    }
    public function pipeline(array $commands): array {
        $pipe = $this->r->multi(Redis::PIPELINE);
        foreach ($commands as $args) $pipe->rawCommand(...$args);
        return $pipe->exec();
    }
}

run_scenario(fn() => new PhpRedisClient($port), 'phpredis ' . phpversion('redis'));
