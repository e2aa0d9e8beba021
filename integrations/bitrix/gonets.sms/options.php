<?php
/**
 * Settings -> Module settings -> Gonets SMS: API URL, token, default sender, sender list,
 * promotional flag, callback URL and secret.  Stored with \Bitrix\Main\Config\Option
 * (b_option), never in files.  The token and the secret are write-only: the page never
 * prints them back, an empty field keeps the stored value.
 */
use Bitrix\Main\Config\Option;
use Bitrix\Main\Localization\Loc;

defined('B_PROLOG_INCLUDED') && B_PROLOG_INCLUDED === true || die();

$moduleId = 'gonets.sms';
Loc::loadMessages(__FILE__);
global $APPLICATION, $USER;
if (!$USER->IsAdmin()) {
    $APPLICATION->AuthForm(Loc::getMessage('ACCESS_DENIED'));
}
\Bitrix\Main\Loader::includeModule($moduleId);

$fields = [
    ['api_url', 'text', false],
    ['token', 'password', true],
    ['default_sender', 'text', false],
    ['senders', 'text', false],
    ['promotional', 'checkbox', false],
    ['callback_url', 'text', false],
    ['callback_secret', 'password', true],
];

$request = \Bitrix\Main\Context::getCurrent()->getRequest();
if ($request->isPost() && $request->getPost('save') !== null && check_bitrix_sessid()) {
    foreach ($fields as [$name, $type, $secret]) {
        $value = $request->getPost($name);
        if ($type === 'checkbox') {
            Option::set($moduleId, $name, $value === 'Y' ? 'Y' : 'N');
        } elseif ($secret && (string)$value === '') {
            continue;  // keep the stored secret
        } else {
            Option::set($moduleId, $name, trim((string)$value));
        }
    }
    try {
        \Gonets\Sms\Alerts::refresh();
        CAdminMessage::ShowNote(Loc::getMessage('GONETS_SMS_OPT_CONNECTED'));
    } catch (\Gonets\Sms\ClientException $e) {
        CAdminMessage::ShowMessage(Loc::getMessage('GONETS_SMS_OPT_NOT_CONNECTED') . ' ' . htmlspecialcharsbx($e->getMessage()));
    }
}

$tabs = [['DIV' => 'settings', 'TAB' => Loc::getMessage('GONETS_SMS_OPT_TAB'), 'TITLE' => Loc::getMessage('GONETS_SMS_OPT_TITLE')]];
$tabControl = new CAdminTabControl('gonetsSmsOptions', $tabs);
$tabControl->Begin();
?>
<form method="post" action="<?= $APPLICATION->GetCurPage() ?>?mid=<?= urlencode($moduleId) ?>&amp;lang=<?= LANGUAGE_ID ?>">
<?= bitrix_sessid_post() ?>
<?php $tabControl->BeginNextTab(); ?>
<?php foreach ($fields as [$name, $type, $secret]):
    $value = Option::get($moduleId, $name, $type === 'checkbox' ? 'N' : ''); ?>
    <tr>
        <td width="40%"><label for="<?= $name ?>"><?= Loc::getMessage('GONETS_SMS_OPT_' . strtoupper($name)) ?></label></td>
        <td width="60%">
        <?php if ($type === 'checkbox'): ?>
            <input type="checkbox" id="<?= $name ?>" name="<?= $name ?>" value="Y"<?= $value === 'Y' ? ' checked' : '' ?>>
        <?php elseif ($secret): ?>
            <input type="password" id="<?= $name ?>" name="<?= $name ?>" value="" autocomplete="new-password"
                   placeholder="<?= $value !== '' ? Loc::getMessage('GONETS_SMS_OPT_SECRET_SET') : '' ?>" size="50">
        <?php else: ?>
            <input type="text" id="<?= $name ?>" name="<?= $name ?>" value="<?= htmlspecialcharsbx($value) ?>" size="50">
        <?php endif; ?>
        </td>
    </tr>
<?php endforeach; ?>
<?php $tabControl->Buttons(); ?>
<input type="submit" name="save" value="<?= Loc::getMessage('GONETS_SMS_OPT_SAVE') ?>" class="adm-btn-save">
<?php $tabControl->End(); ?>
</form>
