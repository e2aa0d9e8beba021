<?php
namespace Gonets\Sms;

use Bitrix\MessageService\MessageStatus;

/**
 * The one table from Gonets statuses to Bitrix: the messageservice status
 * (\Bitrix\MessageService\MessageStatus) and its semantic, Bitrix's own
 * MessageStatus::SEMANTIC_SUCCESS, SEMANTIC_FAILURE or SEMANTIC_PROCESS (still under way).
 *
 *   Gonets     Bitrix MessageStatus   semantic
 *   queued     QUEUED                 process
 *   deferred   QUEUED                 process   (held by a provider rule; it will go)
 *   submitted  SENT                   process
 *   delivered  DELIVERED              success
 *   failed     UNDELIVERED            failure
 *   expired    UNDELIVERED            failure
 *   rejected   FAILED                 failure
 *   unknown    SENT                   process   (the provider can no longer say)
 */
class StatusMap
{
    public const TABLE = [
        'queued' => ['QUEUED', 'PROCESS'],
        'deferred' => ['QUEUED', 'PROCESS'],
        'submitted' => ['SENT', 'PROCESS'],
        'delivered' => ['DELIVERED', 'SUCCESS'],
        'failed' => ['UNDELIVERED', 'FAILURE'],
        'expired' => ['UNDELIVERED', 'FAILURE'],
        'rejected' => ['FAILED', 'FAILURE'],
        'unknown' => ['SENT', 'PROCESS'],
    ];

    public static function known(string $gonetsStatus): bool
    {
        return isset(self::TABLE[$gonetsStatus]);
    }

    /** MessageStatus::SEMANTIC_SUCCESS, _FAILURE or _PROCESS; null for a status Gonets lacks. */
    public static function semantic(string $gonetsStatus): ?string
    {
        if (!isset(self::TABLE[$gonetsStatus])) {
            return null;
        }
        return (string)constant(MessageStatus::class . '::SEMANTIC_' . self::TABLE[$gonetsStatus][1]);
    }

    /** The MessageStatus constant; null for a status Gonets does not have. */
    public static function bitrixStatus(string $gonetsStatus): ?int
    {
        if (!isset(self::TABLE[$gonetsStatus])) {
            return null;
        }
        return (int)constant(MessageStatus::class . '::' . self::TABLE[$gonetsStatus][0]);
    }

    /** Whether a Bitrix status is one a message never leaves (a final one of the table). */
    public static function isFinalBitrixStatus(int $bitrixStatus): bool
    {
        foreach (self::TABLE as [$name, $semantic]) {
            if ($semantic !== 'PROCESS' && (int)constant(MessageStatus::class . '::' . $name) === $bitrixStatus) {
                return true;
            }
        }
        return false;
    }
}
