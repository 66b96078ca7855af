package dbtest

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"strconv"
	"time"
)

// settingTimeout bounds the wait for a changed server setting to show in new
// sessions.
const settingTimeout = 10 * time.Second

// SetTimeZone makes zone (a name such as Pacific/Kiritimati) the time zone
// of the server: the TimeZone of every new session and log_timezone, set
// with ALTER SYSTEM and a reload. It returns once a new session has it. A
// standby copied from p afterwards runs in zone too.
func (p *PG) SetTimeZone(ctx context.Context, zone string) error {
	lit := quoteLiteral(zone)
	for _, q := range []string{
		"alter system set timezone = " + lit,
		"alter system set log_timezone = " + lit,
		"select pg_reload_conf()",
	} {
		if err := p.Exec(ctx, q); err != nil {
			return fmt.Errorf("%s: set time zone: %w", p.Name, err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, settingTimeout)
	defer cancel()
	err := p.WaitInt(ctx, "postgres", 1,
		"select count(*) from pg_settings where name = 'TimeZone' and setting = $1", zone)
	if err != nil {
		return fmt.Errorf("%s: set time zone: %w", p.Name, err)
	}
	return nil
}

// TimeZone returns the TimeZone setting of a new session on database db.
func (p *PG) TimeZone(ctx context.Context, db string) (string, error) {
	conn, err := p.Connect(ctx, db)
	if err != nil {
		return "", err
	}
	defer closeConn(conn)
	var zone string
	if err := conn.QueryRow(ctx, "show timezone").Scan(&zone); err != nil {
		return "", fmt.Errorf("%s: show timezone: %w", p.Name, err)
	}
	return zone, nil
}

// SetTimeZone sets the global time_zone of the server to zone (an offset
// such as '+13:00', or SYSTEM): the time zone of every new session, as
// --default-time-zone sets it at start-up.
func (m *MariaDB) SetTimeZone(ctx context.Context, zone string) error {
	if err := m.Exec(ctx, "set global time_zone = "+quoteString(zone)); err != nil {
		return fmt.Errorf("%s: set time zone: %w", m.Name, err)
	}
	return nil
}

// UTCOffset returns how far ahead of UTC the clock of a new session on the
// server is, to the minute: NOW() minus UTC_TIMESTAMP().
func (m *MariaDB) UTCOffset(ctx context.Context) (time.Duration, error) {
	var minutes int64
	err := m.withConn(ctx, "", func(c *sql.Conn) error {
		return c.QueryRowContext(ctx,
			"select timestampdiff(minute, utc_timestamp(), now())").Scan(&minutes)
	})
	if err != nil {
		return 0, fmt.Errorf("%s: read utc offset: %w", m.Name, err)
	}
	return time.Duration(minutes) * time.Minute, nil
}

// StreamPair is a PostgreSQL primary and its physical standby, apart from the
// [Env], for a test that needs servers set up unlike the Env's. Database app
// holds table stream_rows, as on the Env's primary.
type StreamPair struct {
	Primary, Standby *PG
	// Dir is the temporary directory holding both servers, removed by Close.
	Dir string
}

// StartStreamPair starts a primary, creates database app and table
// stream_rows on it, runs setup on it (when not nil), and then copies it
// into a streaming standby: what setup changes, settings included, is on
// both.
func StartStreamPair(ctx context.Context, setup func(context.Context, *PG) error) (*StreamPair, error) {
	if _, err := PostgresBinDir(); err != nil {
		return nil, err
	}
	reapOrphansOnce.Do(reapOrphans)
	ctx, cancel := context.WithTimeout(ctx, envTimeout)
	defer cancel()
	dir, err := os.MkdirTemp("", envDirPrefix+strconv.Itoa(os.Getpid())+"-stream-")
	if err != nil {
		return nil, fmt.Errorf("start stream pair: %w", err)
	}
	s := &StreamPair{Dir: dir}
	if err := s.start(ctx, setup); err != nil {
		s.Close()
		return nil, fmt.Errorf("start stream pair: %w", err)
	}
	return s, nil
}

func (s *StreamPair) start(ctx context.Context, setup func(context.Context, *PG) error) error {
	var err error
	if s.Primary, err = StartPG(ctx, "primary", s.Dir); err != nil {
		return err
	}
	if err := EnsureDB(ctx, s.Primary, EnvDB); err != nil {
		return err
	}
	if err := s.Primary.ExecDB(ctx, EnvDB, rowsTable(StreamTable, 1)); err != nil {
		return err
	}
	if setup != nil {
		if err := setup(ctx, s.Primary); err != nil {
			return err
		}
	}
	s.Standby, err = StartStandby(ctx, s.Primary, "standby", s.Dir)
	return err
}

// Close stops both servers and removes s.Dir.
func (s *StreamPair) Close() {
	for _, p := range []*PG{s.Standby, s.Primary} {
		if p != nil {
			_ = p.Close()
		}
	}
	_ = os.RemoveAll(s.Dir)
}
