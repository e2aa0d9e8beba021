<?php
namespace Gonets\Sms\Tests;

use Bitrix\MessageService\Message;
use Bitrix\MessageService\MessageStatus;
use Gonets\Sms\Callback;
use Gonets\Sms\Sender;
use PHPUnit\Framework\TestCase;

/**
 * Gonets' own callbacks dispatcher POSTs signed status callbacks to the module's endpoint
 * (under php -S); the endpoint moves the message.  A forged one changes nothing.
 */
final class CallbackTest extends TestCase
{
    public function testSignedCallbacksFromGonetsMoveTheMessageToDelivered(): void
    {
        $r = (new Sender())->sendMessage(['ID' => 77001 + getmypid() % 1000, 'MESSAGE_TO' => Support::phone(),
                                          'MESSAGE_BODY' => 'Your order is on its way ' . uniqid()]);
        $this->assertTrue($r->isSuccess(), implode('; ', $r->getErrorMessages()));
        // what Bitrix does with the result: the message row keeps the external id
        Message::saveForTest(Sender::ID, $r->getExternalId(), MessageStatus::ACCEPTED);
        $final = Support::until(function () use ($r) {
            $s = Message::statusForTest(Sender::ID, $r->getExternalId());
            return $s === MessageStatus::DELIVERED ? $s : null;
        }, 60, 'the delivered callback');
        $this->assertSame(MessageStatus::DELIVERED, $final);
    }

    public function testAForgedOrUnsignedCallbackIsRefusedAndChangesNothing(): void
    {
        $external = bin2hex(random_bytes(16));
        Message::saveForTest(Sender::ID, $external, MessageStatus::SENT);
        $body = json_encode(['type' => 'sms.status', 'id' => $external, 'status' => 'failed',
                             'at' => '2026-12-03T10:00:00.000Z', 'event_id' => '1-0']);
        $url = (string)getenv('GONETS_TEST_CALLBACK_URL');
        $json = 'Content-Type: application/json';
        $this->assertSame(401, Support::post($url, $body, [$json,
            'X-Gonets-Signature: ' . Callback::sign('not the secret', $body)]));
        $this->assertSame(401, Support::post($url, $body, [$json]));
        $secret = (string)getenv('GONETS_TEST_CALLBACK_SECRET');
        $this->assertSame(401, Support::post($url, $body . ' ', [$json,
            'X-Gonets-Signature: ' . Callback::sign($secret, $body)]));  // body changed after signing
        $this->assertSame(MessageStatus::SENT, Message::statusForTest(Sender::ID, $external));
        // the same body properly signed goes through
        $this->assertSame(200, Support::post($url, $body, [$json,
            'X-Gonets-Signature: ' . Callback::sign($secret, $body)]));
        $this->assertSame(MessageStatus::UNDELIVERED, Message::statusForTest(Sender::ID, $external));
    }

    public function testACallbackNeverMovesAFinalStatusBackAndUnknownIdsAskForARetry(): void
    {
        $secret = 'k';
        $external = bin2hex(random_bytes(16));
        Message::saveForTest(Sender::ID, $external, MessageStatus::DELIVERED);
        $late = json_encode(['type' => 'sms.status', 'id' => $external, 'status' => 'submitted']);
        $this->assertSame(200, Callback::handle($late, Callback::sign($secret, $late), $secret)[0]);
        $this->assertSame(MessageStatus::DELIVERED, Message::statusForTest(Sender::ID, $external));
        $unknown = json_encode(['type' => 'sms.status', 'id' => 'nope', 'status' => 'delivered']);
        $this->assertSame(404, Callback::handle($unknown, Callback::sign($secret, $unknown), $secret)[0]);
        $bad = json_encode(['type' => 'payment.status', 'id' => $external, 'status' => 'delivered']);
        $this->assertSame(400, Callback::handle($bad, Callback::sign($secret, $bad), $secret)[0]);
        $this->assertSame(503, Callback::handle($late, Callback::sign('', $late), '')[0]);
    }
}
