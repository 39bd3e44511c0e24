package gameserver

import (
	"errors"
	"fmt"

	"github.com/bevygap-go/bevygap/edgegap"
)

// ErrConfig is matched (errors.Is) by every error that retrying cannot fix: missing or malformed
// ARBITRIUM_* variables, an invalid [Config], or a context API that rejects the deployment's own
// URL or token. A game server should exit when it sees one.
var ErrConfig = errors.New("gameserver: configuration error")

// Arbitrium is the deployment's view of itself, read from the ARBITRIUM_* environment by
// [EnvFromEnviron]. Its String, GoString and LogValue methods never print the two tokens.
// It is [edgegap.Arbitrium]; the parser and its checks live in package edgegap.
type Arbitrium = edgegap.Arbitrium

// Port is one entry of ARBITRIUM_PORTS_MAPPING: a port of the app version and the public port
// Edgegap mapped it to (see [edgegap.Port]).
type Port = edgegap.Port

// EnvFromEnviron reads the ARBITRIUM_* variables with getenv (usually os.Getenv) with
// [edgegap.ArbitriumFromEnv]. It checks all of them and returns an error matching ErrConfig
// that wraps one *[edgegap.EnvError] (errors.As) listing every missing variable and every
// malformed one: URLs must be absolute http(s) URLs, the public IP an IP literal, and the
// location and ports mapping JSON objects of the documented shape.
func EnvFromEnviron(getenv func(string) string) (Arbitrium, error) {
	a, err := edgegap.ArbitriumFromEnv(getenv)
	if err != nil {
		return Arbitrium{}, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return a, nil
}
