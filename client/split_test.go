package client

import (
	"bufio"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

// scanAll splits body with splitFeedback, reading it one byte at a time so that every
// "need more data" path is taken.
func scanAll(body string) ([]string, error) {
	return scanReader(iotest.OneByteReader(strings.NewReader(body)))
}

// scanReader splits what r reads with splitFeedback.
func scanReader(r io.Reader) ([]string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 16), maxMessageBytes)
	sc.Split(new(feedbackSplitter).split)
	var out []string
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out, sc.Err()
}

func TestSplitFeedback(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		body    string
		want    []string
		wantErr error
	}{
		{"empty", "", nil, nil},
		{"white space only", " \n\r\n\t", nil, nil},
		{"ndjson", "\"Acknowledged\"\n{\"ProgressReport\":\"a\"}\n", []string{`"Acknowledged"`, `{"ProgressReport":"a"}`}, nil},
		{"concatenated", `"Acknowledged"{"SessionRequestAccepted":"x"}{"Error":[500,"m"]}`,
			[]string{`"Acknowledged"`, `{"SessionRequestAccepted":"x"}`, `{"Error":[500,"m"]}`}, nil},
		{"braces and quotes inside strings", `{"ProgressReport":"a } \" { ] b\\"}"Acknowledged"`,
			[]string{`{"ProgressReport":"a } \" { ] b\\"}`, `"Acknowledged"`}, nil},
		{"nested", `{"SessionReady":{"token":"x","ip":"1.2.3.4","port":1,"cert_digest":""}}` + "\r\n",
			[]string{`{"SessionReady":{"token":"x","ip":"1.2.3.4","port":1,"cert_digest":""}}`}, nil},
		{"ERR line", "\"Acknowledged\"\nERR no responders\r\n{\"x\":1}", []string{`"Acknowledged"`, "ERR no responders", `{"x":1}`}, nil},
		{"ERR at EOF without newline", "ERR boom", []string{"ERR boom"}, nil},
		{"truncated object", `"Acknowledged"{"ProgressReport":"a`, []string{`"Acknowledged"`}, errTruncated},
		{"truncated string", `"Ackn`, nil, errTruncated},
		{"array", `[1,[2]] "x"`, []string{`[1,[2]]`, `"x"`}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := scanAll(tt.body)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("tokens:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestSplitFeedbackTooLong(t *testing.T) {
	t.Parallel()
	_, err := scanAll(`{"ProgressReport":"` + strings.Repeat("x", maxMessageBytes) + `"}`)
	if !errors.Is(err, bufio.ErrTooLong) {
		t.Fatalf("err = %v, want bufio.ErrTooLong", err)
	}
}

// FuzzSplitFeedback checks that the splitter never panics or loops, that its tokens are
// pieces of the input in order, and that a body of well-formed documents separated or not by
// new lines splits back into exactly those documents.
func FuzzSplitFeedback(f *testing.F) {
	f.Add(`"Acknowledged"{"ProgressReport":"a"}`, "\n")
	f.Add(`{"ProgressReport":"\"}{"}`, "")
	f.Add("ERR x\r\n", "\r\n")
	f.Add(`{"Error":[500,"m"]}`, " ")
	f.Fuzz(func(t *testing.T, body, sep string) {
		toks, _ := scanAll(body)
		rest := body
		for _, tok := range toks {
			i := strings.Index(rest, tok)
			if i < 0 {
				t.Fatalf("token %q is not in the remaining input %q", tok, rest)
			}
			rest = rest[i+len(tok):]
		}

		// Round trip: the same JSON string document repeated, joined with sep if sep is white space.
		if strings.Trim(sep, " \t\r\n") != "" {
			return
		}
		doc := `{"ProgressReport":` + quoteJSON(body) + `}`
		joined := doc + sep + doc + sep + doc
		toks, err := scanAll(joined)
		if len(doc) > maxMessageBytes {
			return
		}
		if err != nil || len(toks) != 3 || toks[0] != doc || toks[2] != doc {
			t.Fatalf("round trip of %q: %q, %v", joined, toks, err)
		}
	})
}

// quoteJSON quotes s as a JSON string (escaping only what JSON requires, like serde_json).
func quoteJSON(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20:
			b.WriteString(`\u00`)
			b.WriteByte("0123456789abcdef"[r>>4])
			b.WriteByte("0123456789abcdef"[r&0xf])
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
