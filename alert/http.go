package alert

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// httpSink is what the webhook, Alertmanager and PagerDuty sinks share:
// a client with its own transport, the resolved headers, and the rules for
// what is worth retrying.
type httpSink struct {
	url       string
	headers   http.Header
	client    *http.Client
	transport *http.Transport
}

func newHTTPSink(c HTTPConfig, url string, timeout time.Duration, userAgent string) (*httpSink, error) {
	h := http.Header{}
	for k, v := range c.Headers {
		h.Set(k, string(v))
	}
	for k, f := range c.HeaderFiles {
		v, err := readSecretFile(f)
		if err != nil {
			return nil, fmt.Errorf("header_files[%s]: %w", k, err)
		}
		h.Set(k, v)
	}
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", userAgent)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: c.InsecureSkipVerify}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s: no PEM certificate", c.CAFile)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	tr.MaxIdleConnsPerHost = 2
	return &httpSink{
		url:       url,
		headers:   h,
		transport: tr,
		client: &http.Client{
			Transport: tr,
			Timeout:   timeout,
			// A redirect could carry signatures and tokens to another
			// host: a 3xx is reported, never followed.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

func (h *httpSink) close() { h.transport.CloseIdleConnections() }

// post sends body with the sink's headers plus extra; a 2xx is success.
// 429 and 5xx are retried (Retry-After honoured), other statuses are not.
// Errors name the URL's scheme and host only: webhook paths hold tokens.
func (h *httpSink) post(ctx context.Context, body []byte, extra http.Header) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return permanent(fmt.Errorf("POST %s: cannot build request", redactURL(h.url)))
	}
	for k, v := range h.headers {
		req.Header[k] = v
	}
	for k, v := range extra {
		req.Header[k] = v
	}
	resp, err := h.client.Do(req)
	if err != nil {
		var inner error = err
		var ue *url.Error
		if errors.As(err, &ue) {
			inner = ue.Err // ue.Error() would print the whole URL
		}
		return temporary(fmt.Errorf("POST %s: %w", redactURL(h.url), inner), 0)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	err = fmt.Errorf("POST %s: %s: %s", redactURL(h.url), resp.Status, oneLine(strings.TrimSpace(clean(string(msg), 512))))
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
		return temporary(err, retryAfter(resp.Header.Get("Retry-After"), time.Now()))
	}
	return permanent(err)
}

// retryAfter parses delay-seconds or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n >= 0 {
		// Beyond 292 years the product overflows to a negative wait.
		return time.Duration(min(n, math.MaxInt64/int(time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
