package main

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// troubleshootingURL is the page that lists the messages of every command with their meaning
// and fix (docs/troubleshooting.md in the repository).
const troubleshootingURL = "https://github.com/bevygap-go/bevygap/blob/main/docs/troubleshooting.md"

// printTroubleshootingPointer follows the "Error: …" line of a runtime failure with a pointer to
// the troubleshooting page. A run the user interrupted (Ctrl-C) gets none.
func printTroubleshootingPointer(w io.Writer, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	fmt.Fprintf(w, "See: %s (what the message means and the fix)\n", troubleshootingURL)
}
