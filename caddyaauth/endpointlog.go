package caddyaauth

import (
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/decisionlog"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

// endpointLine is the decision line of a request to one of the gateway's own endpoints
// (aauth_egress, the interaction chaining endpoints), written through package
// decisionlog: "<msg> refused" at Info with the error code, "<msg> passed" at Debug for
// an answer that went through, "<msg> waiting" at Debug for a poll still waiting.
type endpointLine struct {
	logger *zap.Logger
	start  time.Time
	msg    string
	fields []zap.Field // what is known so far: endpoint, resource, target; never a token
}

func newEndpointLine(logger *zap.Logger, msg string, fields ...zap.Field) *endpointLine {
	return &endpointLine{logger: logger, start: time.Now(), msg: msg, fields: fields}
}

// add records further fields.
func (l *endpointLine) add(fields ...zap.Field) { l.fields = append(l.fields, fields...) }

// refuse answers status with the JSON error e and logs the refusal.
func (l *endpointLine) refuse(w http.ResponseWriter, r *http.Request, status int, e wire.Error) error {
	l.log(r, status, e.Code, e.Description)
	wire.WriteError(w, status, e)
	return nil
}

// log writes the line: a pass for code ok, a wait for code "waiting", else a refusal.
func (l *endpointLine) log(r *http.Request, status int, code, desc string) {
	outcome := "refused"
	switch code {
	case CodeOK:
		outcome = "passed"
	case outcomeWaiting:
		outcome = outcomeWaiting
	}
	decisionlog.Write(l.logger, r, decisionlog.Decision{
		Msg: l.msg + " " + outcome, Pass: outcome != "refused", Status: status, Code: code, Description: desc,
		Elapsed: time.Since(l.start), Fields: l.fields,
	})
}

// outcomeWaiting is the code of a chained request's poll answered 202.
const outcomeWaiting = "waiting"
