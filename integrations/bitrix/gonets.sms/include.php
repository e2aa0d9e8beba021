<?php
/**
 * gonets.sms: Gonets as an SMS provider of 1C-Bitrix's messageservice module.
 *
 * Classes live in lib/ under \Gonets\Sms (the D7 loader finds them by name; they are also
 * listed here so the module works on loaders that do not).
 */

\Bitrix\Main\Loader::registerAutoLoadClasses('gonets.sms', [
    'Gonets\Sms\Options' => 'lib/options.php',
    'Gonets\Sms\Client' => 'lib/client.php',
    'Gonets\Sms\ClientException' => 'lib/clientexception.php',
    'Gonets\Sms\StatusMap' => 'lib/statusmap.php',
    'Gonets\Sms\Sender' => 'lib/sender.php',
    'Gonets\Sms\Callback' => 'lib/callback.php',
    'Gonets\Sms\Consent' => 'lib/consent.php',
    'Gonets\Sms\Alerts' => 'lib/alerts.php',
    'Gonets\Sms\Events' => 'lib/events.php',
]);
