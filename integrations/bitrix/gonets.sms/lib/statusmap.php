<?php
namespace Gonets\Sms;

/**
 * The one table from Gonets statuses to Bitrix: the messageservice status constant
 * (\Bitrix\MessageService\MessageStatus) and its meaning for the shop: success, failure or
 * still pending.
 *
 *   Gonets     Bitrix MessageStatus   semantic
 *   queued     QUEUED                 pending
 *   deferred   QUEUED                 pending   (held by a provider rule; it will go)
 *   submitted  SENT                   pending
 *   delivered  DELIVERED              success
 *   failed     UNDELIVERED            failure
 *   expired    UNDELIVERED            failure
 *   rejected   FAILED                 failure
 *   unknown    SENT                   pending   (the provider can no longer say)
 */
class StatusMap
{
    public const SEMANTIC_SUCCESS = 'success';
    public const SEMANTIC_FAILURE = 'failure';
    public const SEMANTIC_PENDING = 'pending';

    public const TABLE = [
        'queued' => ['QUEUED', self::SEMANTIC_PENDING],
        'deferred' => ['QUEUED', self::SEMANTIC_PENDING],
        'submitted' => ['SENT', self::SEMANTIC_PENDING],
        'delivered' => ['DELIVERED', self::SEMANTIC_SUCCESS],
        'failed' => ['UNDELIVERED', self::SEMANTIC_FAILURE],
        'expired' => ['UNDELIVERED', self::SEMANTIC_FAILURE],
        'rejected' => ['FAILED', self::SEMANTIC_FAILURE],
        'unknown' => ['SENT', self::SEMANTIC_PENDING],
    ];

    public static function known(string $gonetsStatus): bool
    {
        return isset(self::TABLE[$gonetsStatus]);
    }

    /** success, failure or pending; null for a status Gonets does not have. */
    public static function semantic(string $gonetsStatus): ?string
    {
        return self::TABLE[$gonetsStatus][1] ?? null;
    }

    /** The \Bitrix\MessageService\MessageStatus constant; null for an unknown status. */
    public static function bitrixStatus(string $gonetsStatus): ?int
    {
        if (!isset(self::TABLE[$gonetsStatus])) {
            return null;
        }
        return (int)constant('\Bitrix\MessageService\MessageStatus::' . self::TABLE[$gonetsStatus][0]);
    }

    /** Whether a Bitrix status is one a message never leaves (a final one of the table). */
    public static function isFinalBitrixStatus(int $bitrixStatus): bool
    {
        foreach (self::TABLE as $gonets => [$name, $semantic]) {
            if ($semantic !== self::SEMANTIC_PENDING
                && (int)constant('\Bitrix\MessageService\MessageStatus::' . $name) === $bitrixStatus) {
                return true;
            }
        }
        return false;
    }
}
