package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/bevygap-go/bevygap/client"
)

// spinnerFrames animate the progress line on a terminal, one rune per frame.
const spinnerFrames = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"

// spinnerInterval is how often the progress line is redrawn on a terminal.
const spinnerInterval = 100 * time.Millisecond

// isTerminal reports whether w is a character device (a terminal) and TERM does not ask for a
// dumb one. It avoids a dependency on golang.org/x/term: a Stat of the file is enough to tell a
// terminal from a pipe or a regular file.
func isTerminal(w io.Writer, getenv func(string) string) bool {
	f, ok := w.(*os.File)
	if !ok || getenv("TERM") == "dumb" {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progressDisplay shows the matchmaking progress on stderr: on a terminal one spinner line
// redrawn in place, otherwise one plain line per step. It is safe for use by the request's
// callback and its own redraw goroutine at once.
type progressDisplay struct {
	w     io.Writer
	tty   bool
	start time.Time

	mu      sync.Mutex
	status  string
	frame   int
	drawn   bool // a spinner line is on screen
	stopped bool

	stop chan struct{}
	done chan struct{}
}

// newProgressDisplay starts a display writing to w; call finish when the request is over.
func newProgressDisplay(w io.Writer, tty bool) *progressDisplay {
	d := &progressDisplay{w: w, tty: tty, start: time.Now(), stop: make(chan struct{}), done: make(chan struct{})}
	if !tty {
		close(d.done)
		return d
	}
	go d.animate()
	return d
}

func (d *progressDisplay) animate() {
	defer close(d.done)
	t := time.NewTicker(spinnerInterval)
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
			d.mu.Lock()
			if d.status != "" && !d.stopped {
				d.frame++
				d.draw()
			}
			d.mu.Unlock()
		}
	}
}

// draw rewrites the spinner line. d.mu is held.
func (d *progressDisplay) draw() {
	frames := []rune(spinnerFrames)
	fmt.Fprintf(d.w, "\r\033[K%c %s (%.1fs)", frames[d.frame%len(frames)], d.status, time.Since(d.start).Seconds())
	d.drawn = true
}

// update shows one progress step. Finished and Error are left to the final result lines.
func (d *progressDisplay) update(p client.Progress) {
	if p.State == client.StateFinished || p.State == client.StateError {
		return
	}
	text := p.State.String()
	if p.Message != "" {
		text += ": " + p.Message
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return
	}
	if d.tty {
		d.status = text
		d.draw()
		return
	}
	fmt.Fprintf(d.w, "[%6.2fs] %s\n", time.Since(d.start).Seconds(), text)
}

// finish stops the display and clears the spinner line, leaving the terminal clean for the
// result lines.
func (d *progressDisplay) finish() {
	d.mu.Lock()
	if !d.stopped {
		d.stopped = true
		close(d.stop)
		if d.drawn {
			fmt.Fprint(d.w, "\r\033[K")
		}
	}
	d.mu.Unlock()
	<-d.done
}
