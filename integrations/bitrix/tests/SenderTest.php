<?php
namespace Gonets\Sms\Tests;

use Bitrix\Main\Config\Option;
use Bitrix\MessageService\MessageStatus;
use Gonets\Sms\Events;
use Gonets\Sms\Sender;
use Gonets\Sms\StatusMap;
use PHPUnit\Framework\TestCase;

/** The sender against a real Gonets API, worker and SMSC sandbox. */
final class SenderTest extends TestCase
{
    private static $nextId = 1000;

    private function send(array $fields): \Bitrix\MessageService\Sender\Result\SendMessage
    {
        return (new Sender())->sendMessage($fields);
    }

    private static function bitrixId(): int
    {
        return self::$nextId++ + (getmypid() % 1000) * 100000;
    }

    public function testTheSenderListEventOffersTheSenderReadyToUse(): void
    {
        $senders = Events::onGetSmsSenders();
        $this->assertCount(1, $senders);
        $this->assertInstanceOf(\Bitrix\MessageService\Sender\Base::class, $senders[0]);
        $this->assertSame('gonets', $senders[0]->getId());
        $this->assertSame('Gonets', $senders[0]->getShortName());
        $this->assertSame('Gonets SMS', $senders[0]->getName());
        $this->assertTrue($senders[0]->canUse());
        Option::set('gonets.sms', 'senders', 'Promo, Shop ,');
        $this->assertSame([['id' => 'Shop', 'name' => 'Shop'], ['id' => 'Promo', 'name' => 'Promo']],
                          $senders[0]->getFromList());
        $token = Option::get('gonets.sms', 'token');
        Option::set('gonets.sms', 'token', '');
        try {
            $this->assertFalse($senders[0]->canUse());
            $refused = $this->send(['ID' => 1, 'MESSAGE_TO' => Support::phone(), 'MESSAGE_BODY' => 'x']);
            $this->assertFalse($refused->isSuccess());
        } finally {
            Option::set('gonets.sms', 'token', $token);
        }
    }

    public function testSendReturnsTheGonetsIdAndBitrixResendsAreOneSms(): void
    {
        $id = self::bitrixId();
        $fields = ['ID' => $id, 'MESSAGE_TO' => Support::phone(), 'MESSAGE_FROM' => '',
                   'MESSAGE_BODY' => "Order #$id has been placed " . uniqid()];
        $first = $this->send($fields);
        $this->assertTrue($first->isSuccess(), implode('; ', $first->getErrorMessages()));
        $this->assertMatchesRegularExpression('/^[0-9a-f]{32}$/', $first->getExternalId());
        $this->assertSame(MessageStatus::QUEUED, $first->getStatus());
        // Bitrix sends the same message again (a timeout, a retry): the same SMS
        $again = $this->send($fields);
        $this->assertTrue($again->isSuccess());
        $this->assertSame($first->getExternalId(), $again->getExternalId());
        // another Bitrix message is another SMS
        $other = $this->send(['ID' => self::bitrixId()] + ['MESSAGE_BODY' => 'other ' . uniqid()] + $fields);
        $this->assertNotSame($first->getExternalId(), $other->getExternalId());
        // the sender name falls back to the default one
        $status = (new Sender())->getMessageStatus(['ID' => $id, 'EXTERNAL_ID' => $first->getExternalId()]);
        $this->assertTrue($status->isSuccess());
    }

    public function testABadNumberIsRefusedWithTheReason(): void
    {
        $r = $this->send(['ID' => self::bitrixId(), 'MESSAGE_TO' => '+3752', 'MESSAGE_BODY' => 'x']);
        $this->assertFalse($r->isSuccess());
        $this->assertSame('to', $r->getErrors()[0]->getCode());
    }

    /** Every final status, through a real provider round trip, lands on its semantic. */
    public function testEveryFinalStatusMapsToItsBitrixStatusAndSemantic(): void
    {
        $want = [  // SMSC's final state => [Gonets status, Bitrix status, semantic]
            1 => ['delivered', MessageStatus::DELIVERED, MessageStatus::SEMANTIC_SUCCESS],
            20 => ['failed', MessageStatus::UNDELIVERED, MessageStatus::SEMANTIC_FAILURE],
            3 => ['expired', MessageStatus::UNDELIVERED, MessageStatus::SEMANTIC_FAILURE],
            22 => ['rejected', MessageStatus::FAILED, MessageStatus::SEMANTIC_FAILURE],
        ];
        $sent = [];
        $finals = [];
        foreach ($want as $smscState => $expected) {
            $phone = Support::phone();
            $finals[ltrim($phone, '+')] = [$smscState, 0];
            $sent[$smscState] = $phone;
        }
        Support::sandbox(['final_status' => $finals]);
        $sender = new Sender();
        foreach ($sent as $smscState => $phone) {
            $r = $this->send(['ID' => self::bitrixId(), 'MESSAGE_TO' => $phone,
                              'MESSAGE_BODY' => "state $smscState " . uniqid()]);
            $this->assertTrue($r->isSuccess(), implode('; ', $r->getErrorMessages()));
            $sent[$smscState] = $r->getExternalId();
        }
        foreach ($want as $smscState => [$gonets, $bitrix, $semantic]) {
            $status = Support::until(function () use ($sender, $sent, $smscState) {
                $s = $sender->getMessageStatus(['ID' => 1, 'EXTERNAL_ID' => $sent[$smscState]]);
                $this->assertTrue($s->isSuccess(), implode('; ', $s->getErrorMessages()));
                return StatusMap::semantic($s->getStatusText()) === MessageStatus::SEMANTIC_PROCESS ? null : $s;
            }, 60, "a final status for SMSC state $smscState");
            $this->assertSame($gonets, $status->getStatusText());
            $this->assertSame($bitrix, $status->getStatusCode());
            $this->assertSame($semantic, StatusMap::semantic($status->getStatusText()));
            $this->assertSame($bitrix, Sender::resolveStatus($gonets));
        }
    }

    public function testTheTableCoversEveryGonetsStatusOnce(): void
    {
        $this->assertSame(['queued', 'deferred', 'submitted', 'delivered', 'failed', 'expired',
                           'rejected', 'unknown'], array_keys(StatusMap::TABLE));
        foreach (['queued', 'deferred', 'submitted', 'unknown'] as $underWay) {
            $this->assertSame(MessageStatus::SEMANTIC_PROCESS, StatusMap::semantic($underWay));
        }
        $this->assertNull(StatusMap::semantic('sent'));
        $this->assertNull(Sender::resolveStatus('DELIVERED'));
    }

    public function testAnUnknownExternalIdIsAnErrorNotAStatus(): void
    {
        $s = (new Sender())->getMessageStatus(['ID' => 5, 'EXTERNAL_ID' => str_repeat('0', 32)]);
        $this->assertFalse($s->isSuccess());
        $this->assertSame('GONETS_404', $s->getErrors()[0]->getCode());
    }
}
