<?php
/** The callback endpoint under `php -S` for the tests: what install/tools/callback.php does
 * after Bitrix's prolog, on the stand-ins. */
require __DIR__ . '/bootstrap.php';
\Gonets\Sms\Callback::serve();
