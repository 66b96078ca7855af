package server

import (
	"embed"
	"fmt"
	"html/template"
	"math"
	"time"
)

//go:embed page.html
var pageFS embed.FS

var pageTmpl = template.Must(template.New("page.html").Funcs(template.FuncMap{
	"ago":     ago,
	"seconds": seconds,
	"stamp":   stamp,
	"deref":   func(b *bool) bool { return b != nil && *b },
}).ParseFS(pageFS, "page.html"))

// pageData is what the status page shows.
type pageData struct {
	Status      *Status
	Version     string
	MetricsPath string
	Counts      map[string]int
}

func ago(now time.Time, t *time.Time) string {
	if t == nil {
		return "never"
	}
	return seconds(now.Sub(*t).Seconds()) + " ago"
}

func stamp(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.Format(time.RFC3339)
}

// seconds writes a duration for people: 850ms, 42s, 3m20s, 2h5m, 3d4h.
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
