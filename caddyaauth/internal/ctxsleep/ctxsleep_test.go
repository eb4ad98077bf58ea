package ctxsleep

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestSleep(t *testing.T) {
	done, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name    string
		ctx     context.Context
		d       time.Duration
		want    error
		atLeast time.Duration
	}{
		{"waits", context.Background(), 20 * time.Millisecond, nil, 20 * time.Millisecond},
		{"zero", context.Background(), 0, nil, 0},
		{"cancelled ends at once", done, time.Hour, context.Canceled, 0},
		{"cancelled zero", done, 0, context.Canceled, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			err := Sleep(tt.ctx, tt.d)
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("Sleep = %v, want %v", err, tt.want)
			}
			if el := time.Since(start); el < tt.atLeast || el > tt.atLeast+time.Second {
				t.Fatalf("took %v, want about %v", el, tt.atLeast)
			}
		})
	}
}
