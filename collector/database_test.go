package collector

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/spengler-dev/spengler/db"
)

// gateDB is a database whose every request waits for an answer from the
// test: nil to answer, or an error to fail with.
type gateDB struct {
	sent    atomic.Int32
	arrived chan struct{}
	answer  chan error
}

func newGateDB() *gateDB {
	return &gateDB{arrived: make(chan struct{}, 16), answer: make(chan error, 16)}
}

func (g *gateDB) Do(ctx context.Context, _ db.Request) (db.Response, error) {
	g.sent.Add(1)
	g.arrived <- struct{}{}
	select {
	case err := <-g.answer:
		return db.Response{}, err
	case <-ctx.Done():
		return db.Response{}, ctx.Err()
	}
}

func (g *gateDB) Close() {}

var errGone = &db.Error{Stage: db.StageSelect, Unreachable: true, Err: errors.New("connection refused")}

func TestDatabaseDownSendsOneRequestAtATime(t *testing.T) {
	g := newGateDB()
	d := &database{name: "east", conn: g}
	ctx := t.Context()
	request := func() error {
		_, err := d.do(ctx, db.Request{})
		return err
	}
	// answered sends one request that gets answer, and waits for its arrival.
	answered := func(answer error) error {
		g.answer <- answer
		err := request()
		<-g.arrived
		return err
	}

	// A server error is an answer: it does not count towards down.
	if err := answered(&db.Error{Stage: db.StageSelect, Err: errors.New("syntax error")}); err == nil || errors.Is(err, ErrNotTried) {
		t.Fatalf("request answered with an SQL error: %v", err)
	}
	// downAfter requests in a row unanswered: each of them is sent.
	for i := range downAfter {
		if err := answered(errGone); !errors.Is(err, errGone) {
			t.Fatalf("unanswered request %d: %v, want it sent and failed", i+1, err)
		}
	}
	if d.up.Load() != upNo {
		t.Fatalf("up = %d after %d unanswered requests, want down", d.up.Load(), downAfter)
	}
	sent := g.sent.Load()

	// Down: one request goes out to find out; the others fail at once.
	probe := make(chan error, 1)
	go func() { probe <- request() }()
	<-g.arrived
	for range 2 {
		err := request()
		if !errors.Is(err, ErrNotTried) || !strings.Contains(err.Error(), "connection refused") {
			t.Fatalf("request while the probe runs: %v, want ErrNotTried with the last failure", err)
		}
	}
	if n := g.sent.Load(); n != sent+1 {
		t.Fatalf("%d requests sent while the database was down, want 1", n-sent)
	}

	// The probe gets an answer: the database is back, requests go out again.
	g.answer <- nil
	if err := <-probe; err != nil {
		t.Fatalf("probe: %v", err)
	}
	if d.up.Load() != upYes {
		t.Errorf("up = %d after an answer, want up", d.up.Load())
	}
	if err := answered(nil); err != nil {
		t.Errorf("request after the database answered again: %v", err)
	}
}

func TestDatabaseUnansweredRunMustBeUnbroken(t *testing.T) {
	g := newGateDB()
	d := &database{name: "east", conn: g}
	// A slow query that times out now and then, between answered ones, never
	// takes the database down.
	for i := range 3 * downAfter {
		var answer error
		if i%2 == 0 {
			answer = errGone
		}
		g.answer <- answer
		if _, err := d.do(t.Context(), db.Request{}); errors.Is(err, ErrNotTried) {
			t.Fatalf("request %d not tried: %v", i, err)
		}
		<-g.arrived
	}
}
