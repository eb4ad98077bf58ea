package caddyaauth

import (
	"context"
	"time"
)

// sweeper runs a sweep of the shared state every interval, from start until stop (the
// aauth app's Start and Stop).
type sweeper struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// start runs fn every interval in a goroutine; a running sweeper is left alone.
func (s *sweeper) start(interval time.Duration, fn func(ctx context.Context, now time.Time)) {
	if s.done != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan struct{})
	go func() {
		defer close(s.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				fn(ctx, now)
			}
		}
	}()
}

// stop ends the sweeper and waits for a sweep in progress.
func (s *sweeper) stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	<-s.done
	s.cancel, s.done = nil, nil
}
