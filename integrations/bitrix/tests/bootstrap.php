<?php
/**
 * Loads the gonets.sms module the way Bitrix would (include.php), on the stand-ins of the
 * Bitrix classes it uses, with its options taken from the environment the Python test that
 * starts Gonets sets (tests/test_bitrix_module.py):
 *
 *   GONETS_TEST_API_URL, GONETS_TEST_TOKEN           the API and a send,read,consent token
 *   GONETS_TEST_CALLBACK_URL, GONETS_TEST_CALLBACK_SECRET   the callback endpoint (php -S)
 *   GONETS_TEST_SMSC_URL                             the SMSC sandbox (its control route)
 *   GONETS_TEST_MESSAGE_STORE                        the stand-in message table (JSON file)
 */

define('LANGUAGE_ID', 'en');
define('GONETS_TEST_MODULE_DIR', dirname(__DIR__) . '/gonets.sms');

require_once __DIR__ . '/standins/main.php';
require_once __DIR__ . '/standins/messageservice.php';
require_once __DIR__ . '/standins/admin.php';
require_once __DIR__ . '/standins/install.php';
require_once __DIR__ . '/Support.php';
require_once GONETS_TEST_MODULE_DIR . '/include.php';

foreach (['api_url' => 'GONETS_TEST_API_URL', 'token' => 'GONETS_TEST_TOKEN',
          'callback_url' => 'GONETS_TEST_CALLBACK_URL',
          'callback_secret' => 'GONETS_TEST_CALLBACK_SECRET'] as $option => $env) {
    if (getenv($env) !== false) {
        \Bitrix\Main\Config\Option::set('gonets.sms', $option, getenv($env));
    }
}
\Bitrix\Main\Config\Option::set('gonets.sms', 'default_sender', 'Shop');
