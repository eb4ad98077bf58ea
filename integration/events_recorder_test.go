package integration

import (
	"context"
	"maps"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
)

func init() {
	caddy.RegisterModule(eventRecorder{})
}

// eventRecorder is an events handler for tests (events.handlers.aauth_test_recorder):
// a subscription in the events app hands it the events, which it keeps in recorded.
type eventRecorder struct{}

type recordedEvent struct {
	name   string
	origin string
	data   map[string]any
}

var recorded struct {
	sync.Mutex
	events []recordedEvent
}

// CaddyModule returns the Caddy module information.
func (eventRecorder) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "events.handlers.aauth_test_recorder", New: func() caddy.Module { return new(eventRecorder) }}
}

// Handle records e.
func (eventRecorder) Handle(_ context.Context, e caddy.Event) error {
	origin := ""
	if o := e.Origin(); o != nil {
		origin = string(o.CaddyModule().ID)
	}
	recorded.Lock()
	defer recorded.Unlock()
	recorded.events = append(recorded.events, recordedEvent{name: e.Name(), origin: origin, data: maps.Clone(e.Data)})
	return nil
}

// UnmarshalCaddyfile takes `on <event> aauth_test_recorder` with no arguments.
func (eventRecorder) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	for d.Next() {
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	return nil
}

// eventsNamed returns the recorded events called name.
func eventsNamed(name string) []recordedEvent {
	recorded.Lock()
	defer recorded.Unlock()
	var out []recordedEvent
	for _, e := range recorded.events {
		if e.name == name {
			out = append(out, e)
		}
	}
	return out
}

func resetEvents() {
	recorded.Lock()
	defer recorded.Unlock()
	recorded.events = nil
}

var (
	_ caddyevents.Handler   = eventRecorder{}
	_ caddyfile.Unmarshaler = eventRecorder{}
)
