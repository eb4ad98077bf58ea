package admincmd

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
)

// maxAnswer bounds what is read from one admin API answer.
const maxAnswer = 16 << 20

// client calls the admin API of a running Caddy through caddycmd.AdminAPIRequest, the
// request `caddy stop` and `caddy reload` make (TCP, unix socket or fd addresses).
type client struct {
	addr string
}

// newClient resolves the admin address as `caddy stop` does: --address, else the admin
// listener of the --config file (with --adapter), else Caddy's default (localhost:2019).
func newClient(fl caddycmd.Flags) (*client, error) {
	addr, err := caddycmd.DetermineAdminAPIAddress(fl.String("address"), nil, fl.String("config"), fl.String("adapter"))
	if err != nil {
		return nil, fmt.Errorf("finding the admin API address: %w", err)
	}
	return &client{addr: addr}, nil
}

// apiError is a non-2xx answer of the admin API, with the message of its JSON error
// body ({"error": "..."}, as Caddy's admin endpoint writes it).
type apiError struct {
	addr    string
	status  int
	message string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("admin API at %s answered HTTP %d: %s", e.addr, e.status, e.message)
}

// call makes one request; a 2xx answer's body is returned. body, if not nil, is sent as
// JSON.
func (c *client) call(method, uri string, body any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	resp, err := caddycmd.AdminAPIRequest(c.addr, method, uri, nil, rd)
	if err != nil {
		return nil, c.explain(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, fmt.Errorf("admin API at %s: reading the answer: %w", c.addr, err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, &apiError{addr: c.addr, status: resp.StatusCode, message: errorMessage(b)}
	}
	return b, nil
}

// callJSON makes one request and decodes its JSON answer into v; the raw answer is
// returned too (for --json).
func (c *client) callJSON(method, uri string, body, v any) ([]byte, error) {
	raw, err := c.call(method, uri, body)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return nil, fmt.Errorf("admin API at %s: the answer to %s %s is not the expected JSON (is the aauth plugin in that Caddy?): %w", c.addr, method, uri, err)
	}
	return raw, nil
}

// respondedPrefix starts AdminAPIRequest's error for an answer of status 400 or more
// ("caddy responded with error: HTTP <status>: <body>"); the status is read back from it.
const respondedPrefix = "caddy responded with error: HTTP "

// explain turns an AdminAPIRequest error into one that names the admin address: an
// error answer becomes an *apiError, a failed connection says the API is unreachable.
func (c *client) explain(err error) error {
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, respondedPrefix); ok {
		code, body, _ := strings.Cut(rest, ": ")
		if status, cerr := strconv.Atoi(code); cerr == nil {
			return &apiError{addr: c.addr, status: status, message: errorMessage([]byte(body))}
		}
	}
	if rest, ok := strings.CutPrefix(msg, "performing request: "); ok {
		return fmt.Errorf("admin API at %s is unreachable (is Caddy running with its admin endpoint there? set --address, or --config to read it from a config): %s", c.addr, rest)
	}
	return fmt.Errorf("admin API at %s: %w", c.addr, err)
}

// errorMessage is the "error" member of a JSON error body, else the body itself.
func errorMessage(body []byte) string {
	var v struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &v) == nil && v.Error != "" {
		return v.Error
	}
	if s := strings.TrimSpace(string(body)); s != "" {
		return s
	}
	return "(no message)"
}

// statusOf is the HTTP status of an *apiError in err's chain, else 0.
func statusOf(err error) int {
	if ae, ok := errors.AsType[*apiError](err); ok {
		return ae.status
	}
	return 0
}
