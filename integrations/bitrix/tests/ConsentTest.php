<?php
namespace Gonets\Sms\Tests;

use Bitrix\Main\Config\Option;
use Gonets\Sms\Consent;
use Gonets\Sms\Sender;
use PHPUnit\Framework\TestCase;

/** Promotional SMS need the subscriber's opt-in; UF_SMS_CONSENT drives Gonets' record. */
final class ConsentTest extends TestCase
{
    protected function setUp(): void
    {
        Option::set('gonets.sms', 'promotional', 'Y');
    }

    protected function tearDown(): void
    {
        Option::set('gonets.sms', 'promotional', 'N');
    }

    public function testPromotionalSmsFollowTheConsentFlag(): void
    {
        $phone = Support::phone();
        $sms = function () use ($phone) {
            return (new Sender())->sendMessage(['ID' => random_int(1, PHP_INT_MAX), 'MESSAGE_TO' => $phone,
                                                'MESSAGE_BODY' => 'Sale -20% ' . uniqid()]);
        };
        $refused = $sms();
        $this->assertFalse($refused->isSuccess());
        $this->assertSame('to', $refused->getErrors()[0]->getCode());
        $this->assertStringContainsString('opted in', $refused->getErrorMessages()[0]);

        $fields = ['ID' => 42, 'PERSONAL_MOBILE' => $phone, 'UF_SMS_CONSENT' => '1'];
        Consent::onAfterUserUpdate($fields);
        $this->assertTrue($sms()->isSuccess());

        $fields = ['ID' => 42, 'PERSONAL_MOBILE' => $phone, 'UF_SMS_CONSENT' => '0'];
        Consent::onAfterUserUpdate($fields);
        $this->assertFalse($sms()->isSuccess());

        // transactional messages (order statuses, codes) need no consent
        Option::set('gonets.sms', 'promotional', 'N');
        $this->assertTrue($sms()->isSuccess());
    }

    public function testAUserUpdateWithoutTheFlagTouchesNothing(): void
    {
        $fields = ['ID' => 43, 'PERSONAL_MOBILE' => '+3752', 'NAME' => 'x'];
        Consent::onAfterUserUpdate($fields);  // no UF_SMS_CONSENT: no call (the number is bad anyway)
        $this->assertSame([], \CEventLog::$entries);
        $fields['UF_SMS_CONSENT'] = '1';
        Consent::onAfterUserUpdate($fields);  // Gonets refuses the number: logged, not thrown
        $this->assertSame('GONETS_SMS_CONSENT', \CEventLog::$entries[0]['AUDIT_TYPE_ID']);
    }
}
