<?php
$MESS['GONETS_SMS_SENDER_NAME'] = 'Gonets SMS';
$MESS['GONETS_SMS_NO_CONSENT'] = 'Абонент не давал согласия на рекламные SMS';
