package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/spengler-dev/spengler/internal/dbtest"
)

// servers are the databases the exporter watches, each behind a counting
// proxy: pg_left and pg_right (logical replication both ways), my_a and
// my_b (MariaDB master-master).
type servers struct {
	pgLeft, pgRight *dbtest.PG
	logical         *dbtest.Logical
	maria           *dbtest.MariaEnv
	proxies         map[string]*countingProxy // by database name in the config
}

// databaseNames are the names of the servers in the exporter's configuration.
var databaseNames = []string{"pg_left", "pg_right", "my_a", "my_b"}

// startServers starts the four servers and their replication, in dir.
func startServers(ctx context.Context, dir string) (*servers, error) {
	s := &servers{proxies: map[string]*countingProxy{}}
	var wg sync.WaitGroup
	var pgErr, myErr error
	wg.Go(func() {
		if s.pgLeft, pgErr = dbtest.StartPG(ctx, "left", dir); pgErr != nil {
			return
		}
		if s.pgRight, pgErr = dbtest.StartPG(ctx, "right", dir); pgErr != nil {
			return
		}
		s.logical, pgErr = dbtest.SetupLogical(ctx, s.pgLeft, s.pgRight, dbtest.EnvDB)
	})
	wg.Go(func() { s.maria, myErr = dbtest.StartMariaEnv(ctx) })
	wg.Wait()
	if err := errors.Join(pgErr, myErr); err != nil {
		return s, err
	}
	targets := map[string]string{
		"pg_left":  fmt.Sprintf("127.0.0.1:%d", s.pgLeft.Port),
		"pg_right": fmt.Sprintf("127.0.0.1:%d", s.pgRight.Port),
		"my_a":     s.maria.A.Addr(),
		"my_b":     s.maria.B.Addr(),
	}
	for name, target := range targets {
		p, err := newCountingProxy(target)
		if err != nil {
			return s, err
		}
		s.proxies[name] = p
	}
	return s, nil
}

// close stops the proxies and the servers.
func (s *servers) close() {
	for _, p := range s.proxies {
		p.close()
	}
	if s.maria != nil {
		s.maria.Close()
	}
	for _, p := range []*dbtest.PG{s.pgLeft, s.pgRight} {
		if p != nil {
			p.Close()
		}
	}
}

// write inserts a row into every replicated table five times a second,
// until ctx ends.
func (s *servers) write(ctx context.Context, wg *sync.WaitGroup) {
	inserts := []func(context.Context) error{
		func(ctx context.Context) error { return s.logical.InsertA(ctx, 1) },
		func(ctx context.Context) error { return s.logical.InsertB(ctx, 1) },
		func(ctx context.Context) error { _, err := s.maria.Insert(ctx, dbtest.AToB, 1); return err },
		func(ctx context.Context) error { _, err := s.maria.Insert(ctx, dbtest.BToA, 1); return err },
	}
	for _, insert := range inserts {
		wg.Go(func() {
			t := time.NewTicker(200 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				// A frozen server makes an insert wait; bound it, and carry on.
				ictx, cancel := context.WithTimeout(ctx, time.Second)
				_ = insert(ictx)
				cancel()
			}
		})
	}
}

// config is the exporter's configuration: o.pairs pairs, the even ones on
// PostgreSQL and the odd ones on MariaDB, every database through its proxy.
func (s *servers) config(o options) string {
	var b strings.Builder
	fmt.Fprintf(&b, "global:\n  interval: %s\n  timeout: %s\n  max_lag: %s\n  max_rows: 20\n",
		o.interval, o.timeout, o.maxLag)
	b.WriteString("databases:\n")
	for _, name := range []string{"pg_left", "pg_right"} {
		fmt.Fprintf(&b, "  %s: {driver: postgres, dsn: \"postgres://postgres@%s/%s?sslmode=disable\"}\n",
			name, s.proxies[name].addr(), dbtest.EnvDB)
	}
	for _, name := range []string{"my_a", "my_b"} {
		fmt.Fprintf(&b, "  %s: {driver: mysql, dsn: \"%s:%s@tcp(%s)/%s\"}\n", name,
			dbtest.MariaMonitorUser, dbtest.MariaMonitorPassword, s.proxies[name].addr(), dbtest.EnvDB)
	}
	b.WriteString("pairs:\n")
	for i := range o.pairs {
		engine, left, right, param := "pg", "pg_left", "pg_right", "$1"
		if i%2 == 1 {
			engine, left, right, param = "my", "my_a", "my_b", "?"
		}
		fmt.Fprintf(&b, `  - name: %s-%04d
    left: %s
    right: %s
    left_to_right:
      selector: select id, created_at as ts from a_rows order by id desc limit 20
      validator: select count(*) from a_rows where id = %s
    right_to_left:
      selector: select id, created_at as ts from b_rows order by id desc limit 20
      validator: select count(*) from b_rows where id = %s
`, engine, i, left, right, param, param)
	}
	return b.String()
}

// connections returns how many connections the exporter holds on each
// server, as the servers see them.
func (s *servers) connections(ctx context.Context) (map[string]int64, error) {
	out := map[string]int64{}
	const pgQuery = "select count(*) from pg_stat_activity where application_name = 'spengler'"
	for name, p := range map[string]*dbtest.PG{"pg_left": s.pgLeft, "pg_right": s.pgRight} {
		n, err := p.QueryInt(ctx, dbtest.EnvDB, pgQuery)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out[name] = n
	}
	myQuery := "select count(*) from information_schema.processlist where user = '" +
		dbtest.MariaMonitorUser + "'"
	for name, m := range map[string]*dbtest.MariaDB{"my_a": s.maria.A, "my_b": s.maria.B} {
		n, err := m.QueryInt(ctx, dbtest.EnvDB, myQuery)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out[name] = n
	}
	return out, nil
}

// requests returns how many requests the exporter has sent through each
// proxy: one per burst of bytes from the client that follows an answer.
func (s *servers) requests() map[string]int64 {
	out := map[string]int64{}
	for name, p := range s.proxies {
		out[name] = p.requests()
	}
	return out
}

// freeze stops one server of each engine; thaw lets them go on.
func (s *servers) freeze() error {
	return errors.Join(s.pgRight.Freeze(), s.maria.B.Freeze())
}

func (s *servers) thaw() error {
	return errors.Join(s.pgRight.Thaw(), s.maria.B.Thaw())
}

// waitInSync waits until n directions are in sync.
func (s *servers) waitInSync(ctx context.Context, x *exporter, n int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		st, err := x.status(ctx)
		if err == nil {
			in := 0
			for _, d := range st {
				if d.InSync {
					in++
				}
			}
			if in == n {
				return nil
			}
			err = fmt.Errorf("%d of %d directions in sync", in, n)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("wait for every direction in sync: %w", err)
		}
		time.Sleep(time.Second)
	}
}

// reportLeftovers prints and checks the exporter's connections and queries
// left on the servers once it has exited.
func (s *servers) reportLeftovers(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var conns map[string]int64
	var err error
	for {
		conns, err = s.connections(ctx)
		if err == nil && sum(conns) == 0 {
			break
		}
		if ctx.Err() != nil {
			return fmt.Errorf("after the exporter stopped: connections %v (%v)", conns, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	fmt.Printf("\nafter exit: connections of the exporter on each server %v: nothing left running\n",
		conns)
	return nil
}

func sum(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}
