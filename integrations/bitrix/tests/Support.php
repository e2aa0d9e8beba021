<?php
namespace Gonets\Sms\Tests;

/** What the tests share: the sandbox's control route and polling until something holds. */
final class Support
{
    public static function sandbox(array $control): void
    {
        $ch = curl_init(rtrim((string)getenv('GONETS_TEST_SMSC_URL'), '/') . '/_sandbox/control');
        curl_setopt_array($ch, [CURLOPT_POST => true, CURLOPT_RETURNTRANSFER => true,
            CURLOPT_POSTFIELDS => json_encode($control),
            CURLOPT_HTTPHEADER => ['Content-Type: application/json']]);
        curl_exec($ch);
        $status = curl_getinfo($ch, CURLINFO_RESPONSE_CODE);
        curl_close($ch);
        if ($status !== 200) {
            throw new \RuntimeException("sandbox control answered $status");
        }
    }

    /** Poll $probe until it returns non-null; fail after $timeoutS. */
    public static function until(callable $probe, float $timeoutS, string $what)
    {
        $deadline = microtime(true) + $timeoutS;
        do {
            $got = $probe();
            if ($got !== null) {
                return $got;
            }
            usleep(100000);
        } while (microtime(true) < $deadline);
        throw new \RuntimeException("timed out after {$timeoutS}s waiting for $what");
    }

    /** A number no other test of this run uses: +375 29 1xx xx xx (an allocated range). */
    public static function phone(): string
    {
        static $n = 0;
        $n++;
        return '+375291' . sprintf('%03d', getmypid() % 1000) . sprintf('%03d', $n);
    }

    public static function post(string $url, string $body, array $headers): int
    {
        $ch = curl_init($url);
        curl_setopt_array($ch, [CURLOPT_POST => true, CURLOPT_RETURNTRANSFER => true,
            CURLOPT_POSTFIELDS => $body, CURLOPT_HTTPHEADER => $headers]);
        curl_exec($ch);
        $status = (int)curl_getinfo($ch, CURLINFO_RESPONSE_CODE);
        curl_close($ch);
        return $status;
    }
}
