<?php
$MESS['GONETS_SMS_OPT_TAB'] = 'Настройки';
$MESS['GONETS_SMS_OPT_TITLE'] = 'Подключение к Gonets';
$MESS['GONETS_SMS_OPT_API_URL'] = 'Адрес API Gonets (https://…)';
$MESS['GONETS_SMS_OPT_TOKEN'] = 'Токен (gonets token create --scopes send,read,consent)';
$MESS['GONETS_SMS_OPT_DEFAULT_SENDER'] = 'Имя отправителя по умолчанию';
$MESS['GONETS_SMS_OPT_SENDERS'] = 'Другие имена отправителя (через запятую)';
$MESS['GONETS_SMS_OPT_PROMOTIONAL'] = 'Рекламные сообщения (только абонентам с согласием)';
$MESS['GONETS_SMS_OPT_CALLBACK_URL'] = 'Адрес для статусов (https://ваш-сайт/bitrix/tools/gonets.sms/callback.php)';
$MESS['GONETS_SMS_OPT_CALLBACK_SECRET'] = 'Секрет подписи статусов (выдаёт gonets token create)';
$MESS['GONETS_SMS_OPT_SECRET_SET'] = 'сохранён; оставьте пустым, чтобы не менять';
$MESS['GONETS_SMS_OPT_SAVE'] = 'Сохранить';
$MESS['GONETS_SMS_OPT_CONNECTED'] = 'Gonets отвечает, настройки сохранены';
$MESS['GONETS_SMS_OPT_NOT_CONNECTED'] = 'Настройки сохранены, но Gonets не отвечает:';
