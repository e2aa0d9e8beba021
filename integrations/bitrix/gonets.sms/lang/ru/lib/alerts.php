<?php
$MESS['GONETS_SMS_ALERT_TITLE'] = 'Gonets SMS, аккаунт #ACCOUNT#';
$MESS['GONETS_SMS_ALERT_NO_FUNDS'] = 'недостаточно средств у провайдера, отправка приостановлена; пополните счёт';
$MESS['GONETS_SMS_ALERT_LOW_BALANCE'] = 'баланс ниже порога; пополните счёт';
$MESS['GONETS_SMS_ALERT_SENDER'] = 'имя отправителя не зарегистрировано у провайдера';
$MESS['GONETS_SMS_ALERT_CREDENTIALS'] = 'провайдер не принимает учётные данные аккаунта';
$MESS['GONETS_SMS_ALERT_IP'] = 'провайдер не принимает запросы с IP-адреса сервера';
$MESS['GONETS_SMS_ALERT_FORBIDDEN'] = 'провайдер не принимает запросы с IP-адреса сервера';
$MESS['GONETS_SMS_ALERT_SERVICE_OFF'] = 'провайдер отключил услугу для аккаунта';
