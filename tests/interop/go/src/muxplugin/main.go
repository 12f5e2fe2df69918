// mux-counter-plugin: a plugin speaking go-plugin 1.6's multiplexed broker by
// hand, on Debian's hashicorp/yamux and grpc-go (go-plugin 1.0.1 predates
// multiplexing), so that rpcplugin hosts meet a Go yamux server.
//
// It requires the cookie BASIC_PLUGIN=hello and PLUGIN_MULTIPLEX_GRPC=true,
// listens on a Unix socket, prints `1|1|unix|PATH|grpc||true` (plaintext),
// accepts the host's one connection and runs a yamux server session on it, as
// go-plugin's internal/grpcmux does: streams the host opens go to the main gRPC
// server unless a knock claimed them for a brokered server. It serves the
// bidirectional example's counter.v1.Counter (Put dials the host's AddHelper by
// knocking for its id and opening a stream; ServeHelper serves an AddHelper
// under a new id that the host knocks for), plugin.GRPCBroker and
// plugin.GRPCController. It exits when the host calls Shutdown, the session
// ends, or after 60 s.
package main

import (
	"context"
	"fmt"
	"io/ioutil"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/golang/protobuf/proto"
	"github.com/hashicorp/yamux"
	"google.golang.org/grpc"

	"counterproto"
)

// ---------------------------------------------------------------- plugin.ConnInfo

// Knock and ConnInfo are plugin.ConnInfo (go-plugin 1.6's grpc_broker.proto),
// as tagged structs that protobuf-go reads without generated descriptors.
type Knock struct {
	Knock bool   `protobuf:"varint,1,opt,name=knock,proto3" json:"knock,omitempty"`
	Ack   bool   `protobuf:"varint,2,opt,name=ack,proto3" json:"ack,omitempty"`
	Error string `protobuf:"bytes,3,opt,name=error,proto3" json:"error,omitempty"`
}

func (m *Knock) Reset()         { *m = Knock{} }
func (m *Knock) String() string { return proto.CompactTextString(m) }
func (*Knock) ProtoMessage()    {}

type ConnInfo struct {
	ServiceId uint32 `protobuf:"varint,1,opt,name=service_id,json=serviceId,proto3" json:"service_id,omitempty"`
	Network   string `protobuf:"bytes,2,opt,name=network,proto3" json:"network,omitempty"`
	Address   string `protobuf:"bytes,3,opt,name=address,proto3" json:"address,omitempty"`
	Knock     *Knock `protobuf:"bytes,4,opt,name=knock,proto3" json:"knock,omitempty"`
}

func (m *ConnInfo) Reset()         { *m = ConnInfo{} }
func (m *ConnInfo) String() string { return proto.CompactTextString(m) }
func (*ConnInfo) ProtoMessage()    {}

// ---------------------------------------------------------------- routing

// chanListener hands out the streams routed to it.
type chanListener struct {
	ch     chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newChanListener() *chanListener {
	return &chanListener{ch: make(chan net.Conn, 4), closed: make(chan struct{})}
}
func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.closed:
		return nil, fmt.Errorf("listener closed")
	}
}
func (l *chanListener) Close() error   { l.once.Do(func() { close(l.closed) }); return nil }
func (l *chanListener) Addr() net.Addr { return &net.UnixAddr{Name: "yamux", Net: "unix"} }

type plugin struct {
	sess *yamux.Session
	main *chanListener

	knockCh chan uint32 // knocks acknowledged, waiting for their stream

	mu        sync.Mutex
	listeners map[uint32]*chanListener
	acks      map[uint32]chan *ConnInfo
	nextID    uint32
	values    map[string]int64
	dialMu    sync.Mutex

	sendMu sync.Mutex
	stream grpc.ServerStream // the host's broker stream
	ready  chan struct{}

	stop chan struct{}
}

// route gives every stream the host opens to the brokered listener of a
// pending knock, else to the main server (go-plugin's GRPCServerMuxer.Accept).
func (p *plugin) route() {
	for {
		s, err := p.sess.Accept()
		if err != nil {
			close(p.stop)
			return
		}
		select {
		case id := <-p.knockCh:
			p.mu.Lock()
			l := p.listeners[id]
			p.mu.Unlock()
			if l == nil {
				s.Close()
				continue
			}
			l.ch <- s
		default:
			p.main.ch <- s
		}
	}
}

func (p *plugin) send(c *ConnInfo) error {
	<-p.ready
	p.sendMu.Lock()
	defer p.sendMu.Unlock()
	return p.stream.SendMsg(c)
}

// startStream is plugin.GRPCBroker/StartStream.
func (p *plugin) startStream(srv interface{}, stream grpc.ServerStream) error {
	p.sendMu.Lock()
	p.stream = stream
	p.sendMu.Unlock()
	close(p.ready)
	for {
		c := new(ConnInfo)
		if err := stream.RecvMsg(c); err != nil {
			return nil
		}
		switch {
		case c.Knock != nil && c.Knock.Knock && !c.Knock.Ack:
			p.mu.Lock()
			_, ok := p.listeners[c.ServiceId]
			p.mu.Unlock()
			ack := &ConnInfo{ServiceId: c.ServiceId, Knock: &Knock{Knock: true, Ack: true}}
			if ok {
				p.knockCh <- c.ServiceId
			} else {
				ack.Knock.Error = fmt.Sprintf("no listener for id %d", c.ServiceId)
			}
			if err := p.send(ack); err != nil {
				return err
			}
		case c.Knock != nil && c.Knock.Ack:
			p.mu.Lock()
			ch := p.acks[c.ServiceId]
			p.mu.Unlock()
			if ch != nil {
				ch <- c
			}
		}
	}
}

// dial knocks for id on the host and opens the stream for it.
func (p *plugin) dial(id uint32) (*grpc.ClientConn, error) {
	p.dialMu.Lock()
	defer p.dialMu.Unlock()
	ch := make(chan *ConnInfo, 1)
	p.mu.Lock()
	p.acks[id] = ch
	p.mu.Unlock()
	if err := p.send(&ConnInfo{ServiceId: id, Knock: &Knock{Knock: true}}); err != nil {
		return nil, err
	}
	select {
	case ack := <-ch:
		if ack.Knock.Error != "" {
			return nil, fmt.Errorf("knock for id %d refused: %s", id, ack.Knock.Error)
		}
	case <-time.After(5 * time.Second):
		return nil, fmt.Errorf("timeout waiting for the knock's ack on id %d", id)
	}
	s, err := p.sess.Open()
	if err != nil {
		return nil, err
	}
	used := false
	var mu sync.Mutex
	return grpc.Dial("unused", grpc.WithInsecure(), grpc.WithDialer(func(string, time.Duration) (net.Conn, error) {
		mu.Lock()
		defer mu.Unlock()
		if used {
			return nil, fmt.Errorf("this brokered stream was used")
		}
		used = true
		return s, nil
	}))
}

// ---------------------------------------------------------------- Counter

func (p *plugin) Get(ctx context.Context, req *counterproto.GetRequest) (*counterproto.GetResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return &counterproto.GetResponse{Value: p.values[req.Key]}, nil
}

func (p *plugin) Put(ctx context.Context, req *counterproto.PutRequest) (*counterproto.Empty, error) {
	conn, err := p.dial(req.AddServer)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	p.mu.Lock()
	current := p.values[req.Key]
	p.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	sum, err := counterproto.NewAddHelperClient(conn).Sum(cctx, &counterproto.SumRequest{A: current, B: req.Value})
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.values[req.Key] = sum.R
	p.mu.Unlock()
	return &counterproto.Empty{}, nil
}

func (p *plugin) ServeHelper(ctx context.Context, _ *counterproto.Empty) (*counterproto.ServeHelperResponse, error) {
	p.mu.Lock()
	p.nextID++
	id := p.nextID
	l := newChanListener()
	p.listeners[id] = l
	p.mu.Unlock()
	s := grpc.NewServer()
	counterproto.RegisterAddHelperServer(s, &counterproto.GRPCAddHelperServer{Impl: counterproto.Adder{}})
	go s.Serve(l)
	return &counterproto.ServeHelperResponse{BrokerId: id}, nil
}

// ---------------------------------------------------------------- main

func main() {
	if os.Getenv("BASIC_PLUGIN") != "hello" {
		fmt.Fprintln(os.Stderr, "This binary is a plugin. These are not meant to be executed directly.")
		os.Exit(1)
	}
	if mux, _ := strconv.ParseBool(os.Getenv("PLUGIN_MULTIPLEX_GRPC")); !mux {
		fmt.Fprintln(os.Stderr, "mux-counter-plugin: only serves hosts that set PLUGIN_MULTIPLEX_GRPC=true")
		os.Exit(1)
	}
	dir, err := ioutil.TempDir("", "muxplugin")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "plugin.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		panic(err)
	}
	fmt.Printf("1|1|unix|%s|grpc||true\n", path)
	os.Stdout.Sync()

	conn, err := ln.Accept()
	if err != nil {
		panic(err)
	}
	sess, err := yamux.Server(conn, yamux.DefaultConfig())
	if err != nil {
		panic(err)
	}
	p := &plugin{
		sess:      sess,
		main:      newChanListener(),
		knockCh:   make(chan uint32, 1),
		listeners: map[uint32]*chanListener{},
		acks:      map[uint32]chan *ConnInfo{},
		values:    map[string]int64{},
		ready:     make(chan struct{}),
		stop:      make(chan struct{}),
	}
	go p.route()

	server := grpc.NewServer()
	counterproto.RegisterCounterServer(server, p)
	server.RegisterService(&grpc.ServiceDesc{
		ServiceName: "plugin.GRPCBroker",
		HandlerType: (*interface{})(nil),
		Streams: []grpc.StreamDesc{{
			StreamName: "StartStream", Handler: p.startStream, ServerStreams: true, ClientStreams: true,
		}},
		Metadata: "grpc_broker.proto",
	}, p)
	shutdown := make(chan struct{}, 1)
	server.RegisterService(&grpc.ServiceDesc{
		ServiceName: "plugin.GRPCController",
		HandlerType: (*interface{})(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Shutdown",
			Handler: func(srv interface{}, ctx context.Context, dec func(interface{}) error, _ grpc.UnaryServerInterceptor) (interface{}, error) {
				in := new(counterproto.Empty)
				if err := dec(in); err != nil {
					return nil, err
				}
				shutdown <- struct{}{}
				return &counterproto.Empty{}, nil
			},
		}},
		Metadata: "grpc_controller.proto",
	}, p)
	go server.Serve(p.main)
	select {
	case <-shutdown:
		time.Sleep(50 * time.Millisecond) // let the reply go out
	case <-p.stop:
	case <-time.After(60 * time.Second):
		fmt.Fprintln(os.Stderr, "mux-counter-plugin: 60 s deadline, exiting")
	}
	server.Stop()
	sess.Close()
}
