<?php
namespace Gonets\Sms;

/**
 * The messageservice sender-list event.  1C-Bitrix raises it as onGetSmsSenders
 * (\Bitrix\MessageService\Sender\SmsManager::getSenders); the provider document calls it
 * onMessageServiceSenderList, which no Bitrix version raises.  The module registers this
 * handler for onGetSmsSenders, and for the other name too so a fork that raises it also
 * finds the sender.
 */
class Events
{
    public static function onGetSmsSenders(): array
    {
        return [new Sender()];
    }
}
