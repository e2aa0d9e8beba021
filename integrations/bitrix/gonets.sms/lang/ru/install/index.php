<?php
$MESS['GONETS_SMS_MODULE_NAME'] = 'Gonets SMS';
$MESS['GONETS_SMS_MODULE_DESCRIPTION'] = 'Отправка SMS через Gonets (МТС Беларусь, SMSC, SMS2) со статусами доставки';
$MESS['GONETS_SMS_NEEDS_MESSAGESERVICE'] = 'Нужен модуль «Службы сообщений» (messageservice)';
