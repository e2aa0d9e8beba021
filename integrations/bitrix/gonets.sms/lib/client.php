<?php
namespace Gonets\Sms;

/**
 * The Gonets HTTP API over curl: POST /v1/sms, GET /v1/sms/{id}, PUT/DELETE
 * /v1/consents/{phone}, GET /v1/accounts.  Every call carries the producer token; errors
 * (application/problem+json) become ClientException naming the field.
 */
class Client
{
    private $baseUrl;
    private $token;
    private $timeoutS;

    public function __construct(string $baseUrl, string $token, int $timeoutS = 10)
    {
        $this->baseUrl = rtrim($baseUrl, '/');
        $this->token = $token;
        $this->timeoutS = $timeoutS;
    }

    /** Queue one SMS; the same $idempotencyKey again returns the same id. */
    public function sendSms(array $payload, ?string $idempotencyKey = null): array
    {
        $headers = $idempotencyKey !== null ? ['Idempotency-Key: ' . $idempotencyKey] : [];
        return $this->request('POST', '/v1/sms', $payload, $headers);
    }

    public function getSms(string $id): array
    {
        return $this->request('GET', '/v1/sms/' . rawurlencode($id));
    }

    public function grantConsent(string $phone, string $source): array
    {
        return $this->request('PUT', '/v1/consents/' . rawurlencode($phone), ['source' => $source]);
    }

    public function withdrawConsent(string $phone, string $source): array
    {
        return $this->request('DELETE', '/v1/consents/' . rawurlencode($phone), ['source' => $source]);
    }

    public function accounts(): array
    {
        return $this->request('GET', '/v1/accounts');
    }

    public function request(string $method, string $path, ?array $body = null, array $headers = []): array
    {
        if ($this->baseUrl === '' || $this->token === '') {
            throw new ClientException(0, 'the module is not configured (API URL and token)');
        }
        $ch = curl_init($this->baseUrl . $path);
        $headers[] = 'Authorization: Bearer ' . $this->token;
        $headers[] = 'Accept: application/json';
        $opts = [
            CURLOPT_CUSTOMREQUEST => $method,
            CURLOPT_RETURNTRANSFER => true,
            CURLOPT_CONNECTTIMEOUT => $this->timeoutS,
            CURLOPT_TIMEOUT => $this->timeoutS,
            CURLOPT_FOLLOWLOCATION => false,
            CURLOPT_PROTOCOLS => CURLPROTO_HTTP | CURLPROTO_HTTPS,
        ];
        if ($body !== null) {
            $opts[CURLOPT_POSTFIELDS] = json_encode($body, JSON_UNESCAPED_UNICODE);
            $headers[] = 'Content-Type: application/json';
        }
        $opts[CURLOPT_HTTPHEADER] = $headers;
        curl_setopt_array($ch, $opts);
        $raw = curl_exec($ch);
        $status = (int)curl_getinfo($ch, CURLINFO_RESPONSE_CODE);
        $error = curl_error($ch);
        curl_close($ch);
        if ($raw === false) {
            throw new ClientException(0, 'no answer: ' . $error);
        }
        $data = json_decode((string)$raw, true);
        if ($status >= 200 && $status < 300 && is_array($data)) {
            return $data;
        }
        $detail = is_array($data) && isset($data['detail']) ? (string)$data['detail'] : 'unexpected answer';
        $field = is_array($data) && isset($data['field']) ? (string)$data['field'] : null;
        throw new ClientException($status, $detail, $field);
    }
}
