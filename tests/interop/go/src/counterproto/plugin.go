package counterproto

// The go-plugin glue, in the shape of go-plugin's examples/bidirectional:
// the Counter interface, its gRPC adapters that pass an AddHelper through
// the GRPCBroker, and the plugin.Plugin dispensed as "counter".

import (
	"context"
	"sync"
	"time"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// Handshake is the handshake of go-plugin's examples (and rpcplugin's
// bidirectional example).
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "BASIC_PLUGIN",
	MagicCookieValue: "hello",
}

// CallTimeout bounds every RPC, brokered or not.
const CallTimeout = 10 * time.Second

// AddHelper adds two numbers; the host implements it and the plugin calls it.
type AddHelper interface {
	Sum(a, b int64) (int64, error)
}

// Counter is the interface the plugin implements and the host uses.
type Counter interface {
	// Put adds value to the key's value, asking a for the sum.
	Put(key string, value int64, a AddHelper) error
	Get(key string) (int64, error)
	// ServeHelper makes the plugin serve an AddHelper under a new broker id
	// and returns the host's AddHelper client for it.
	ServeHelper() (AddHelper, error)
}

// ---------------------------------------------------------------- host side

// GRPCClient is the host-side Counter that talks over gRPC.
type GRPCClient struct {
	broker *plugin.GRPCBroker
	client CounterClient
}

func (m *GRPCClient) Put(key string, value int64, a AddHelper) error {
	servers := make(chan *grpc.Server, 1)
	serverFunc := func(opts []grpc.ServerOption) *grpc.Server {
		s := grpc.NewServer(opts...)
		RegisterAddHelperServer(s, &GRPCAddHelperServer{Impl: a})
		servers <- s
		return s
	}
	brokerID := m.broker.NextId()
	go m.broker.AcceptAndServe(brokerID, serverFunc)

	ctx, cancel := context.WithTimeout(context.Background(), CallTimeout)
	defer cancel()
	_, err := m.client.Put(ctx, &PutRequest{AddServer: brokerID, Key: key, Value: value})
	select {
	case s := <-servers:
		s.Stop()
	case <-time.After(time.Second):
	}
	return err
}

func (m *GRPCClient) Get(key string) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), CallTimeout)
	defer cancel()
	resp, err := m.client.Get(ctx, &GetRequest{Key: key})
	if err != nil {
		return 0, err
	}
	return resp.Value, nil
}

func (m *GRPCClient) ServeHelper() (AddHelper, error) {
	ctx, cancel := context.WithTimeout(context.Background(), CallTimeout)
	defer cancel()
	resp, err := m.client.ServeHelper(ctx, &Empty{})
	if err != nil {
		return nil, err
	}
	conn, err := m.broker.Dial(resp.BrokerId)
	if err != nil {
		return nil, err
	}
	return &GRPCAddHelperClient{client: NewAddHelperClient(conn)}, nil
}

// ---------------------------------------------------------------- plugin side

// GRPCServer is the plugin-side gRPC server that forwards to a Counter.
type GRPCServer struct {
	Impl   Counter
	broker *plugin.GRPCBroker

	mu      sync.Mutex
	helpers []*grpc.Server
}

func (m *GRPCServer) Put(ctx context.Context, req *PutRequest) (*Empty, error) {
	conn, err := m.broker.Dial(req.AddServer)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	a := &GRPCAddHelperClient{client: NewAddHelperClient(conn)}
	return &Empty{}, m.Impl.Put(req.Key, req.Value, a)
}

func (m *GRPCServer) Get(ctx context.Context, req *GetRequest) (*GetResponse, error) {
	v, err := m.Impl.Get(req.Key)
	return &GetResponse{Value: v}, err
}

// ServeHelper serves an Adder of the plugin's own under a new broker id.
func (m *GRPCServer) ServeHelper(ctx context.Context, req *Empty) (*ServeHelperResponse, error) {
	id := m.broker.NextId()
	go m.broker.AcceptAndServe(id, func(opts []grpc.ServerOption) *grpc.Server {
		s := grpc.NewServer(opts...)
		RegisterAddHelperServer(s, &GRPCAddHelperServer{Impl: Adder{}})
		m.mu.Lock()
		m.helpers = append(m.helpers, s)
		m.mu.Unlock()
		return s
	})
	return &ServeHelperResponse{BrokerId: id}, nil
}

// Adder is a plain AddHelper.
type Adder struct{}

func (Adder) Sum(a, b int64) (int64, error) { return a + b, nil }

// ---------------------------------------------------------------- AddHelper adapters

// GRPCAddHelperClient calls an AddHelper over a brokered connection.
type GRPCAddHelperClient struct{ client AddHelperClient }

func (m *GRPCAddHelperClient) Sum(a, b int64) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), CallTimeout)
	defer cancel()
	resp, err := m.client.Sum(ctx, &SumRequest{A: a, B: b})
	if err != nil {
		return 0, err
	}
	return resp.R, nil
}

// GRPCAddHelperServer serves an AddHelper.
type GRPCAddHelperServer struct{ Impl AddHelper }

func (m *GRPCAddHelperServer) Sum(ctx context.Context, req *SumRequest) (*SumResponse, error) {
	r, err := m.Impl.Sum(req.A, req.B)
	if err != nil {
		return nil, err
	}
	return &SumResponse{R: r}, nil
}

// ---------------------------------------------------------------- plugin.Plugin

// CounterGRPCPlugin is the plugin.GRPCPlugin for Counter (gRPC only).
type CounterGRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	// Impl is set on the plugin side only.
	Impl Counter
}

func (p *CounterGRPCPlugin) GRPCServer(broker *plugin.GRPCBroker, s *grpc.Server) error {
	RegisterCounterServer(s, &GRPCServer{Impl: p.Impl, broker: broker})
	return nil
}

func (p *CounterGRPCPlugin) GRPCClient(ctx context.Context, broker *plugin.GRPCBroker, c *grpc.ClientConn) (interface{}, error) {
	return &GRPCClient{broker: broker, client: NewCounterClient(c)}, nil
}
