<?php
/**
 * Stand-ins for the parts of 1C-Bitrix's messageservice module the gonets.sms module uses,
 * written from Bitrix's public documentation (dev.1c-bitrix.ru/api_d7/bitrix/messageservice:
 * SmsManager, Message; the sender base class and its results).  No behaviour the module
 * relies on for correctness: declarations, getters/setters, and storage.
 *
 * \Bitrix\MessageService\MessageType            SMS
 * \Bitrix\MessageService\MessageStatus          the status constants and SEMANTIC_PROCESS,
 *                                                SEMANTIC_SUCCESS, SEMANTIC_FAILURE (values as
 *                                                in messageservice's lib/messagestatus.php;
 *                                                the module refers to them by name only)
 * \Bitrix\MessageService\Sender\Base            the abstract sender: getId(), getName(),
 *                                                getShortName(), canUse(), getFromList(),
 *                                                sendMessage(array), and isSupported(),
 *                                                getType(), isConfigurable(), resolveStatus()
 * \Bitrix\MessageService\Sender\Result\SendMessage     setId/getId, setExternalId/getExternalId,
 *                                                      setStatus/getStatus (+ Main\Result)
 * \Bitrix\MessageService\Sender\Result\MessageStatus   setId/getId, setExternalId/getExternalId,
 *                                                      setStatusCode/getStatusCode,
 *                                                      setStatusText/getStatusText
 * \Bitrix\MessageService\Message                loadByExternalId($senderId, $externalId),
 *                                                getStatusId(), updateStatus($statusId): the
 *                                                b_messageservice_message table is a JSON file
 *                                                (GONETS_TEST_MESSAGE_STORE) so the callback
 *                                                endpoint's process and the tests share it;
 *                                                saveForTest()/statusForTest() stand for Bitrix
 *                                                saving a sent message.
 */

namespace Bitrix\MessageService {
    class MessageType
    {
        public const SMS = 'SMS';
    }

    class MessageStatus
    {
        // local queue statuses
        public const PENDING = 0;
        public const ERROR = 1;
        public const EXCEPTION = 2;
        public const DEFERRED = 3;
        // external service statuses
        public const ACCEPTED = 10;
        public const QUEUED = 11;
        public const SENDING = 12;
        public const SENT = 13;
        public const DELIVERED = 14;
        public const UNDELIVERED = 15;
        public const FAILED = 16;
        public const READ = 17;
        public const SEMANTIC_PROCESS = 'process';
        public const SEMANTIC_SUCCESS = 'success';
        public const SEMANTIC_FAILURE = 'failure';
    }

    class Message
    {
        private $senderId;
        private $externalId;
        private $statusId;

        private function __construct($senderId, $externalId, $statusId)
        {
            $this->senderId = $senderId;
            $this->externalId = $externalId;
            $this->statusId = $statusId;
        }

        private static function withTable(callable $fn)
        {
            $path = getenv('GONETS_TEST_MESSAGE_STORE');
            $fh = fopen($path, 'c+');
            flock($fh, LOCK_EX);
            $raw = stream_get_contents($fh);
            $table = $raw ? json_decode($raw, true) : [];
            $out = $fn($table);
            ftruncate($fh, 0);
            rewind($fh);
            fwrite($fh, json_encode($table));
            flock($fh, LOCK_UN);
            fclose($fh);
            return $out;
        }

        public static function loadByExternalId($senderId, $externalId)
        {
            return self::withTable(function (array &$table) use ($senderId, $externalId) {
                $key = $senderId . '|' . $externalId;
                return isset($table[$key]) ? new Message($senderId, $externalId, $table[$key]) : null;
            });
        }

        public function getStatusId()
        {
            return $this->statusId;
        }

        public function updateStatus($statusId)
        {
            $this->statusId = $statusId;
            $key = $this->senderId . '|' . $this->externalId;
            return self::withTable(function (array &$table) use ($key, $statusId) {
                $table[$key] = $statusId;
                return true;
            });
        }

        public static function saveForTest($senderId, $externalId, $statusId)
        {
            self::withTable(function (array &$table) use ($senderId, $externalId, $statusId) {
                $table[$senderId . '|' . $externalId] = $statusId;
            });
        }

        public static function statusForTest($senderId, $externalId)
        {
            $m = self::loadByExternalId($senderId, $externalId);
            return $m ? $m->getStatusId() : null;
        }
    }
}

namespace Bitrix\MessageService\Sender {
    abstract class Base
    {
        public static function isSupported()
        {
            return true;
        }

        public function isConfigurable()
        {
            return false;
        }

        public function getType()
        {
            return \Bitrix\MessageService\MessageType::SMS;
        }

        abstract public function getId();

        abstract public function getName();

        abstract public function getShortName();

        abstract public function canUse();

        abstract public function getFromList();

        abstract public function sendMessage(array $messageFields);

        public static function resolveStatus($serviceStatus)
        {
            return null;
        }
    }
}

namespace Bitrix\MessageService\Sender\Result {
    class SendMessage extends \Bitrix\Main\Result
    {
        protected $id;
        protected $externalId;
        protected $status;

        public function setId($id)
        {
            $this->id = (string)$id;
            return $this;
        }

        public function getId()
        {
            return $this->id;
        }

        public function setExternalId($externalId)
        {
            $this->externalId = $externalId;
            return $this;
        }

        public function getExternalId()
        {
            return $this->externalId;
        }

        public function setStatus($status)
        {
            $this->status = $status;
            return $this;
        }

        public function getStatus()
        {
            return $this->status;
        }
    }

    class MessageStatus extends \Bitrix\Main\Result
    {
        protected $id;
        protected $externalId;
        protected $statusCode;
        protected $statusText;

        public function setId($id)
        {
            $this->id = (string)$id;
            return $this;
        }

        public function getId()
        {
            return $this->id;
        }

        public function setExternalId($externalId)
        {
            $this->externalId = $externalId;
            return $this;
        }

        public function getExternalId()
        {
            return $this->externalId;
        }

        public function setStatusCode($statusCode)
        {
            $this->statusCode = $statusCode;
            return $this;
        }

        public function getStatusCode()
        {
            return $this->statusCode;
        }

        public function setStatusText($statusText)
        {
            $this->statusText = $statusText;
            return $this;
        }

        public function getStatusText()
        {
            return $this->statusText;
        }
    }
}
