package server

import (
	"embed"
	"fmt"
	"html/template"
	"math"
	"strings"
	"time"
)

//go:embed page.html
var pageFS embed.FS

var pageTmpl = template.Must(template.New("page.html").Funcs(template.FuncMap{
	"ago":        ago,
	"seconds":    seconds,
	"stamp":      stamp,
	"stateLabel": stateLabel,
	"deref":      func(b *bool) bool { return b != nil && *b },
}).ParseFS(pageFS, "page.html"))

// pageRefresh is how often the status page reloads itself, in seconds.
const pageRefresh = 10

// pageData is what the status page shows: the /status document and a few
// figures drawn from it.
type pageData struct {
	Status      *Status
	Version     string
	MetricsPath string
	Refresh     int
	Counts      pageCounts
}

// pageCounts are the summary figures at the top of the status page.
type pageCounts struct {
	Pairs      int
	Directions int
	InSync     int
	OutOfSync  int
	Error      int
	Unknown    int
	// Bad counts the directions not in sync: out of sync and error.
	Bad int
	// DatabasesDown counts the databases that failed when last used.
	DatabasesDown int
}

func newPageData(st *Status, version, metricsPath string) pageData {
	d := pageData{
		Status:      st,
		Version:     version,
		MetricsPath: strings.TrimPrefix(metricsPath, "/"),
		Refresh:     pageRefresh,
	}
	c := &d.Counts
	c.Pairs = len(st.Pairs)
	for _, p := range st.Pairs {
		for _, dir := range p.Directions {
			c.Directions++
			switch dir.State {
			case "in_sync":
				c.InSync++
			case "out_of_sync":
				c.OutOfSync++
			case "error":
				c.Error++
			default:
				c.Unknown++
			}
		}
	}
	c.Bad = c.OutOfSync + c.Error
	for _, db := range st.Databases {
		if db.Up != nil && !*db.Up {
			c.DatabasesDown++
		}
	}
	return d
}

// stateLabel is how the page names a direction's state.
func stateLabel(state string) string {
	switch state {
	case "in_sync":
		return "in sync"
	case "out_of_sync":
		return "out of sync"
	case "error":
		return "error"
	default:
		return "not checked yet"
	}
}

func ago(now time.Time, t *time.Time) string {
	if t == nil {
		return "never"
	}
	return seconds(max(now.Sub(*t).Seconds(), 0)) + " ago"
}

func stamp(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.Format(time.RFC3339)
}

// seconds writes a duration for people: 850ms, 4.2s, 3m20s, 2h05m, 3d04h.
func seconds(s float64) string {
	switch {
	case s < 1:
		return fmt.Sprintf("%dms", int(math.Round(s*1000)))
	case s < 60:
		return fmt.Sprintf("%.1fs", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", int(s)/60, int(s)%60)
	case s < 86400:
		return fmt.Sprintf("%dh%02dm", int(s)/3600, int(s)%3600/60)
	default:
		return fmt.Sprintf("%dd%02dh", int(s)/86400, int(s)%86400/3600)
	}
}
