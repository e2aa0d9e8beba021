<?php
namespace Gonets\Sms;

use Bitrix\Main\Error;
use Bitrix\Main\Localization\Loc;
use Bitrix\MessageService\MessageStatus;
use Bitrix\MessageService\Sender\Base;
use Bitrix\MessageService\Sender\Result\MessageStatus as MessageStatusResult;
use Bitrix\MessageService\Sender\Result\SendMessage;

Loc::loadMessages(__FILE__);

/**
 * Gonets as a messageservice SMS sender: order-status SMS (sale), the CRM robot
 * "Send SMS", two-factor codes (security) all go through sendMessage().
 */
class Sender extends Base
{
    public const ID = 'gonets';
    /** two-factor codes: urgent lane, 10 minutes to live (the provider document's 5-10) */
    public const CODE_VALIDITY_MIN = 10;

    public function getId()
    {
        return self::ID;
    }

    public function getName()
    {
        return Loc::getMessage('GONETS_SMS_SENDER_NAME') ?: 'Gonets SMS';
    }

    public function getShortName()
    {
        return 'Gonets';
    }

    /** Usable once the API URL and the token are set. */
    public function canUse()
    {
        return Options::apiUrl() !== '' && Options::token() !== '';
    }

    public function getFromList()
    {
        $list = [];
        foreach (Options::senders() as $name) {
            $list[] = ['id' => $name, 'name' => $name];
        }
        return $list;
    }

    /**
     * POST /v1/sms.  The Idempotency-Key is derived from Bitrix's message id, so a message
     * Bitrix sends again (a retry after a timeout) is one SMS; the Gonets id becomes the
     * message's external id.
     */
    public function sendMessage(array $messageFields)
    {
        $result = new SendMessage();
        $headers = isset($messageFields['MESSAGE_HEADERS']) && is_array($messageFields['MESSAGE_HEADERS'])
            ? $messageFields['MESSAGE_HEADERS'] : [];
        $payload = [
            'to' => (string)($messageFields['MESSAGE_TO'] ?? ''),
            'text' => (string)($messageFields['MESSAGE_BODY'] ?? ''),
            'kind' => self::kind($headers),
        ];
        $from = trim((string)($messageFields['MESSAGE_FROM'] ?? '')) ?: Options::defaultSender();
        if ($from !== '') {
            $payload['sender'] = $from;
        }
        if (($headers['module_id'] ?? '') === 'security') {
            $payload['lane'] = 'urgent';
            $payload['validity'] = self::CODE_VALIDITY_MIN;
        }
        if (Options::callbackUrl() !== '') {
            $payload['callback_url'] = Options::callbackUrl();
        }
        $key = self::idempotencyKey($messageFields);
        try {
            $answer = Options::client()->sendSms($payload, $key);
        } catch (ClientException $e) {
            $result->addError(new Error(self::explain($e), $e->field ?: 'GONETS_' . $e->status));
            return $result;
        }
        $result->setExternalId((string)$answer['id']);
        $result->setStatus(StatusMap::bitrixStatus((string)($answer['status'] ?? 'queued')));
        return $result;
    }

    /** GET /v1/sms/{id}: the message's status now (callbacks make polling unnecessary). */
    public function getMessageStatus(array $messageFields)
    {
        $result = new MessageStatusResult();
        $result->setId($messageFields['ID'] ?? null);
        $external = (string)($messageFields['EXTERNAL_ID'] ?? '');
        $result->setExternalId($external);
        if ($external === '') {
            $result->addError(new Error('the message has no Gonets id'));
            return $result;
        }
        try {
            $answer = Options::client()->getSms($external);
        } catch (ClientException $e) {
            $result->addError(new Error(self::explain($e), 'GONETS_' . $e->status));
            return $result;
        }
        $status = (string)($answer['status'] ?? '');
        if (!StatusMap::known($status)) {
            $result->addError(new Error("Gonets answered an unknown status"));
            return $result;
        }
        $result->setStatusCode(StatusMap::bitrixStatus($status));
        $result->setStatusText($status);
        return $result;
    }

    public static function resolveStatus($serviceStatus)
    {
        return StatusMap::bitrixStatus((string)$serviceStatus);
    }

    /** promotional when the settings say so, or the message's headers do (gonets_kind). */
    private static function kind(array $headers): string
    {
        $kind = $headers['gonets_kind'] ?? (Options::promotional() ? 'promotional' : 'transactional');
        return $kind === 'promotional' ? 'promotional' : 'transactional';
    }

    private static function idempotencyKey(array $messageFields): ?string
    {
        $id = $messageFields['ID'] ?? null;
        if ($id === null || $id === '') {
            return null;  // sendDirectly() of an unsaved message: nothing to derive it from
        }
        return 'bitrix-' . $id;
    }

    private static function explain(ClientException $e): string
    {
        if ($e->status === 422 && $e->field === 'to' && stripos($e->detail, 'consent') !== false) {
            return (Loc::getMessage('GONETS_SMS_NO_CONSENT') ?: 'no opt-in consent') . ': ' . $e->detail;
        }
        return $e->getMessage();
    }
}
