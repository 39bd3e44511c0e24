package netcode_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"time"

	"github.com/bevygap-go/bevygap/netcode"
)

// A game server and a client on loopback: the client connects with a token minted by the
// matchmaker's key, sends a payload, and the server echoes it.
func ExampleServer() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	connected := make(chan uint64, 1)
	key, _ := netcode.GenerateKey() // shared by the matchmaker and the game servers
	srv, err := netcode.NewServer(netcode.ServerConfig{
		Addr:       "127.0.0.1:0",
		ProtocolID: 1982,
		PrivateKey: key,
		OnConnectRequest: func(ctx context.Context, clientID uint64, _ [netcode.UserDataBytes]byte) error {
			if clientID == 13 {
				// e.g. no Edgegap session for this client
				return &netcode.DeniedError{Reason: netcode.DeniedBanned}
			}
			return nil
		},
		OnConnect: func(clientID uint64, _ netip.AddrPort) { connected <- clientID },
		Logger:    quiet,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := srv.Listen(ctx); err != nil {
		fmt.Println(err)
		return
	}
	go func() { _ = srv.Serve(ctx) }()
	defer srv.Close()

	// The matchmaker's side.
	minter := &netcode.Minter{Key: key}
	tok, _ := minter.Mint(netcode.TokenParams{ProtocolID: 1982, ClientID: 42, ServerAddrs: []netip.AddrPort{srv.Addr()}})

	// The player's side.
	c, err := netcode.Dial(ctx, []byte(tok.Base64()), netcode.ClientConfig{Logger: quiet})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	fmt.Println("connected:", <-connected)
	_ = c.Send([]byte("hello"))

	p, _ := srv.Recv(ctx)
	fmt.Printf("server got %q from %d\n", p.Data, p.ClientID)
	_ = srv.Send(p.ClientID, p.Data)
	echo, _ := c.Recv(ctx)
	fmt.Printf("client got %q\n", echo)

	banned, _ := minter.Mint(netcode.TokenParams{ProtocolID: 1982, ClientID: 13, ServerAddrs: []netip.AddrPort{srv.Addr()}})
	_, err = netcode.DialToken(ctx, banned, netcode.ClientConfig{Logger: quiet})
	var denied *netcode.DeniedError
	if errors.As(err, &denied) {
		fmt.Println("client 13 denied:", denied.Reason)
	}
	// Output:
	// connected: 42
	// server got "hello" from 42
	// client got "hello"
	// client 13 denied: banned
}

// A game server over WebTransport with a self-renewing certificate, and a client pinned to
// the certificate's digest as a browser would be (the matchmaker hands the digest out as the
// session's cert_digest).
func ExampleServer_webTransport() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	rot, err := netcode.NewCertRotator(netcode.CertRotatorConfig{
		Hosts:  []string{"127.0.0.1"},
		Logger: quiet,
		OnRenew: func(ctx context.Context, d netcode.CertDigest) error {
			return nil // publish d.String() where clients look it up, before it is served
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	go func() { _ = rot.Run(ctx) }()
	published := rot.Digest().String() // "xx:xx:...": 32 bytes in wtransport's form

	key, _ := netcode.GenerateKey()
	srv, err := netcode.NewServer(netcode.ServerConfig{
		Transport:  netcode.TransportWebTransport,
		TLSConfig:  rot.TLSConfig(),
		Addr:       "127.0.0.1:0",
		ProtocolID: 1982,
		PrivateKey: key,
		Logger:     quiet,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := srv.Listen(ctx); err != nil {
		fmt.Println(err)
		return
	}
	go func() { _ = srv.Serve(ctx) }()
	defer srv.Close()

	minter := &netcode.Minter{Key: key}
	tok, _ := minter.Mint(netcode.TokenParams{ProtocolID: 1982, ClientID: 42, ServerAddrs: []netip.AddrPort{srv.Addr()}})

	digest, err := netcode.ParseCertDigest(published)
	if err != nil {
		fmt.Println(err)
		return
	}
	c, err := netcode.DialToken(ctx, tok, netcode.ClientConfig{Transport: netcode.TransportWebTransport, CertDigest: &digest, Logger: quiet})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	fmt.Println("connected over", srv.Transport(), "as", c.ClientID())

	wrong := netcode.CertDigest{1, 2, 3}
	_, err = netcode.DialToken(ctx, tok, netcode.ClientConfig{Transport: netcode.TransportWebTransport, CertDigest: &wrong, Logger: quiet})
	fmt.Println("wrong digest:", errors.Is(err, netcode.ErrCertMismatch))
	// Output:
	// connected over webtransport as 42
	// wrong digest: true
}
