package alert

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/oomwatch/oomwatch/internal/rootowned"
)

// Config lists the sinks, any number of each. Every sink gets a name (its
// `name`, or kind-index such as "webhook-0"), used in logs, metrics and as
// its spool directory.
type Config struct {
	Exec         []ExecConfig         `yaml:"exec"`
	Webhook      []WebhookConfig      `yaml:"webhook"`
	Alertmanager []AlertmanagerConfig `yaml:"alertmanager"`
	PagerDuty    []PagerDutyConfig    `yaml:"pagerduty"`
}

// Secret is a string that never prints: String, GoString, JSON and YAML
// encodings all give "<redacted>", so a config logged by mistake leaks
// nothing.
type Secret string

const redacted = "<redacted>"

func (s Secret) String() string   { return redacted }
func (s Secret) GoString() string { return `"` + redacted + `"` }

// MarshalJSON redacts.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalYAML redacts (the interface both goccy/go-yaml and yaml.v3 use).
func (s Secret) MarshalYAML() (any, error) { return redacted, nil }

// Delivery are the settings every sink shares.
type Delivery struct {
	Name string `yaml:"name"`
	// Timeout bounds one attempt (default 10s; exec 30s).
	Timeout time.Duration `yaml:"timeout"`
	// QueueSize bounds the documents waiting for this sink (default 256);
	// when full the oldest is dropped and counted.
	QueueSize int `yaml:"queue_size"`
	// RatePerMinute is the token-bucket rate (and burst) of new documents
	// (default 30; negative: no limit). Resolutions of incidents that were
	// sent are never rate-limited.
	RatePerMinute int `yaml:"rate_per_minute"`
	// DedupWindow: the same incident and type is sent at most once per
	// window (default 10m; negative: off).
	DedupWindow time.Duration `yaml:"dedup_window"`
	// MaxAttempts per document (default 0: retry until max_age; exec: 3).
	MaxAttempts int `yaml:"max_attempts"`
	// MaxAge: a document older than this is given up, also when replayed
	// from the spool (default 24h).
	MaxAge time.Duration `yaml:"max_age"`
	// Risk: also send risk documents, the warnings before the first OOM
	// (default false). The rate limit and queue bound apply to them as to
	// incidents; dedup_window does not (each risk fires once and resolves
	// once).
	Risk bool `yaml:"risk"`
}

// HTTPConfig are the settings of the HTTP sinks.
type HTTPConfig struct {
	URL string `yaml:"url"`
	// Headers are sent with every request; values are secrets (bearer
	// tokens) and never printed.
	Headers map[string]Secret `yaml:"headers"`
	// HeaderFiles: header name → file whose content (trailing newline
	// removed) is the value, read at start.
	HeaderFiles map[string]string `yaml:"header_files"`
	// InsecureSkipVerify turns off TLS certificate verification (opt-in).
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
	// CAFile: PEM bundle trusted instead of the system roots.
	CAFile string `yaml:"ca_file"`
}

// ExecConfig is a hook run for every document.
type ExecConfig struct {
	Delivery `yaml:",inline"`
	// Command is the argv, argv[0] an absolute path. Never run through a
	// shell; no event data is ever put in argv.
	Command []string `yaml:"command"`
	// Env names variables passed through from oomwatch's environment in
	// addition to PATH, LANG and TZ.
	Env []string `yaml:"env"`
}

// WebhookConfig POSTs the document as JSON.
type WebhookConfig struct {
	Delivery   `yaml:",inline"`
	HTTPConfig `yaml:",inline"`
	// Secret signs requests the Standard Webhooks way ("whsec_<base64>").
	Secret     Secret `yaml:"secret"`
	SecretFile string `yaml:"secret_file"`
}

// AlertmanagerConfig posts to Alertmanager's API v2.
type AlertmanagerConfig struct {
	Delivery   `yaml:",inline"`
	HTTPConfig `yaml:",inline"` // URL is the base URL; /api/v2/alerts is appended
	// ResendInterval: firing alerts are re-sent this often (default 1m),
	// with endsAt = now + 4 × resend_interval.
	ResendInterval time.Duration `yaml:"resend_interval"`
	// ResolveResend: a resolved alert is re-sent for this long (default 5m).
	ResolveResend time.Duration `yaml:"resolve_resend"`
	// Labels are added to every alert (team, env); they cannot override
	// oomwatch's own.
	Labels map[string]string `yaml:"labels"`
}

// PagerDutyConfig sends Events API v2 trigger and resolve events.
type PagerDutyConfig struct {
	Delivery       `yaml:",inline"`
	HTTPConfig     `yaml:",inline"` // URL defaults to DefaultPagerDutyURL
	RoutingKey     Secret           `yaml:"routing_key"`
	RoutingKeyFile string           `yaml:"routing_key_file"`
}

// DefaultPagerDutyURL is the Events API v2 endpoint.
const DefaultPagerDutyURL = "https://events.pagerduty.com/v2/enqueue"

// Sink kinds.
const (
	KindExec         = "exec"
	KindWebhook      = "webhook"
	KindAlertmanager = "alertmanager"
	KindPagerDuty    = "pagerduty"
)

func (c ExecConfig) String() string {
	return fmt.Sprintf("exec %q: %q", c.Name, c.Command)
}

func (c HTTPConfig) String() string {
	names := make([]string, 0, len(c.Headers)+len(c.HeaderFiles))
	for k := range c.Headers {
		names = append(names, k)
	}
	for k := range c.HeaderFiles {
		names = append(names, k)
	}
	sort.Strings(names)
	return fmt.Sprintf("url=%s headers=%v insecure_skip_verify=%t", redactURL(c.URL), names, c.InsecureSkipVerify)
}

func (c WebhookConfig) String() string {
	return fmt.Sprintf("webhook %q: %s signed=%t", c.Name, c.HTTPConfig, c.Secret != "" || c.SecretFile != "")
}

func (c AlertmanagerConfig) String() string {
	return fmt.Sprintf("alertmanager %q: %s", c.Name, c.HTTPConfig)
}

func (c PagerDutyConfig) String() string {
	return fmt.Sprintf("pagerduty %q: %s routing_key=%s", c.Name, c.HTTPConfig, redacted)
}

// redactURL keeps scheme and host: paths and queries of webhook URLs often
// embed tokens (Slack, Teams).
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return redacted
	}
	s := u.Scheme + "://" + u.Host
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		s += "/…"
	}
	return s
}

var (
	nameRE      = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
	labelRE     = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
	envNameRE   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	headerRE    = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
	reservedEnv = []string{"NOTIFY_SOCKET", "WATCHDOG_", "LISTEN_", "OOMWATCH_", "JOURNAL_STREAM", "INVOCATION_ID", "CREDENTIALS_DIRECTORY", "LD_"}
)

// sinkNames returns the name of every sink in config order, defaulted.
func (c Config) sinkNames() (exec, webhook, am, pd []string) {
	name := func(n, kind string, i int) string {
		if n != "" {
			return n
		}
		return fmt.Sprintf("%s-%d", kind, i)
	}
	for i, s := range c.Exec {
		exec = append(exec, name(s.Name, KindExec, i))
	}
	for i, s := range c.Webhook {
		webhook = append(webhook, name(s.Name, KindWebhook, i))
	}
	for i, s := range c.Alertmanager {
		am = append(am, name(s.Name, KindAlertmanager, i))
	}
	for i, s := range c.PagerDuty {
		pd = append(pd, name(s.Name, KindPagerDuty, i))
	}
	return
}

// FieldError is a problem with one field of one sink. Kind and Index say
// which sink (its list in the alerts section and its place there), Field
// the key the problem is about, so that the config layer can point at the
// line; Error reads "alert KIND[INDEX] (NAME): what is wrong".
type FieldError struct {
	Kind  string
	Index int
	Name  string
	Field string // the sink's YAML key ("url", "command"), or "" for the sink as a whole
	Err   error  // what is wrong, starting with the field
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("alert %s[%d] (%s): %v", e.Kind, e.Index, e.Name, e.Err)
}

func (e *FieldError) Unwrap() error { return e.Err }

// sinkRef names one sink in messages.
type sinkRef struct {
	kind  string
	index int
	name  string
}

func (w sinkRef) String() string { return fmt.Sprintf("alert %s[%d] (%s)", w.kind, w.index, w.name) }

func (w sinkRef) errf(field, format string, args ...any) error {
	return &FieldError{Kind: w.kind, Index: w.index, Name: w.name, Field: field, Err: fmt.Errorf(format, args...)}
}

// Validate checks the config without touching the filesystem (secret
// files are read by New). Every message names the sink and the field.
func (c Config) Validate() error {
	var errs []error
	en, wn, an, pn := c.sinkNames()
	seen := map[string]sinkRef{}
	at := func(kind string, i int, name string) sinkRef { return sinkRef{kind, i, name} }
	checkName := func(where sinkRef, name string) {
		if !nameRE.MatchString(name) {
			errs = append(errs, where.errf("name", "name %q: want 1-64 of [A-Za-z0-9_.-], starting with a letter or digit", name))
		}
		if prev, dup := seen[name]; dup {
			errs = append(errs, where.errf("name", "name %q already used by %s", name, prev))
		}
		seen[name] = where
	}
	for i, s := range c.Exec {
		w := at(KindExec, i, en[i])
		checkName(w, en[i])
		errs = append(errs, s.Delivery.validate(w)...)
		if len(s.Command) == 0 {
			errs = append(errs, w.errf("command", "command: empty; want an argv array like [\"/usr/local/bin/page\", \"--team\", \"ops\"]"))
		} else if !filepath.IsAbs(s.Command[0]) {
			errs = append(errs, w.errf("command", "command[0] %q: want an absolute path (hooks never go through a shell or $PATH)", s.Command[0]))
		}
		for _, e := range s.Env {
			if !envNameRE.MatchString(e) {
				errs = append(errs, w.errf("env", "env %q: not a variable name", e))
				continue
			}
			for _, r := range reservedEnv {
				if e == r || strings.HasSuffix(r, "_") && strings.HasPrefix(e, r) {
					errs = append(errs, w.errf("env", "env %q: never passed to hooks (systemd and oomwatch reserve %s)", e, r))
				}
			}
		}
	}
	for i, s := range c.Webhook {
		w := at(KindWebhook, i, wn[i])
		checkName(w, wn[i])
		errs = append(errs, s.Delivery.validate(w)...)
		errs = append(errs, s.HTTPConfig.validate(w, true)...)
		if s.Secret != "" && s.SecretFile != "" {
			errs = append(errs, w.errf("secret", "secret and secret_file: give one"))
		}
		if s.Secret != "" {
			if _, err := hmacKey(string(s.Secret)); err != nil {
				errs = append(errs, w.errf("secret", "secret: %w", err))
			}
		}
	}
	for i, s := range c.Alertmanager {
		w := at(KindAlertmanager, i, an[i])
		checkName(w, an[i])
		errs = append(errs, s.Delivery.validate(w)...)
		errs = append(errs, s.HTTPConfig.validate(w, true)...)
		if s.ResendInterval < 0 {
			errs = append(errs, w.errf("resend_interval", "resend_interval %v: negative", s.ResendInterval))
		}
		if s.ResolveResend < 0 {
			errs = append(errs, w.errf("resolve_resend", "resolve_resend %v: negative", s.ResolveResend))
		}
		for k := range s.Labels {
			if !labelRE.MatchString(k) {
				errs = append(errs, w.errf("labels", "labels: %q is not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*)", k))
			}
			if amOwnLabels[k] {
				errs = append(errs, w.errf("labels", "labels: %q is set by oomwatch", k))
			}
		}
	}
	for i, s := range c.PagerDuty {
		w := at(KindPagerDuty, i, pn[i])
		checkName(w, pn[i])
		errs = append(errs, s.Delivery.validate(w)...)
		errs = append(errs, s.HTTPConfig.validate(w, false)...)
		switch {
		case s.RoutingKey != "" && s.RoutingKeyFile != "":
			errs = append(errs, w.errf("routing_key", "routing_key and routing_key_file: give one"))
		case s.RoutingKey == "" && s.RoutingKeyFile == "":
			errs = append(errs, w.errf("routing_key", "routing_key or routing_key_file: required"))
		case s.RoutingKey != "" && strings.TrimSpace(string(s.RoutingKey)) != string(s.RoutingKey):
			errs = append(errs, w.errf("routing_key", "routing_key: leading or trailing white space"))
		}
	}
	return errors.Join(errs...)
}

// CheckFiles checks every file the sinks read or run (hook command[0],
// ca_file, header_files, secret_file, routing_key_file) the way the config
// file itself is checked: owned by owner (root) and, with the directory
// holding it, writable by no one else. oomwatch runs hooks and trusts CAs
// and keys as root: another user who could change one could run code as
// root or read and redirect alerts. Every message names the sink, the
// field and the file.
func (c Config) CheckFiles(owner uint32) error {
	var errs []error
	en, wn, an, pn := c.sinkNames()
	check := func(kind string, i int, name, field, path string) {
		if path == "" {
			return
		}
		if err := rootowned.Path(path, owner); err != nil {
			key, _, _ := strings.Cut(field, "[")
			errs = append(errs, sinkRef{kind, i, name}.errf(key, "%s: %w", field, err))
		}
	}
	checkHTTP := func(kind string, i int, name string, h HTTPConfig) {
		check(kind, i, name, "ca_file", h.CAFile)
		keys := make([]string, 0, len(h.HeaderFiles))
		for k := range h.HeaderFiles {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			check(kind, i, name, "header_files["+k+"]", h.HeaderFiles[k])
		}
	}
	for i, s := range c.Exec {
		if len(s.Command) > 0 {
			check(KindExec, i, en[i], "command[0]", s.Command[0])
		}
	}
	for i, s := range c.Webhook {
		checkHTTP(KindWebhook, i, wn[i], s.HTTPConfig)
		check(KindWebhook, i, wn[i], "secret_file", s.SecretFile)
	}
	for i, s := range c.Alertmanager {
		checkHTTP(KindAlertmanager, i, an[i], s.HTTPConfig)
	}
	for i, s := range c.PagerDuty {
		checkHTTP(KindPagerDuty, i, pn[i], s.HTTPConfig)
		check(KindPagerDuty, i, pn[i], "routing_key_file", s.RoutingKeyFile)
	}
	return errors.Join(errs...)
}

func (d Delivery) validate(w sinkRef) []error {
	var errs []error
	if d.Timeout < 0 {
		errs = append(errs, w.errf("timeout", "timeout %v: negative", d.Timeout))
	}
	if d.QueueSize < 0 {
		errs = append(errs, w.errf("queue_size", "queue_size %d: negative", d.QueueSize))
	}
	if d.MaxAttempts < 0 {
		errs = append(errs, w.errf("max_attempts", "max_attempts %d: negative", d.MaxAttempts))
	}
	if d.MaxAge < 0 {
		errs = append(errs, w.errf("max_age", "max_age %v: negative", d.MaxAge))
	}
	return errs
}

func (h HTTPConfig) validate(w sinkRef, urlRequired bool) []error {
	var errs []error
	if h.URL == "" {
		if urlRequired {
			errs = append(errs, w.errf("url", "url: required"))
		}
	} else if u, err := url.Parse(h.URL); err != nil {
		errs = append(errs, w.errf("url", "url: not a URL")) // the URL may hold a token: not echoed
	} else if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		errs = append(errs, w.errf("url", "url %s: want http:// or https:// with a host", redactURL(h.URL)))
	}
	for k := range h.Headers {
		if !headerRE.MatchString(k) {
			errs = append(errs, w.errf("headers", "headers: %q is not a header name", k))
		}
		if _, both := h.HeaderFiles[k]; both {
			errs = append(errs, w.errf("headers", "header %q in both headers and header_files", k))
		}
	}
	for k, f := range h.HeaderFiles {
		if !headerRE.MatchString(k) {
			errs = append(errs, w.errf("header_files", "header_files: %q is not a header name", k))
		}
		if f == "" {
			errs = append(errs, w.errf("header_files", "header_files[%s]: empty path", k))
		}
	}
	for k, v := range h.Headers {
		if strings.ContainsAny(string(v), "\r\n") {
			errs = append(errs, w.errf("headers", "headers[%s]: value contains a newline", k))
		}
	}
	return errs
}

// hmacKey decodes a Standard Webhooks secret: "whsec_" (optional) then
// base64.
func hmacKey(secret string) ([]byte, error) {
	s := strings.TrimPrefix(strings.TrimSpace(secret), "whsec_")
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, errors.New("want whsec_ followed by base64 (Standard Webhooks)")
	}
	if len(key) < 16 {
		return nil, fmt.Errorf("key is %d bytes; want at least 16 (Standard Webhooks uses 24 to 64)", len(key))
	}
	return key, nil
}

// readSecretFile reads a secret, dropping one trailing newline. The error
// names the file, never the content.
func readSecretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("read %s: empty", path)
	}
	if strings.ContainsAny(s, "\r\n") {
		return "", fmt.Errorf("read %s: more than one line", path)
	}
	return s, nil
}

// withDefaults fills the zero values.
func (d Delivery) withDefaults(kind string) Delivery {
	if d.Timeout == 0 {
		d.Timeout = 10 * time.Second
		if kind == KindExec {
			d.Timeout = 30 * time.Second
		}
	}
	if d.QueueSize == 0 {
		d.QueueSize = 256
	}
	if d.RatePerMinute == 0 {
		d.RatePerMinute = 30
	}
	if d.DedupWindow == 0 {
		d.DedupWindow = 10 * time.Minute
	}
	if d.MaxAttempts == 0 && kind == KindExec {
		// A failing hook is reported, never retried into a storm.
		d.MaxAttempts = 3
	}
	if d.MaxAge == 0 {
		d.MaxAge = 24 * time.Hour
	}
	return d
}
