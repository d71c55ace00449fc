package protocol

import (
	"strconv"
	"strings"
)

// FieldError says what is wrong with one field of one message.
type FieldError struct {
	// Index is the message's position in a batch, or -1 for a single
	// message.
	Index int `json:"index"`
	// Field is the dotted path of the offending field, such as
	// "properties.revenue".
	Field string `json:"field"`
	// Msg says what is wrong with it.
	Msg string `json:"message"`
}

// Path returns the field's full path, with the batch position when there is
// one: "batch[3].properties.revenue".
func (e FieldError) Path() string {
	if e.Index < 0 {
		return e.Field
	}
	p := "batch[" + strconv.Itoa(e.Index) + "]"
	if e.Field == "" {
		return p
	}
	return p + "." + e.Field
}

func (e FieldError) Error() string {
	if e.Field == "" && e.Index < 0 {
		return e.Msg
	}
	return e.Path() + ": " + e.Msg
}

// ValidationError lists every problem found in a request. Decoders return
// it (as *ValidationError) so that a client learns all bad fields at once.
type ValidationError struct {
	Errors []FieldError
	// TooLarge is set when a message or the request exceeded a size limit;
	// HTTP front ends answer 413 for it.
	TooLarge bool
}

// maxReportedErrors bounds how many field errors one request collects.
const maxReportedErrors = 100

func (e *ValidationError) add(idx int, field, msg string) {
	if len(e.Errors) < maxReportedErrors {
		e.Errors = append(e.Errors, FieldError{Index: idx, Field: field, Msg: msg})
	}
}

func (e *ValidationError) Error() string {
	switch len(e.Errors) {
	case 0:
		return "invalid request"
	case 1:
		return e.Errors[0].Error()
	}
	var b strings.Builder
	b.WriteString(e.Errors[0].Error())
	b.WriteString(" (and ")
	b.WriteString(strconv.Itoa(len(e.Errors) - 1))
	b.WriteString(" more)")
	return b.String()
}
