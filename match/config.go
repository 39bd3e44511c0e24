package match

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"time"
)

// Config is the set of queues of one game version.
type Config struct {
	// Queues, each with a distinct name.
	Queues []Queue `json:"queues"`
}

// Validate checks every queue and that names are distinct; the error wraps
// [ErrInvalidConfig] and names the queue and the field.
func (c Config) Validate() error {
	seen := make(map[string]bool, len(c.Queues))
	for _, q := range c.Queues {
		if err := q.Validate(); err != nil {
			return err
		}
		if seen[q.Name] {
			return q.configErr("name", "defined twice")
		}
		seen[q.Name] = true
	}
	return nil
}

// Queue returns the queue called name, or an error wrapping [ErrUnknownQueue].
func (c Config) Queue(name string) (Queue, error) {
	for _, q := range c.Queues {
		if q.Name == name {
			return q, nil
		}
	}
	return Queue{}, fmt.Errorf("%w: there is no queue %q", ErrUnknownQueue, name)
}

// ParseConfig decodes and validates a queue file ({"queues": [...]}, see the package
// documentation). Unknown fields are an error; durations are strings such as "10s". The
// queues come back normalized (multiple ≥ 1, kind set).
func ParseConfig(data []byte) (Config, error) {
	var raw struct {
		Queues []json.RawMessage `json:"queues"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return Config{}, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if raw.Queues == nil {
		return Config{}, fmt.Errorf("%w: no \"queues\" list", ErrInvalidConfig)
	}
	c := Config{Queues: make([]Queue, 0, len(raw.Queues))}
	for i, r := range raw.Queues {
		var q Queue
		if err := json.Unmarshal(r, &q); err != nil {
			var named struct {
				Name string `json:"name"`
			}
			_ = json.Unmarshal(r, &named)
			return Config{}, fmt.Errorf("%w: queues[%d] (%q): %w", ErrInvalidConfig, i, named.Name, err)
		}
		c.Queues = append(c.Queues, q)
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	for i := range c.Queues {
		c.Queues[i] = c.Queues[i].normalized()
	}
	return c, nil
}

// LoadConfig reads and validates a queue file (see [ParseConfig]).
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("match: read queue config: %w", err)
	}
	c, err := ParseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Default returns the queues of `bevygap dev`: "duo", exactly two players on a fresh game
// server (kind match) who wait at most 2 minutes, and "room", 2 to 4 players on shared seats
// (kind seat) whose minimum drops to 1 after 10 s, open to backfill.
func Default() Config {
	return Config{Queues: []Queue{
		{Name: "duo", Min: 2, Max: 2, Multiple: 1, Kind: KindMatch, WaitLimit: 2 * time.Minute},
		{Name: "room", Min: 2, Max: 4, Multiple: 1, Kind: KindSeat, RelaxAfter: 10 * time.Second, RelaxedMin: 1, Backfill: true},
	}}
}
