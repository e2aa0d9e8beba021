<?php
$MESS['GONETS_SMS_OPT_TAB'] = 'Settings';
$MESS['GONETS_SMS_OPT_TITLE'] = 'Connection to Gonets';
$MESS['GONETS_SMS_OPT_API_URL'] = 'Gonets API address (https://…)';
$MESS['GONETS_SMS_OPT_TOKEN'] = 'Token (gonets token create --scopes send,read,consent)';
$MESS['GONETS_SMS_OPT_DEFAULT_SENDER'] = 'Default sender name';
$MESS['GONETS_SMS_OPT_SENDERS'] = 'Other sender names (comma-separated)';
$MESS['GONETS_SMS_OPT_PROMOTIONAL'] = 'Promotional messages (only to subscribers who opted in)';
$MESS['GONETS_SMS_OPT_CALLBACK_URL'] = 'Status callback address (https://your-site/bitrix/tools/gonets.sms/callback.php)';
$MESS['GONETS_SMS_OPT_CALLBACK_SECRET'] = 'Callback signing secret (printed by gonets token create)';
$MESS['GONETS_SMS_OPT_SECRET_SET'] = 'stored; leave empty to keep it';
$MESS['GONETS_SMS_OPT_SAVE'] = 'Save';
$MESS['GONETS_SMS_OPT_CONNECTED'] = 'Gonets answers; settings saved';
$MESS['GONETS_SMS_OPT_NOT_CONNECTED'] = 'Settings saved, but Gonets does not answer:';
