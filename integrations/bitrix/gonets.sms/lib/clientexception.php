<?php
namespace Gonets\Sms;

/**
 * Gonets could not be reached or answered with an error.
 *
 * $status is the HTTP status (0: no answer at all), $field the field Gonets names as wrong
 * (problem+json "field"), $detail its explanation.
 */
class ClientException extends \RuntimeException
{
    public $status;
    public $field;
    public $detail;

    public function __construct(int $status, string $detail, ?string $field = null)
    {
        parent::__construct($status ? "Gonets answered $status: $detail" : "Gonets: $detail");
        $this->status = $status;
        $this->detail = $detail;
        $this->field = $field;
    }

    /** Worth trying again later: no answer, 429 or 5xx. */
    public function isTransient(): bool
    {
        return $this->status === 0 || $this->status === 429 || $this->status >= 500;
    }
}
