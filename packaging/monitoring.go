package packaging

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// The Prometheus alerting rules and the Grafana dashboard the package
// installs under /usr/share/oomwatch/monitoring/.
var (
	//go:embed monitoring/oomwatch.rules.yml
	Rules []byte
	//go:embed monitoring/oomwatch-dashboard.json
	Dashboard []byte
)

// metricRE finds oomwatch's metric names in PromQL: every family the
// daemon exports starts with oomwatch_.
var metricRE = regexp.MustCompile(`\boomwatch_[a-z0-9_]+`)

// histogram series suffixes: a query names oomwatch_x_bucket, the
// exposition names the family oomwatch_x.
var seriesSuffix = regexp.MustCompile(`_(bucket|sum|count)$`)

// DashboardQueries returns the PromQL expressions of the dashboard's panels
// (rows included) by panel title.
func DashboardQueries() (map[string][]string, error) {
	type panel struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
		Panels []json.RawMessage `json:"panels"`
	}
	var d struct {
		Panels []json.RawMessage `json:"panels"`
	}
	if err := json.Unmarshal(Dashboard, &d); err != nil {
		return nil, fmt.Errorf("parse dashboard: %w", err)
	}
	out := map[string][]string{}
	var walk func([]json.RawMessage) error
	walk = func(ps []json.RawMessage) error {
		for _, raw := range ps {
			var p panel
			if err := json.Unmarshal(raw, &p); err != nil {
				return fmt.Errorf("parse dashboard panel: %w", err)
			}
			for _, t := range p.Targets {
				if strings.TrimSpace(t.Expr) != "" {
					out[p.Title] = append(out[p.Title], t.Expr)
				}
			}
			if err := walk(p.Panels); err != nil {
				return err
			}
		}
		return nil
	}
	return out, walk(d.Panels)
}

// QueriedMetrics returns the oomwatch metric families the rules and the
// dashboard query, sorted, each with where it is used.
func QueriedMetrics() (map[string][]string, error) {
	used := map[string][]string{}
	add := func(where, expr string) {
		for _, m := range metricRE.FindAllString(expr, -1) {
			m = seriesSuffix.ReplaceAllString(m, "")
			used[m] = append(used[m], where)
		}
	}
	add("oomwatch.rules.yml", string(Rules))
	qs, err := DashboardQueries()
	if err != nil {
		return nil, err
	}
	titles := make([]string, 0, len(qs))
	for t := range qs {
		titles = append(titles, t)
	}
	sort.Strings(titles)
	for _, t := range titles {
		for _, e := range qs[t] {
			add("dashboard panel "+t, e)
		}
	}
	return used, nil
}

// ExposedFamilies returns the metric families that have samples in a
// Prometheus text exposition: what a query can find.
func ExposedFamilies(scrape string) map[string]bool {
	fams := map[string]bool{}
	for _, l := range strings.Split(scrape, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || l[0] == '#' {
			continue
		}
		name := l
		if i := strings.IndexAny(l, "{ "); i >= 0 {
			name = l[:i]
		}
		fams[seriesSuffix.ReplaceAllString(name, "")] = true
	}
	return fams
}
