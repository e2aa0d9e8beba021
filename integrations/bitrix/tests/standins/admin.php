<?php
/**
 * Stand-ins for the old-core admin classes the module calls, from Bitrix's documentation
 * (dev.1c-bitrix.ru/api_help/main/reference/cadminnotify, ceventlog).  They record what they
 * are given; nothing more.
 *
 * CAdminNotify   Add($fields), DeleteByTag($tag), DeleteByModule($moduleId), TYPE_NORMAL,
 *                TYPE_ERROR
 * CEventLog      Add($fields)
 */

class CAdminNotify
{
    public const TYPE_NORMAL = 'M';
    public const TYPE_ERROR = 'E';
    /** tag => fields */
    public static $notices = [];

    public static function Add($fields)
    {
        self::$notices[$fields['TAG'] ?? count(self::$notices)] = $fields;
        return true;
    }

    public static function DeleteByTag($tag)
    {
        unset(self::$notices[$tag]);
        return true;
    }

    public static function DeleteByModule($moduleId)
    {
        foreach (self::$notices as $tag => $n) {
            if (($n['MODULE_ID'] ?? '') === $moduleId) {
                unset(self::$notices[$tag]);
            }
        }
        return true;
    }
}

class CEventLog
{
    public static $entries = [];

    public static function Add($fields)
    {
        self::$entries[] = $fields;
        return true;
    }
}
