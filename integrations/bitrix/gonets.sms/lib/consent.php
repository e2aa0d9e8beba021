<?php
namespace Gonets\Sms;

/**
 * Promotional SMS go only to subscribers who opted in.  The shop keeps the opt-in in the
 * user field UF_SMS_CONSENT; this keeps Gonets' consent record in step with it
 * (PUT /v1/consents/{phone} when set, DELETE when cleared), so Gonets refuses a promotional
 * SMS to a number without consent even if a template forgets to check.
 */
class Consent
{
    /** Record the number's opt-in (true) or opt-out (false) at Gonets. */
    public static function sync(string $phone, bool $granted, string $source): void
    {
        $client = Options::client();
        if ($granted) {
            $client->grantConsent($phone, $source);
        } else {
            $client->withdrawConsent($phone, $source);
        }
    }

    /** main: OnAfterUserAdd / OnAfterUserUpdate. */
    public static function onAfterUserUpdate(&$fields): void
    {
        if (!is_array($fields) || !array_key_exists('UF_SMS_CONSENT', $fields)) {
            return;
        }
        $phone = trim((string)($fields['PERSONAL_MOBILE'] ?? ''));
        if ($phone === '' && !empty($fields['ID']) && class_exists('\CUser')) {
            $user = \CUser::GetByID((int)$fields['ID'])->Fetch();
            $phone = trim((string)($user['PERSONAL_MOBILE'] ?? ''));
        }
        if ($phone === '') {
            return;
        }
        $granted = in_array($fields['UF_SMS_CONSENT'], [1, '1', 'Y', true], true);
        try {
            self::sync($phone, $granted, 'UF_SMS_CONSENT of user ' . ($fields['ID'] ?? '?'));
        } catch (ClientException $e) {
            // the flag is saved in Bitrix either way; the admin sees why Gonets did not follow
            \CEventLog::Add([
                'SEVERITY' => 'WARNING', 'AUDIT_TYPE_ID' => 'GONETS_SMS_CONSENT',
                'MODULE_ID' => Options::MODULE_ID, 'ITEM_ID' => (string)($fields['ID'] ?? ''),
                'DESCRIPTION' => $e->getMessage(),
            ]);
        }
    }

    public static function onAfterUserAdd(&$fields): void
    {
        self::onAfterUserUpdate($fields);
    }
}
