package config

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// MaxRowsLimit is the largest max_rows accepted.
const MaxRowsLimit = 10000

var (
	databaseNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)
	pairNameRE     = regexp.MustCompile(`^[A-Za-z0-9_.:-]+$`)
)

// validate applies the defaults to c, checks every setting and resolves the
// checks of every pair, recording every problem found.
func (s *source) validate(c *Config) {
	s.checkGlobal(&c.Global)
	s.checkDatabases(c)
	s.checkPairs(c)
}

func (s *source) checkGlobal(g *Global) {
	s.durationSetting("global.interval", &g.Interval, Duration(DefaultInterval))
	s.durationSetting("global.timeout", &g.Timeout, Duration(DefaultTimeout))
	s.durationSetting("global.max_lag", &g.MaxLag, Duration(DefaultMaxLag))
	s.maxRowsSetting("global.max_rows", &g.MaxRows, DefaultMaxRows)
	s.checkTiming("global", g.Interval, g.Timeout, g.MaxLag)
}

// durationSetting sets *d to def when path was not given, and rejects an
// explicit zero.
func (s *source) durationSetting(path string, d *Duration, def Duration) {
	switch {
	case *d > 0:
	case s.set[path]:
		s.errorf(path, "must be greater than 0")
	default:
		*d = def
	}
}

// maxRowsSetting sets *n to def when path was not given, and checks its range.
func (s *source) maxRowsSetting(path string, n *int, def int) {
	switch {
	case !s.set[path]:
		*n = def
	case *n < 1 || *n > MaxRowsLimit:
		s.errorf(path, "must be between 1 and %d, got %d", MaxRowsLimit, *n)
	}
}

// checkTiming checks that timeout fits in interval and that max_lag is not
// shorter than interval, reporting a conflict at the key under prefix that
// was given in the file. A conflict made only of inherited values is
// reported where they were set, not here.
func (s *source) checkTiming(prefix string, interval, timeout, maxLag Duration) {
	if interval <= 0 || timeout <= 0 || maxLag <= 0 {
		return
	}
	if timeout > interval {
		if key := s.givenKey(prefix, "timeout", "interval"); key != "" {
			s.errorf(key, "timeout (%s) must not exceed interval (%s)", timeout, interval)
		}
	}
	if maxLag < interval {
		if key := s.givenKey(prefix, "max_lag", "interval"); key != "" {
			s.errorf(key, "max_lag (%s) must not be shorter than interval (%s)", maxLag, interval)
		}
	}
}

// givenKey returns the path of the first of keys under prefix that the file
// gives a value, or "" when it gives none.
func (s *source) givenKey(prefix string, keys ...string) string {
	for _, k := range keys {
		if p := joinPath(prefix, k); s.set[p] {
			return p
		}
	}
	return ""
}

func (s *source) checkDatabases(c *Config) {
	if len(c.Databases) == 0 {
		s.errorf("databases", "no databases configured")
		return
	}
	for _, name := range slices.Sorted(maps.Keys(c.Databases)) {
		db := c.Databases[name]
		if db == nil {
			db = &Database{}
			c.Databases[name] = db
		}
		db.Name = name
		s.checkDatabase(db, "databases."+name)
	}
}

func (s *source) checkDatabase(db *Database, path string) {
	if !databaseNameRE.MatchString(db.Name) {
		s.errorf(path, "invalid database name %q: use only letters, digits, '_', '.' and '-'",
			db.Name)
	}
	driverOK := false
	switch db.Driver {
	case DriverPostgres, DriverMySQL:
		driverOK = true
	case "":
		s.errorf(path+".driver", "driver is required (allowed: postgres, mysql)")
	default:
		s.errorf(path+".driver", "unknown driver %s (allowed: postgres, mysql)",
			s.quote(path+".driver", db.Driver))
	}
	switch {
	case !s.set[path+".max_connections"]:
		db.MaxConnections = DefaultMaxConnections
	case db.MaxConnections < 1:
		s.errorf(path+".max_connections", "must be at least 1, got %d", db.MaxConnections)
	}
	s.readPasswordFile(db, path)
	switch {
	case db.DSN == "":
		s.errorf(path+".dsn", "dsn is required")
	case driverOK:
		secrets := append([]string{db.Password.Reveal()}, s.env[path+".dsn"]...)
		msg := dsnProblem(db.Driver, db.DSN.Reveal(), secrets...)
		if msg != "" {
			s.errorf(path+".dsn", "%s", msg)
		}
	}
}

// readPasswordFile reads db.PasswordFile into db.Password. A relative path is
// taken from the directory of the configuration file.
func (s *source) readPasswordFile(db *Database, path string) {
	if db.PasswordFile == "" {
		return
	}
	key := path + ".password_file"
	if db.Password != "" {
		s.errorf(key, "password and password_file are mutually exclusive: set one of them")
		return
	}
	name := db.PasswordFile
	if !filepath.IsAbs(name) && s.dir != "" {
		name = filepath.Join(s.dir, name)
	}
	data, err := os.ReadFile(name)
	if err != nil {
		var pathErr *fs.PathError
		if errors.As(err, &pathErr) {
			err = pathErr.Err
		}
		s.errorf(key, "cannot read password file %s: %v", s.quote(key, db.PasswordFile), err)
		return
	}
	pw := strings.TrimRight(string(data), "\r\n")
	if pw == "" {
		s.errorf(key, "password file %s is empty", s.quote(key, db.PasswordFile))
		return
	}
	db.Password = Secret(pw)
}

// definedDatabases lists the database names for error messages.
func definedDatabases(c *Config) string {
	if len(c.Databases) == 0 {
		return "none"
	}
	return strings.Join(slices.Sorted(maps.Keys(c.Databases)), ", ")
}

func (s *source) checkPairs(c *Config) {
	if len(c.Pairs) == 0 {
		s.errorf("pairs", "no pairs configured")
		return
	}
	firstLine := make(map[string]int, len(c.Pairs))
	for i, p := range c.Pairs {
		if p == nil {
			p = &Pair{}
			c.Pairs[i] = p
		}
		path := fmt.Sprintf("pairs[%d]", i)
		s.checkPairName(p, path, firstLine)
		s.checkPairEnds(c, p, path)
		ltr, rtl := s.checkDirections(p, path)
		s.durationSetting(path+".interval", &p.Interval, c.Global.Interval)
		s.durationSetting(path+".timeout", &p.Timeout, c.Global.Timeout)
		s.durationSetting(path+".max_lag", &p.MaxLag, c.Global.MaxLag)
		s.maxRowsSetting(path+".max_rows", &p.MaxRows, c.Global.MaxRows)
		s.checkTiming(path, p.Interval, p.Timeout, p.MaxLag)
		s.resolveChecks(c, p, path, ltr, rtl)
	}
}

// checkPairName checks the name of p; firstLine maps the names seen so far to
// their lines.
func (s *source) checkPairName(p *Pair, path string, firstLine map[string]int) {
	key := path + ".name"
	switch {
	case p.Name == "":
		s.errorf(key, "name is required")
	case !pairNameRE.MatchString(p.Name):
		s.errorf(key, "invalid pair name %s: use only letters, digits, '_', '.', ':' and '-'",
			s.quote(key, p.Name))
	default:
		if first, dup := firstLine[p.Name]; dup {
			s.errorf(key, "duplicate pair name %s (first defined at line %d)",
				s.quote(key, p.Name), first)
			return
		}
		firstLine[p.Name] = s.line(key)
	}
}

// checkPairEnds checks that left and right name two different databases.
func (s *source) checkPairEnds(c *Config, p *Pair, path string) {
	for _, end := range []struct{ key, name string }{{"left", p.Left}, {"right", p.Right}} {
		key := path + "." + end.key
		switch {
		case end.name == "":
			s.errorf(key, "%s is required (defined databases: %s)", end.key, definedDatabases(c))
		case c.Databases[end.name] == nil && !s.failed["databases"]:
			s.errorf(key, "unknown database %s (defined: %s)",
				s.quote(key, end.name), definedDatabases(c))
		}
	}
	if p.Left != "" && p.Left == p.Right {
		s.errorf(path+".right", "left and right must differ, both are %s",
			s.quote(path+".right", p.Right))
	}
}

// checkDirections fills in the default directions and checks them and the
// per-direction blocks. It reports which directions are active.
func (s *source) checkDirections(p *Pair, path string) (ltr, rtl bool) {
	const allowed = "allowed: " + LeftToRight + ", " + RightToLeft
	key := path + ".directions"
	if p.Directions == nil && !s.set[key] {
		p.Directions = []string{LeftToRight, RightToLeft}
	}
	if len(p.Directions) == 0 {
		s.errorf(key, "must not be empty (%s)", allowed)
	}
	active := make(map[string]bool, 2)
	for i, d := range p.Directions {
		item := fmt.Sprintf("%s[%d]", key, i)
		switch {
		case d != LeftToRight && d != RightToLeft:
			s.errorf(item, "unknown direction %s (%s)", s.quote(item, d), allowed)
		case active[d]:
			s.errorf(item, "duplicate direction %s", s.quote(item, d))
		}
		active[d] = true
	}
	var list []string
	for _, d := range []string{LeftToRight, RightToLeft} {
		if active[d] {
			list = append(list, d)
		}
	}
	blocks := []struct {
		name  string
		block *DirectionConfig
	}{{LeftToRight, p.LeftToRight}, {RightToLeft, p.RightToLeft}}
	for _, b := range blocks {
		if b.block != nil && !active[b.name] {
			s.errorf(path+"."+b.name, "%s is set but directions does not include it "+
				"(directions: %s)", b.name, cmp.Or(strings.Join(list, ", "), "none"))
		}
	}
	return active[LeftToRight], active[RightToLeft]
}

// resolveChecks trims the queries of p and fills p.Checks with its active
// directions, in the order left_to_right, right_to_left.
func (s *source) resolveChecks(c *Config, p *Pair, path string, ltr, rtl bool) {
	p.Selector, p.Validator = trimQuery(p.Selector), trimQuery(p.Validator)
	for _, b := range []*DirectionConfig{p.LeftToRight, p.RightToLeft} {
		if b != nil {
			b.Selector, b.Validator = trimQuery(b.Selector), trimQuery(b.Validator)
		}
	}
	p.Checks = nil
	if ltr {
		d := s.resolveDirection(c, p, path, LeftToRight, p.Left, p.Right, p.LeftToRight)
		d.SourceValidator = sourceValidator(c, p, d, p.RightToLeft)
		p.Checks = append(p.Checks, d)
	}
	if rtl {
		d := s.resolveDirection(c, p, path, RightToLeft, p.Right, p.Left, p.RightToLeft)
		d.SourceValidator = sourceValidator(c, p, d, p.LeftToRight)
		p.Checks = append(p.Checks, d)
	}
}

// sourceValidator returns the query that asks the source of d whether an id
// is still there. With one engine on both sides that is the validator. For a
// mixed pair it is the validator of the reverse direction (reverse is its
// block), which is written for the source's engine, when both directions
// have the same selector (they check the same rows); or else d's validator
// with its parameter rewritten for that engine. With different selectors
// the reverse validator may look in another table, where an id not found
// would be taken for deleted on the source and never reported missing.
func sourceValidator(c *Config, p *Pair, d Direction, reverse *DirectionConfig) string {
	src, tgt := c.Databases[d.Source], c.Databases[d.Target]
	if src == nil || tgt == nil || src.Driver == tgt.Driver || d.Validator == "" {
		return d.Validator
	}
	rv, rsel := p.Validator, p.Selector
	if reverse != nil && reverse.Validator != "" {
		rv = reverse.Validator
	}
	if reverse != nil && reverse.Selector != "" {
		rsel = reverse.Selector
	}
	if rv != "" && rsel == d.Selector && validatorProblem(rv, src.Driver, d.Source) == "" {
		return rv
	}
	return rewriteParam(d.Validator, tgt.Driver, src.Driver)
}

// resolveDirection builds one direction of p and checks its queries against
// the drivers of its source and target.
func (s *source) resolveDirection(c *Config, p *Pair, path, name, source, target string,
	block *DirectionConfig) Direction {
	d := Direction{
		Pair: p.Name, Name: name, Source: source, Target: target,
		Selector: p.Selector, Validator: p.Validator,
		Interval: p.Interval.Std(), Timeout: p.Timeout.Std(), MaxLag: p.MaxLag.Std(),
		MaxRows: p.MaxRows,
	}
	where := path
	selPath, valPath, hbPath := path+".selector", path+".validator", path+".heartbeat"
	d.Heartbeat = p.Heartbeat
	if block != nil {
		where = path + "." + name
		if block.Selector != "" {
			d.Selector, selPath = block.Selector, where+".selector"
		}
		if block.Validator != "" {
			d.Validator, valPath = block.Validator, where+".validator"
		}
		if block.Heartbeat != nil {
			d.Heartbeat, hbPath = block.Heartbeat, where+".heartbeat"
		}
	}
	if d.Heartbeat != nil {
		if msg := heartbeatProblem(d.Heartbeat); msg != "" {
			s.errorf(hbPath+".table", "%s", msg)
		}
		if d.Selector == "" && d.Validator == "" {
			return d // heartbeat only
		}
	}
	if s.queryGiven(d.Selector, "selector", name, path, where, d.Heartbeat != nil) &&
		c.Databases[source] != nil {
		if msg := selectorProblem(d.Selector, c.Databases[source].Driver); msg != "" {
			s.errorf(selPath, "%s", msg)
		}
	}
	if s.queryGiven(d.Validator, "validator", name, path, where, d.Heartbeat != nil) &&
		c.Databases[target] != nil {
		if msg := validatorProblem(d.Validator, c.Databases[target].Driver, target); msg != "" {
			s.errorf(valPath, "%s", msg)
		}
	}
	return d
}

// queryGiven reports whether the query q, under key (selector or validator),
// is set for the direction name, and records an error when it is not. where
// is the path of the direction's block, or of the pair when it has none.
func (s *source) queryGiven(q, key, name, path, where string, heartbeat bool) bool {
	if q != "" {
		return true
	}
	if s.failed[path+"."+key] || s.failed[where+"."+key] {
		return false
	}
	if heartbeat {
		s.errorf(where, "%s has a heartbeat and a %s but no %s: data checks need both; "+
			"set %s on the pair or on %s, or leave out both queries", name, otherQuery(key), key,
			key, name)
		return false
	}
	s.errorf(where, "%s has no %s: set %s on the pair or on %s, or give it a heartbeat",
		name, key, key, name)
	return false
}

func otherQuery(key string) string {
	if key == "selector" {
		return "validator"
	}
	return "selector"
}

// heartbeatProblem says what is wrong with a heartbeat setting; "" if nothing.
func heartbeatProblem(h *Heartbeat) string {
	if h.Table == "" {
		return "heartbeat needs a table: heartbeat: {table: spengler_heartbeat}"
	}
	if !tableName.MatchString(h.Table) {
		return fmt.Sprintf("heartbeat table %q is not a plain table name: letters, digits and _, "+
			"optionally schema.table", h.Table)
	}
	return ""
}

// tableName matches a table name, optionally qualified by its schema.
var tableName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$`)
