package edge

import (
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/unico-cdp/unico/edge/queue"
	"github.com/unico-cdp/unico/protocol"
)

// Operator endpoints of the quarantine (see edge/queue and edge/uplink).
const (
	QuarantinePath      = "/v1/quarantine"
	QuarantineRetryPath = "/v1/quarantine/retry"
)

// QuarantinedEvent is one entry of GET /v1/quarantine.
type QuarantinedEvent struct {
	Seq           uint64    `json:"seq"`
	ID            string    `json:"id,omitempty"`
	Channel       string    `json:"channel"`
	ReceivedAt    time.Time `json:"received_at"`
	QuarantinedAt time.Time `json:"quarantined_at"`
	HubError      string    `json:"hub_error"`
	// Event is the event when its bytes decode, else DataBase64 holds
	// them.
	Event       *protocol.Event `json:"event,omitempty"`
	DecodeError string          `json:"decode_error,omitempty"`
	DataBase64  []byte          `json:"data_base64,omitempty"`
}

// QuarantineList is the JSON of GET /v1/quarantine.
type QuarantineList struct {
	Events []QuarantinedEvent `json:"events"`
	// NextCursor, when set, is the cursor of the next page.
	NextCursor        *uint64 `json:"next_cursor"`
	QuarantinedEvents int64   `json:"quarantined_events"`
	QuarantinedBytes  int64   `json:"quarantined_bytes"`
}

type quarantineAPI struct{ q *queue.Queue }

func apiErr(ctx *fasthttp.RequestCtx, code int, field, msg string) {
	writeJSONBody(ctx, code, map[string]string{"error": msg, "field": field})
}

func writeJSONBody(ctx *fasthttp.RequestCtx, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = fasthttp.StatusInternalServerError, []byte(`{"error":"internal error"}`)
	}
	ctx.SetStatusCode(code)
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}

// uintArg parses the query argument name; ok is false (and a 400 written)
// when it is present and not a positive integer.
func uintArg(ctx *fasthttp.RequestCtx, name string) (v uint64, present, ok bool) {
	raw := ctx.QueryArgs().Peek(name)
	if raw == nil {
		return 0, false, true
	}
	v, err := strconv.ParseUint(string(raw), 10, 64)
	if err != nil || v == 0 {
		apiErr(ctx, fasthttp.StatusBadRequest, name, name+" must be a positive integer")
		return 0, true, false
	}
	return v, true, true
}

func methodNotAllowed(ctx *fasthttp.RequestCtx, allow string) {
	ctx.Response.Header.Set("Allow", allow)
	apiErr(ctx, fasthttp.StatusMethodNotAllowed, "", "method not allowed; use "+allow)
}

// queueErr answers an error of the queue.
func queueErr(ctx *fasthttp.RequestCtx, err error) {
	switch {
	case errors.Is(err, queue.ErrNotQuarantined):
		apiErr(ctx, fasthttp.StatusNotFound, "seq", err.Error())
	case errors.Is(err, queue.ErrClosed):
		ctx.Response.Header.Set("Retry-After", "5")
		apiErr(ctx, fasthttp.StatusServiceUnavailable, "", "shutting down, retry later")
	default:
		apiErr(ctx, fasthttp.StatusInternalServerError, "", err.Error())
	}
}

// handle serves GET (list) and DELETE (discard one) on QuarantinePath.
func (a quarantineAPI) handle(ctx *fasthttp.RequestCtx) {
	switch {
	case ctx.IsGet() || ctx.IsHead():
		a.list(ctx)
	case ctx.IsDelete():
		seq, present, ok := uintArg(ctx, "seq")
		if !ok {
			return
		}
		if !present {
			apiErr(ctx, fasthttp.StatusBadRequest, "seq", "seq is required: the quarantined event to discard")
			return
		}
		if err := a.q.DiscardQuarantined(seq); err != nil {
			queueErr(ctx, err)
			return
		}
		writeJSONBody(ctx, fasthttp.StatusOK, map[string]uint64{"discarded": 1, "seq": seq})
	default:
		methodNotAllowed(ctx, "GET, DELETE")
	}
}

func (a quarantineAPI) list(ctx *fasthttp.RequestCtx) {
	limit := queue.DefaultQuarantineList
	if l, present, ok := uintArg(ctx, "limit"); !ok {
		return
	} else if present {
		if l > queue.MaxQuarantineList {
			apiErr(ctx, fasthttp.StatusBadRequest, "limit", "limit must be at most "+strconv.Itoa(queue.MaxQuarantineList))
			return
		}
		limit = int(l)
	}
	cursor, _, ok := uintArg(ctx, "cursor")
	if !ok {
		return
	}
	recs, next, err := a.q.ListQuarantined(cursor, limit)
	if err != nil {
		queueErr(ctx, err)
		return
	}
	st := a.q.Stats()
	out := QuarantineList{Events: make([]QuarantinedEvent, 0, len(recs)), QuarantinedEvents: st.QuarantineDepth, QuarantinedBytes: st.QuarantineBytes}
	if next != 0 {
		out.NextCursor = &next
	}
	for _, r := range recs {
		qe := QuarantinedEvent{Seq: r.Seq, Channel: r.Channel, ReceivedAt: r.ReceivedAt.UTC(), QuarantinedAt: r.QuarantinedAt.UTC(), HubError: r.HubError}
		var e protocol.Event
		if err := protocol.UnmarshalEvent(r.Data, &e); err != nil {
			qe.DecodeError, qe.DataBase64 = err.Error(), r.Data
		} else if _, err := json.Marshal(&e); err != nil {
			qe.DecodeError, qe.DataBase64 = "encode as JSON: "+err.Error(), r.Data
		} else {
			qe.ID, qe.Event = e.ID, &e
		}
		out.Events = append(out.Events, qe)
	}
	writeJSONBody(ctx, fasthttp.StatusOK, out)
}

// retry serves POST on QuarantineRetryPath: all events, or ?seq= one.
func (a quarantineAPI) retry(ctx *fasthttp.RequestCtx) {
	if !ctx.IsPost() {
		methodNotAllowed(ctx, "POST")
		return
	}
	seq, _, ok := uintArg(ctx, "seq")
	if !ok {
		return
	}
	n, first, err := a.q.RetryQuarantined(seq)
	if err != nil && n == 0 {
		queueErr(ctx, err)
		return
	}
	body := map[string]any{"requeued": n, "first_seq": first}
	if err != nil {
		// Some moved before the error: say both.
		body["error"] = err.Error()
		writeJSONBody(ctx, fasthttp.StatusInternalServerError, body)
		return
	}
	writeJSONBody(ctx, fasthttp.StatusOK, body)
}
