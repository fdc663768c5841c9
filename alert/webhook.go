package alert

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// webhookSink POSTs the document, signed the Standard Webhooks way when a
// secret is configured:
//
//	webhook-id:        the document's event_id (the same on every retry)
//	webhook-timestamp: unix seconds of this attempt
//	webhook-signature: v1,<base64 HMAC-SHA256(key, id "." timestamp "." body)>
//
// The key is the base64 part of the "whsec_…" secret.
type webhookSink struct {
	*httpSink
	key []byte
	now func() time.Time
}

func newWebhookSink(c WebhookConfig, timeout time.Duration, ua string) (*webhookSink, error) {
	h, err := newHTTPSink(c.HTTPConfig, c.URL, timeout, ua)
	if err != nil {
		return nil, err
	}
	w := &webhookSink{httpSink: h, now: time.Now}
	secret := string(c.Secret)
	if c.SecretFile != "" {
		if secret, err = readSecretFile(c.SecretFile); err != nil {
			return nil, fmt.Errorf("secret_file: %w", err)
		}
	}
	if secret != "" {
		if w.key, err = hmacKey(secret); err != nil {
			return nil, fmt.Errorf("secret: %w", err)
		}
	}
	return w, nil
}

func (w *webhookSink) deliver(ctx context.Context, doc Document) error {
	body, err := json.Marshal(doc)
	if err != nil {
		return permanent(err)
	}
	extra := http.Header{}
	if w.key != nil {
		ts := strconv.FormatInt(w.now().Unix(), 10)
		extra.Set("webhook-id", doc.EventID)
		extra.Set("webhook-timestamp", ts)
		extra.Set("webhook-signature", "v1,"+sign(w.key, doc.EventID, ts, body))
	}
	return w.post(ctx, body, extra)
}

// sign is the Standard Webhooks v1 signature.
func sign(key []byte, id, ts string, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + ts + "."))
	m.Write(body)
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}
