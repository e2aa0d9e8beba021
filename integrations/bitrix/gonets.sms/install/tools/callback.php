<?php
/**
 * Gonets status callbacks: copied to /bitrix/tools/gonets.sms/callback.php on install; set
 * its public https address as the callback URL in the module's settings.
 */
define('NO_KEEP_STATISTIC', true);
define('NO_AGENT_STATISTIC', 'Y');
define('NOT_CHECK_PERMISSIONS', true);
define('DisableEventsCheck', true);
define('BX_SECURITY_SESSION_READONLY', true);

require_once $_SERVER['DOCUMENT_ROOT'] . '/bitrix/modules/main/include/prolog_before.php';

if (!\Bitrix\Main\Loader::includeModule('messageservice')
    || !\Bitrix\Main\Loader::includeModule('gonets.sms')) {
    http_response_code(503);
    exit;
}
\Gonets\Sms\Callback::serve();
\Bitrix\Main\Application::getInstance()->terminate();
