package benchproto

// The go-plugin glue: the Bench server a plugin serves and the
// plugin.GRPCPlugin that go-plugin dispenses under the name "bench". The host
// gets the generated BenchClient itself (no wrapper), so the benchmark
// measures go-plugin's connection and grpc-go, nothing of ours.

import (
	"context"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// Handshake is the handshake of the benchmark contract (INTEROP.md):
// BASIC_PLUGIN=hello, app protocol version 1; hosts may override the cookie.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "BASIC_PLUGIN",
	MagicCookieValue: "hello",
}

// PluginName is the name the plugin map carries Bench under.
const PluginName = "bench"

// Server implements bench.v1.Bench: Echo returns the payload unchanged,
// Download sends count messages of chunk_size bytes (0xAB), one buffer
// allocated per call and sent again and again (grpc-go encodes the message
// inside Send, so reusing it is safe).
type Server struct{}

func (Server) Echo(_ context.Context, in *Payload) (*Payload, error) {
	return in, nil
}

func (Server) Download(req *DownloadRequest, stream Bench_DownloadServer) error {
	chunk := bytes0xAB(int(req.ChunkSize))
	msg := &Payload{Data: chunk}
	for i := uint32(0); i < req.Count; i++ {
		if err := stream.Send(msg); err != nil {
			return err
		}
	}
	return nil
}

func bytes0xAB(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = 0xAB
	}
	return b
}

// BenchGRPCPlugin is the plugin.GRPCPlugin for bench.v1.Bench (gRPC only).
// On the plugin side GRPCServer registers Impl (Server{} when nil); on the
// host side GRPCClient returns a BenchClient on go-plugin's one connection.
type BenchGRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	// Impl is used on the plugin side only; nil means Server{}.
	Impl BenchServer
}

func (p *BenchGRPCPlugin) GRPCServer(broker *plugin.GRPCBroker, s *grpc.Server) error {
	impl := p.Impl
	if impl == nil {
		impl = Server{}
	}
	RegisterBenchServer(s, impl)
	return nil
}

func (p *BenchGRPCPlugin) GRPCClient(ctx context.Context, broker *plugin.GRPCBroker, c *grpc.ClientConn) (interface{}, error) {
	return NewBenchClient(c), nil
}

var _ plugin.GRPCPlugin = &BenchGRPCPlugin{}
