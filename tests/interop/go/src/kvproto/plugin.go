package kvproto

// The go-plugin glue, as in go-plugin's examples/grpc/shared: the KV
// interface, its gRPC client and server adapters and the plugin.Plugin
// that go-plugin dispenses under the name "kv".

import (
	"context"
	"time"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// Handshake is the handshake of go-plugin's KV example; hosts may override
// the cookie.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "BASIC_PLUGIN",
	MagicCookieValue: "hello",
}

// KV is the interface the plugin implements and the host uses.
type KV interface {
	Put(key string, value []byte) error
	Get(key string) ([]byte, error)
}

// CallTimeout bounds every KV RPC the host makes.
const CallTimeout = 10 * time.Second

// GRPCClient is the host-side KV implementation that talks over gRPC.
type GRPCClient struct{ client KVClient }

func (m *GRPCClient) Put(key string, value []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), CallTimeout)
	defer cancel()
	_, err := m.client.Put(ctx, &PutRequest{Key: key, Value: value})
	return err
}

func (m *GRPCClient) Get(key string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), CallTimeout)
	defer cancel()
	resp, err := m.client.Get(ctx, &GetRequest{Key: key})
	if err != nil {
		return nil, err
	}
	return resp.Value, nil
}

// GRPCServer is the plugin-side gRPC server that forwards to a KV.
type GRPCServer struct {
	Impl KV
}

func (m *GRPCServer) Put(ctx context.Context, req *PutRequest) (*Empty, error) {
	return &Empty{}, m.Impl.Put(req.Key, req.Value)
}

func (m *GRPCServer) Get(ctx context.Context, req *GetRequest) (*GetResponse, error) {
	v, err := m.Impl.Get(req.Key)
	return &GetResponse{Value: v}, err
}

// KVGRPCPlugin is the plugin.GRPCPlugin for KV (gRPC only).
type KVGRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	// Impl is set on the plugin side only.
	Impl KV
}

func (p *KVGRPCPlugin) GRPCServer(broker *plugin.GRPCBroker, s *grpc.Server) error {
	RegisterKVServer(s, &GRPCServer{Impl: p.Impl})
	return nil
}

func (p *KVGRPCPlugin) GRPCClient(ctx context.Context, broker *plugin.GRPCBroker, c *grpc.ClientConn) (interface{}, error) {
	return &GRPCClient{client: NewKVClient(c)}, nil
}

var _ plugin.GRPCPlugin = &KVGRPCPlugin{}
