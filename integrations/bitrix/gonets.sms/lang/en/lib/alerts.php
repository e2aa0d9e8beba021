<?php
$MESS['GONETS_SMS_ALERT_TITLE'] = 'Gonets SMS, account #ACCOUNT#';
$MESS['GONETS_SMS_ALERT_NO_FUNDS'] = 'the provider account is out of funds, sending is paused; top it up';
$MESS['GONETS_SMS_ALERT_LOW_BALANCE'] = 'the balance is under the alert threshold; top it up';
$MESS['GONETS_SMS_ALERT_SENDER'] = 'the sender name is not registered with the provider';
$MESS['GONETS_SMS_ALERT_CREDENTIALS'] = "the provider refuses the account's credentials";
$MESS['GONETS_SMS_ALERT_IP'] = "the provider refuses requests from this server's IP address";
$MESS['GONETS_SMS_ALERT_FORBIDDEN'] = "the provider refuses requests from this server's IP address";
$MESS['GONETS_SMS_ALERT_SERVICE_OFF'] = 'the provider has switched the service off for this account';
