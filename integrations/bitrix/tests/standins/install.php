<?php
/**
 * Stand-ins for what a module's install/index.php calls, from Bitrix's documentation
 * (dev.1c-bitrix.ru: CModule, \Bitrix\Main\ModuleManager, \Bitrix\Main\EventManager, CAgent,
 * CopyDirFiles, DeleteDirFilesEx).  They record the calls so a test can check the wiring
 * (which handler, which agent, which files); nothing more.
 *
 * CModule                          the base class of install/index.php
 * \Bitrix\Main\ModuleManager       isModuleInstalled($module), registerModule($module),
 *                                  unRegisterModule($module)
 * \Bitrix\Main\EventManager        getInstance(), registerEventHandler($fromModule, $event,
 *                                  $toModule, $class, $method), unRegisterEventHandler(same)
 * CAgent                           AddAgent($name, $module, $period, $interval),
 *                                  RemoveModuleAgents($module)
 * CopyDirFiles($from, $to, $rewrite, $recursive), DeleteDirFilesEx($path)
 */

namespace Bitrix\Main {
    class ModuleManager
    {
        public static $installed = ['main' => true, 'messageservice' => true];

        public static function isModuleInstalled($module)
        {
            return !empty(self::$installed[$module]);
        }

        public static function registerModule($module)
        {
            self::$installed[$module] = true;
        }

        public static function unRegisterModule($module)
        {
            unset(self::$installed[$module]);
        }
    }

    class EventManager
    {
        private static $instance;
        /** "module|event" => list of [toModule, class, method] */
        public $handlers = [];

        public static function getInstance()
        {
            return self::$instance ?: (self::$instance = new self());
        }

        public function registerEventHandler($fromModule, $event, $toModule, $class, $method)
        {
            $this->handlers["$fromModule|$event"][] = [$toModule, $class, $method];
        }

        public function unRegisterEventHandler($fromModule, $event, $toModule, $class, $method)
        {
            $this->handlers["$fromModule|$event"] = array_values(array_filter(
                $this->handlers["$fromModule|$event"] ?? [],
                function ($h) use ($toModule, $class, $method) {
                    return $h !== [$toModule, $class, $method];
                }
            ));
        }
    }
}

namespace {
    class CModule
    {
    }

    class CAgent
    {
        public static $agents = [];

        public static function AddAgent($name, $module = '', $period = 'N', $interval = 86400)
        {
            self::$agents[$name] = [$module, $period, $interval];
            return count(self::$agents);
        }

        public static function RemoveModuleAgents($module)
        {
            foreach (self::$agents as $name => [$m]) {
                if ($m === $module) {
                    unset(self::$agents[$name]);
                }
            }
        }
    }

    $GLOBALS['GONETS_TEST_FILES'] = ['copied' => [], 'deleted' => []];

    function CopyDirFiles($from, $to, $rewrite = true, $recursive = false)
    {
        $GLOBALS['GONETS_TEST_FILES']['copied'][] = [$from, $to];
        return true;
    }

    function DeleteDirFilesEx($path)
    {
        $GLOBALS['GONETS_TEST_FILES']['deleted'][] = $path;
        return true;
    }
}
