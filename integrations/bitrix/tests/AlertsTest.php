<?php
namespace Gonets\Sms\Tests;

use Gonets\Sms\Alerts;
use Gonets\Sms\Sender;
use PHPUnit\Framework\TestCase;

/** Runs last: it makes the sandbox account run out of funds, then recovers it. */
final class AlertsTest extends TestCase
{
    public function testAnAccountOutOfFundsShowsInTheAdminPanelUntilItRecovers(): void
    {
        \CAdminNotify::$notices = [];
        $this->assertSame('\Gonets\Sms\Alerts::agent();', Alerts::agent());
        $this->assertSame([], \CAdminNotify::$notices);

        Support::sandbox(['force_error' => ['send' => [3, 1000]]]);  // SMSC 3: no funds
        $r = (new Sender())->sendMessage(['ID' => 99001, 'MESSAGE_TO' => Support::phone(),
                                          'MESSAGE_BODY' => 'funds? ' . uniqid()]);
        $this->assertTrue($r->isSuccess());  // queued: it waits for the account, not lost
        $tags = Support::until(function () {
            $tags = Alerts::refresh();
            return $tags ?: null;
        }, 60, 'the no-funds alert');
        $this->assertSame(['gonets_sms:smsc:no_funds'], $tags);
        $notice = \CAdminNotify::$notices['gonets_sms:smsc:no_funds'];
        $this->assertSame(\CAdminNotify::TYPE_ERROR, $notice['NOTIFY_TYPE']);
        $this->assertSame('gonets.sms', $notice['MODULE_ID']);
        $this->assertStringContainsString('account smsc', $notice['MESSAGE']);
        $this->assertStringContainsString('out of funds', $notice['MESSAGE']);

        Support::sandbox(['force_error' => ['send' => [3, 0]]]);  // topped up
        Support::until(function () {
            return Alerts::refresh() === [] ? true : null;
        }, 60, 'the alert to clear');
        $this->assertSame([], \CAdminNotify::$notices);
    }
}
