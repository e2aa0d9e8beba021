<?php
$MESS['GONETS_SMS_MODULE_NAME'] = 'Gonets SMS';
$MESS['GONETS_SMS_MODULE_DESCRIPTION'] = 'SMS through Gonets (MTS Belarus, SMSC, SMS2) with delivery statuses';
$MESS['GONETS_SMS_NEEDS_MESSAGESERVICE'] = 'The Message services module (messageservice) is required';
