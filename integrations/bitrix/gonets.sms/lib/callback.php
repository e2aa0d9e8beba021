<?php
namespace Gonets\Sms;

use Bitrix\MessageService\Message;

/**
 * Status callbacks from Gonets (POST /bitrix/tools/gonets.sms/callback.php): each one is
 * signed with the producer's callback secret, X-Gonets-Signature: sha256=<hex HMAC-SHA256
 * of the raw body>, and moves the message with that external id to its new status.  With
 * callbacks configured, messageservice's status agent has nothing left to poll.
 *
 * Answers: 200 applied (or older than what the message has), 401 bad or missing signature,
 * 400 not a status callback, 404 no message with that external id yet (Gonets retries, with
 * backoff, for a day: the first callback can beat Bitrix to saving the external id),
 * 503 the module has no callback secret.
 */
class Callback
{
    public static function sign(string $secret, string $body): string
    {
        return 'sha256=' . hash_hmac('sha256', $body, $secret);
    }

    /** [HTTP status, JSON body] for one callback. */
    public static function handle(string $rawBody, ?string $signature, string $secret): array
    {
        if ($secret === '') {
            return [503, ['error' => 'the module has no callback secret']];
        }
        if ($signature === null || !hash_equals(self::sign($secret, $rawBody), $signature)) {
            return [401, ['error' => 'bad signature']];
        }
        $data = json_decode($rawBody, true);
        if (!is_array($data) || ($data['type'] ?? '') !== 'sms.status'
            || !is_string($data['id'] ?? null) || !is_string($data['status'] ?? null)
            || !StatusMap::known($data['status'])) {
            return [400, ['error' => 'not an sms.status callback']];
        }
        $message = Message::loadByExternalId(Sender::ID, $data['id']);
        if (!$message) {
            return [404, ['error' => 'no message with this external id (yet)']];
        }
        $current = (int)$message->getStatusId();
        $new = StatusMap::bitrixStatus($data['status']);
        if (StatusMap::isFinalBitrixStatus($current) || $current === $new) {
            return [200, ['ok' => true, 'applied' => false]];
        }
        $message->updateStatus($new);
        return [200, ['ok' => true, 'applied' => true]];
    }

    /** The endpoint: reads the request, answers it. */
    public static function serve(): void
    {
        $raw = (string)file_get_contents('php://input');
        $signature = $_SERVER['HTTP_X_GONETS_SIGNATURE'] ?? null;
        if (($_SERVER['REQUEST_METHOD'] ?? '') !== 'POST') {
            [$code, $body] = [405, ['error' => 'POST only']];
        } else {
            [$code, $body] = self::handle($raw, $signature, Options::callbackSecret());
        }
        http_response_code($code);
        header('Content-Type: application/json');
        echo json_encode($body);
    }
}
