<?php
use Bitrix\Main\EventManager;
use Bitrix\Main\Localization\Loc;
use Bitrix\Main\ModuleManager;

Loc::loadMessages(__FILE__);

/**
 * Installs gonets.sms: registers the module, the sender-list event handlers, the consent
 * handlers, the account-alert agent, and copies the callback endpoint to
 * /bitrix/tools/gonets.sms/.
 */
class gonets_sms extends CModule
{
    public $MODULE_ID = 'gonets.sms';
    public $MODULE_VERSION;
    public $MODULE_VERSION_DATE;
    public $MODULE_NAME;
    public $MODULE_DESCRIPTION;
    public $PARTNER_NAME = 'Gonets';
    public $PARTNER_URI = 'https://github.com/gonets';

    /** [module, event, handler class, handler method] */
    private const EVENTS = [
        ['messageservice', 'onGetSmsSenders', '\Gonets\Sms\Events', 'onGetSmsSenders'],
        // the provider document's name for the same event; no Bitrix we know raises it
        ['messageservice', 'onMessageServiceSenderList', '\Gonets\Sms\Events', 'onGetSmsSenders'],
        ['main', 'OnAfterUserAdd', '\Gonets\Sms\Consent', 'onAfterUserAdd'],
        ['main', 'OnAfterUserUpdate', '\Gonets\Sms\Consent', 'onAfterUserUpdate'],
    ];
    private const AGENT = '\Gonets\Sms\Alerts::agent();';

    public function __construct()
    {
        $arModuleVersion = [];
        include __DIR__ . '/version.php';
        $this->MODULE_VERSION = $arModuleVersion['VERSION'];
        $this->MODULE_VERSION_DATE = $arModuleVersion['VERSION_DATE'];
        $this->MODULE_NAME = Loc::getMessage('GONETS_SMS_MODULE_NAME');
        $this->MODULE_DESCRIPTION = Loc::getMessage('GONETS_SMS_MODULE_DESCRIPTION');
    }

    public function DoInstall()
    {
        global $APPLICATION;
        if (!ModuleManager::isModuleInstalled('messageservice')) {
            $APPLICATION->ThrowException(Loc::getMessage('GONETS_SMS_NEEDS_MESSAGESERVICE'));
            return false;
        }
        ModuleManager::registerModule($this->MODULE_ID);
        $events = EventManager::getInstance();
        foreach (self::EVENTS as [$module, $event, $class, $method]) {
            $events->registerEventHandler($module, $event, $this->MODULE_ID, $class, $method);
        }
        \CAgent::AddAgent(self::AGENT, $this->MODULE_ID, 'N', 300);
        CopyDirFiles(__DIR__ . '/tools', $_SERVER['DOCUMENT_ROOT'] . '/bitrix/tools/' . $this->MODULE_ID, true, true);
        return true;
    }

    public function DoUninstall()
    {
        $events = EventManager::getInstance();
        foreach (self::EVENTS as [$module, $event, $class, $method]) {
            $events->unRegisterEventHandler($module, $event, $this->MODULE_ID, $class, $method);
        }
        \CAgent::RemoveModuleAgents($this->MODULE_ID);
        \CAdminNotify::DeleteByModule($this->MODULE_ID);
        DeleteDirFilesEx('/bitrix/tools/' . $this->MODULE_ID);
        // the token and secrets go with the module
        \Bitrix\Main\Config\Option::delete($this->MODULE_ID);
        ModuleManager::unRegisterModule($this->MODULE_ID);
        return true;
    }
}
