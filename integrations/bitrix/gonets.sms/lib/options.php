<?php
namespace Gonets\Sms;

use Bitrix\Main\Config\Option;

/**
 * The module's settings (Settings -> Module settings -> Gonets SMS), kept in b_option through
 * \Bitrix\Main\Config\Option: never in files under version control.
 */
class Options
{
    public const MODULE_ID = 'gonets.sms';

    public static function get(string $name, string $default = ''): string
    {
        return (string)Option::get(self::MODULE_ID, $name, $default);
    }

    public static function set(string $name, string $value): void
    {
        Option::set(self::MODULE_ID, $name, $value);
    }

    /** Gonets API address without a trailing slash, e.g. https://sms.example.by */
    public static function apiUrl(): string
    {
        return rtrim(trim(self::get('api_url')), '/');
    }

    /** The producer token (gonets token create --scopes send,read,consent). */
    public static function token(): string
    {
        return trim(self::get('token'));
    }

    public static function defaultSender(): string
    {
        return trim(self::get('default_sender'));
    }

    /** Sender names the shop may choose from (comma-separated), the default first. */
    public static function senders(): array
    {
        $names = array_filter(array_map('trim', explode(',', self::get('senders'))));
        $default = self::defaultSender();
        if ($default !== '') {
            array_unshift($names, $default);
        }
        return array_values(array_unique($names));
    }

    public static function promotional(): bool
    {
        return self::get('promotional', 'N') === 'Y';
    }

    /** Public address of /bitrix/tools/gonets.sms/callback.php, or '' (no callbacks). */
    public static function callbackUrl(): string
    {
        return trim(self::get('callback_url'));
    }

    /** The producer's callback secret (printed by gonets token create). */
    public static function callbackSecret(): string
    {
        return trim(self::get('callback_secret'));
    }

    public static function client(): Client
    {
        return new Client(self::apiUrl(), self::token());
    }
}
