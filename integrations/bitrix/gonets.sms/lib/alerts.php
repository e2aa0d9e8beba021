<?php
namespace Gonets\Sms;

use Bitrix\Main\Localization\Loc;

Loc::loadMessages(__FILE__);

/**
 * Gonets' account problems in the admin panel: an agent reads GET /v1/accounts and shows
 * each alert (no funds, sender name not registered, credentials, IP, low balance) with
 * \CAdminNotify, one notice per account and alert (tag gonets_sms:<account>:<alert>), and
 * removes the notice once Gonets no longer reports it.
 */
class Alerts
{
    public const TAG_PREFIX = 'gonets_sms:';
    private const SHOWN_OPTION = 'alerts_shown';

    /** The agent (every 5 minutes); returns its own call, as agents do. */
    public static function agent(): string
    {
        try {
            self::refresh();
        } catch (ClientException $e) {
            // Gonets unreachable: keep what is shown; the next run tries again
        }
        return '\Gonets\Sms\Alerts::agent();';
    }

    /** Show current alerts, remove past ones; returns the tags shown now. */
    public static function refresh(): array
    {
        $answer = Options::client()->accounts();
        $now = [];
        foreach ($answer['items'] ?? [] as $account) {
            foreach ($account['alerts'] ?? [] as $alert) {
                $tag = self::TAG_PREFIX . $account['name'] . ':' . $alert['alert'];
                $now[$tag] = true;
                \CAdminNotify::DeleteByTag($tag);  // replace: the detail may have changed
                \CAdminNotify::Add([
                    'MESSAGE' => self::text((string)$account['name'], $alert),
                    'TAG' => $tag,
                    'MODULE_ID' => Options::MODULE_ID,
                    'ENABLE_CLOSE' => 'Y',
                    'NOTIFY_TYPE' => \CAdminNotify::TYPE_ERROR,
                ]);
            }
        }
        $shown = array_filter(explode(',', Options::get(self::SHOWN_OPTION)));
        foreach ($shown as $tag) {
            if (!isset($now[$tag])) {
                \CAdminNotify::DeleteByTag($tag);
            }
        }
        Options::set(self::SHOWN_OPTION, implode(',', array_keys($now)));
        return array_keys($now);
    }

    private static function text(string $account, array $alert): string
    {
        $what = Loc::getMessage('GONETS_SMS_ALERT_' . strtoupper((string)$alert['alert']))
            ?: (string)($alert['advice'] ?? $alert['alert']);
        $title = Loc::getMessage('GONETS_SMS_ALERT_TITLE', ['#ACCOUNT#' => $account])
            ?: "Gonets SMS, account $account";
        $code = isset($alert['code']) ? ' (' . $alert['code'] . ')' : '';
        return htmlspecialchars("$title: $what$code", ENT_QUOTES);
    }
}
