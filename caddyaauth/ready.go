package caddyaauth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
)

// readyEvent is the event Caddy emits once every app of a config has started, that is
// once the http app's listeners are open (caddy.run, after the apps' Start): on
// `caddy run` and after each reload, never under `caddy validate`. Caddy marks the event
// experimental.
const readyEvent = "started"

// readyOut is where the ready message is printed: standard output, apart from Caddy's log
// (standard error by default), so a person running the demo sees the line on its own.
var readyOut io.Writer = os.Stdout

// validateReadyMessage accepts an empty message or one line of printable text.
func validateReadyMessage(msg string) error {
	if strings.ContainsFunc(msg, func(r rune) bool { return !unicode.IsPrint(r) && r != '\t' }) {
		return errors.New("ready_message must be one line of printable text")
	}
	return nil
}

// provisionReady subscribes the ready message, if any, to Caddy's started event through
// the events app of this config (loaded, and so started, for the purpose).
func (a *App) provisionReady(ctx caddy.Context) error {
	if a.ReadyMessage == "" {
		return nil
	}
	v, err := ctx.App("events")
	if err != nil {
		return fmt.Errorf("ready_message: loading the events app: %w", err)
	}
	events, ok := v.(*caddyevents.App)
	if !ok {
		return fmt.Errorf("ready_message: the events app has unexpected type %T", v)
	}
	if err := events.On(readyEvent, readyPrinter{line: a.ReadyMessage, out: readyOut}); err != nil {
		return fmt.Errorf("ready_message: %w", err)
	}
	return nil
}

// readyPrinter prints its line when the event it is subscribed to is emitted.
type readyPrinter struct {
	line string
	out  io.Writer
}

// Handle prints the line. Caddy emits the started event synchronously, after the apps
// started, so the servers accept connections when the line appears.
func (p readyPrinter) Handle(context.Context, caddy.Event) error {
	_, err := fmt.Fprintln(p.out, p.line)
	return err
}

var _ caddyevents.Handler = readyPrinter{}
