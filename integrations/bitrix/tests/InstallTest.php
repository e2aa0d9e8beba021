<?php
namespace Gonets\Sms\Tests;

use Bitrix\Main\EventManager;
use Bitrix\Main\ModuleManager;
use Gonets\Sms\Sender;
use PHPUnit\Framework\TestCase;

/** install/index.php wires what the rest of the module needs, and takes it all back. */
final class InstallTest extends TestCase
{
    public function testInstallRegistersTheSenderConsentAgentAndEndpointAndUninstallUndoesIt(): void
    {
        require_once dirname(__DIR__) . '/gonets.sms/install/index.php';
        $module = new \gonets_sms();
        $this->assertSame('Gonets SMS', $module->MODULE_NAME);
        $this->assertSame('1.0.0', $module->MODULE_VERSION);
        $_SERVER['DOCUMENT_ROOT'] = '/var/www';
        $this->assertTrue($module->DoInstall());
        $this->assertTrue(ModuleManager::isModuleInstalled('gonets.sms'));

        $handlers = EventManager::getInstance()->handlers;
        // the event Bitrix raises, and the provider document's name for it
        foreach (['messageservice|onGetSmsSenders', 'messageservice|onMessageServiceSenderList'] as $event) {
            [[$toModule, $class, $method]] = $handlers[$event];
            $this->assertSame('gonets.sms', $toModule);
            $senders = call_user_func([$class, $method]);
            $this->assertInstanceOf(Sender::class, $senders[0], $event);
        }
        foreach (['main|OnAfterUserAdd', 'main|OnAfterUserUpdate'] as $event) {
            [[, $class, $method]] = $handlers[$event];
            $this->assertTrue(is_callable([$class, $method]), $event);
        }
        [$agent] = array_keys(\CAgent::$agents);
        $this->assertSame(['gonets.sms', 'N', 300], \CAgent::$agents[$agent]);
        $this->assertTrue(is_callable(rtrim(rtrim($agent, ';'), '()')), $agent);
        [[$from, $to]] = $GLOBALS['GONETS_TEST_FILES']['copied'];
        $this->assertFileExists($from . '/callback.php');
        $this->assertSame('/var/www/bitrix/tools/gonets.sms', $to);

        $options = \Bitrix\Main\Config\Option::$values;
        try {
            $this->assertTrue($module->DoUninstall());
            // the token and the secrets go with the module
            $this->assertSame([], \Bitrix\Main\Config\Option::$values['gonets.sms'] ?? []);
        } finally {
            \Bitrix\Main\Config\Option::$values = $options;
        }
        $this->assertFalse(ModuleManager::isModuleInstalled('gonets.sms'));
        foreach (EventManager::getInstance()->handlers as $event => $list) {
            $this->assertSame([], $list, $event);
        }
        $this->assertSame([], \CAgent::$agents);
        $this->assertSame(['/bitrix/tools/gonets.sms'], $GLOBALS['GONETS_TEST_FILES']['deleted']);
    }
}
