<?php
// SierraDB from Predis (Debian php-nrk-predis, 1.1), default settings (RESP2).
//   php examples/clients/php/predis.php [port]
// Consumers use EPREAD ... BLOCK.
require __DIR__ . '/scenario.php';
require_once 'Predis/Autoloader.php';  // Debian installs it on PHP's include path
Predis\Autoloader::register();

$port = (int)($argv[1] ?? 9090);

final class PredisClient {
    private Predis\Client $r;
    public function __construct(int $port) {
        // A blocked read may wait longer than the default read timeout (5 s).
        $this->r = new Predis\Client(['port' => $port, 'read_write_timeout' => 30]);
    }
    public function call(array $args) {
        $reply = $this->r->executeRaw($args, $error);
        if ($error) throw new RuntimeException((string)$reply);
        return $reply;
    }
    public function pipeline(array $commands): array {
        return $this->r->pipeline(function ($pipe) use ($commands) {
            foreach ($commands as $args) {
                $pipe->executeCommand(Predis\Command\RawCommand::create(...$args));
            }
        });
    }
}

run_scenario(fn() => new PredisClient($port), 'predis ' . Predis\Client::VERSION);
