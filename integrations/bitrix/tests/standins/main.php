<?php
/**
 * Stand-ins for the parts of 1C-Bitrix's main module the gonets.sms module calls, written
 * from Bitrix's public D7 documentation (dev.1c-bitrix.ru/api_d7).  Only bookkeeping: no
 * behaviour the module relies on for correctness.
 *
 * \Bitrix\Main\Error                    __construct($message, $code = 0), getMessage(), getCode()
 * \Bitrix\Main\Result                   isSuccess(), addError(), getErrors(), getErrorMessages(),
 *                                        setData(), getData()
 * \Bitrix\Main\Config\Option            get($module, $name, $default = ''), set($module, $name,
 *                                        $value), delete($module, $filter = [])  (in memory)
 * \Bitrix\Main\Localization\Loc         loadMessages($file), getMessage($code, $replace = null)
 *                                        (lang/<LANGUAGE_ID>/ beside the file's module path)
 * \Bitrix\Main\Loader                   includeModule($module), registerAutoLoadClasses($module,
 *                                        $classes) (the module directory is GONETS_TEST_MODULE_DIR)
 */

namespace Bitrix\Main {
    class Error
    {
        protected $message;
        protected $code;

        public function __construct($message, $code = 0)
        {
            $this->message = (string)$message;
            $this->code = $code;
        }

        public function getMessage()
        {
            return $this->message;
        }

        public function getCode()
        {
            return $this->code;
        }
    }

    class Result
    {
        protected $errors = [];
        protected $data = [];

        public function isSuccess()
        {
            return !$this->errors;
        }

        public function addError(Error $error)
        {
            $this->errors[] = $error;
            return $this;
        }

        public function getErrors()
        {
            return $this->errors;
        }

        public function getErrorMessages()
        {
            return array_map(function (Error $e) { return $e->getMessage(); }, $this->errors);
        }

        public function setData(array $data)
        {
            $this->data = $data;
            return $this;
        }

        public function getData()
        {
            return $this->data;
        }
    }

    class Loader
    {
        public static function includeModule($module)
        {
            return true;
        }

        public static function registerAutoLoadClasses($module, array $classes)
        {
            $map = [];
            foreach ($classes as $class => $file) {
                $map[strtolower(ltrim($class, '\\'))] = GONETS_TEST_MODULE_DIR . '/' . $file;
            }
            spl_autoload_register(function ($class) use ($map) {
                $key = strtolower(ltrim($class, '\\'));
                if (isset($map[$key])) {
                    require_once $map[$key];
                }
            });
        }
    }
}

namespace Bitrix\Main\Config {
    class Option
    {
        public static $values = [];

        public static function get($module, $name, $default = '')
        {
            return self::$values[$module][$name] ?? $default;
        }

        public static function set($module, $name, $value = '')
        {
            self::$values[$module][$name] = (string)$value;
        }

        public static function delete($module, array $filter = [])
        {
            if (isset($filter['name'])) {
                unset(self::$values[$module][$filter['name']]);
            } else {
                unset(self::$values[$module]);
            }
        }
    }
}

namespace Bitrix\Main\Localization {
    class Loc
    {
        private static $messages = [];

        public static function loadMessages($file)
        {
            $root = GONETS_TEST_MODULE_DIR;
            $relative = substr(realpath($file), strlen(realpath($root)));
            $langFile = $root . '/lang/' . LANGUAGE_ID . $relative;
            if (is_file($langFile)) {
                $MESS = [];
                include $langFile;
                self::$messages = array_merge(self::$messages, $MESS);
            }
        }

        public static function getMessage($code, $replace = null)
        {
            $text = self::$messages[$code] ?? null;
            if ($text !== null && is_array($replace)) {
                $text = strtr($text, $replace);
            }
            return $text;
        }
    }
}
