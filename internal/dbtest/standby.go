package dbtest

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// streamTimeout bounds the wait for a new standby to stream from its primary.
const streamTimeout = 30 * time.Second

// StartStandby copies primary with pg_basebackup (-R -X stream) into
// baseDir/name, starts the copy as a hot standby on a free loopback port and waits
// until it streams WAL from primary (pg_stat_wal_receiver shows streaming).
func StartStandby(ctx context.Context, primary *PG, name, baseDir string) (*PG, error) {
	s, err := newPG(name, baseDir)
	if err != nil {
		return nil, err
	}
	err = s.runTool(ctx, "pg_basebackup", "-D", s.Dir, "-h", "127.0.0.1",
		"-p", strconv.Itoa(primary.Port), "-U", "postgres", "-R", "-X", "stream",
		"-c", "fast", "--no-sync")
	if err == nil {
		s.mu.Lock()
		err = s.start(ctx, true)
		s.mu.Unlock()
	}
	if err == nil {
		err = s.WaitStreaming(ctx)
	}
	if err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

// WaitStreaming waits, for at most 30s, until the standby streams WAL from its
// primary.
func (s *PG) WaitStreaming(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, streamTimeout)
	defer cancel()
	err := s.WaitInt(ctx, "postgres", 1,
		"select count(*) from pg_stat_wal_receiver where status = 'streaming'")
	if err != nil {
		return fmt.Errorf("%s: wait for streaming: %w", s.Name, err)
	}
	return nil
}

// PauseReplay asks the standby to stop replaying WAL (pg_wal_replay_pause): WAL
// written on the primary from then on is received but not applied.
func (s *PG) PauseReplay(ctx context.Context) error {
	return s.Exec(ctx, "select pg_wal_replay_pause()")
}

// ResumeReplay lets the standby replay WAL again (pg_wal_replay_resume).
func (s *PG) ResumeReplay(ctx context.Context) error {
	return s.Exec(ctx, "select pg_wal_replay_resume()")
}
