<?php
$MESS['GONETS_SMS_SENDER_NAME'] = 'Gonets SMS';
$MESS['GONETS_SMS_NO_CONSENT'] = 'The subscriber has not opted in to promotional SMS';
