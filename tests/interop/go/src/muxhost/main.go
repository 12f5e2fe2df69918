// mux-counter-host: a host speaking go-plugin 1.6's multiplexed broker by hand,
// on Debian's hashicorp/yamux and grpc-go (go-plugin 1.0.1 predates
// multiplexing), so that rpcplugin's multiplexed broker meets a Go yamux peer.
//
//	mux-counter-host -- PLUGIN_COMMAND [ARGS...]
//
// It starts the plugin with BASIC_PLUGIN=hello, PLUGIN_PROTOCOL_VERSIONS=1 and
// PLUGIN_MULTIPLEX_GRPC=true (plaintext), requires the handshake's 7th field
// `true`, dials once and runs a yamux client session over the connection; the
// main gRPC connection is a yamux stream. Then the bidirectional example's
// contract: Put 1 and 2 under "hello" with its AddHelper served under a fresh
// broker id each (the plugin knocks, this host acks, the plugin opens a stream
// that is served), print "hello = 3"; ServeHelper, knock for the returned id,
// open a stream and call Sum(40, 2), print "plugin helper: 40 + 2 = 42"; then
// GRPCController.Shutdown and wait for the plugin to exit. Exit 0 only if all
// of that worked, with one "FAIL: ..." line and exit 1 otherwise; an overall
// 30 s deadline kills the plugin.
//
// go-plugin's wire shape, as in its internal/grpcmux: the host is the yamux
// client; brokered streams are claimed by a knock (ConnInfo.knock) that the
// accepting side acknowledges before the dialling side opens the stream.
package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/yamux"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"

	"counterproto"
)

var pluginPid int64

func fail(format string, args ...interface{}) {
	msg := strings.Join(strings.Fields(fmt.Sprintf(format, args...)), " ")
	fmt.Fprintf(os.Stderr, "FAIL: %s\n", msg)
	if pid := atomic.LoadInt64(&pluginPid); pid > 0 {
		_ = syscall.Kill(int(pid), syscall.SIGKILL)
	}
	os.Exit(1)
}

// ---------------------------------------------------------------- raw protobuf

// rawCodec passes hand-encoded protobuf bytes through (*[]byte both ways).
type rawCodec struct{}

func (rawCodec) Marshal(v interface{}) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v interface{}) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// connInfo is plugin.ConnInfo{service_id=1, network=2, address=3, knock=4
// {knock=1, ack=2, error=3}}.
type connInfo struct {
	id                   uint32
	network, address     string
	hasKnock, knock, ack bool
	err                  string
}

func (c connInfo) encode() []byte {
	var b []byte
	if c.id != 0 {
		b = protowire.AppendTag(b, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(c.id))
	}
	if c.network != "" {
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendString(b, c.network)
	}
	if c.address != "" {
		b = protowire.AppendTag(b, 3, protowire.BytesType)
		b = protowire.AppendString(b, c.address)
	}
	if c.hasKnock {
		var k []byte
		if c.knock {
			k = protowire.AppendTag(k, 1, protowire.VarintType)
			k = protowire.AppendVarint(k, 1)
		}
		if c.ack {
			k = protowire.AppendTag(k, 2, protowire.VarintType)
			k = protowire.AppendVarint(k, 1)
		}
		if c.err != "" {
			k = protowire.AppendTag(k, 3, protowire.BytesType)
			k = protowire.AppendString(k, c.err)
		}
		b = protowire.AppendTag(b, 4, protowire.BytesType)
		b = protowire.AppendBytes(b, k)
	}
	return b
}

func fields(b []byte, each func(num protowire.Number, v uint64, s []byte)) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		switch typ {
		case protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			each(num, v, nil)
			b = b[n:]
		case protowire.BytesType:
			s, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			each(num, 0, s)
			b = b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			b = b[n:]
		}
	}
	return nil
}

func decodeConnInfo(b []byte) (c connInfo, err error) {
	err = fields(b, func(num protowire.Number, v uint64, s []byte) {
		switch num {
		case 1:
			c.id = uint32(v)
		case 2:
			c.network = string(s)
		case 3:
			c.address = string(s)
		case 4:
			c.hasKnock = true
			_ = fields(s, func(num protowire.Number, v uint64, s []byte) {
				switch num {
				case 1:
					c.knock = v != 0
				case 2:
					c.ack = v != 0
				case 3:
					c.err = string(s)
				}
			})
		}
	})
	return c, err
}

// ---------------------------------------------------------------- broker

// oneConnListener serves the streams handed to it (one per knock).
type oneConnListener struct {
	ch     chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newListener() *oneConnListener {
	return &oneConnListener{ch: make(chan net.Conn, 4), closed: make(chan struct{})}
}
func (l *oneConnListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.closed:
		return nil, fmt.Errorf("listener closed")
	}
}
func (l *oneConnListener) Close() error   { l.once.Do(func() { close(l.closed) }); return nil }
func (l *oneConnListener) Addr() net.Addr { return &net.UnixAddr{Name: "yamux", Net: "unix"} }

type broker struct {
	sess   *yamux.Session
	stream grpc.ClientStream
	sendMu sync.Mutex

	mu        sync.Mutex
	listeners map[uint32]*oneConnListener
	acks      map[uint32]chan connInfo
	nextID    uint32
}

func (b *broker) send(c connInfo) error {
	b.sendMu.Lock()
	defer b.sendMu.Unlock()
	msg := c.encode()
	return b.stream.SendMsg(&msg)
}

func (b *broker) run() {
	for {
		var raw []byte
		if err := b.stream.RecvMsg(&raw); err != nil {
			return
		}
		c, err := decodeConnInfo(raw)
		if err != nil {
			fail("bad ConnInfo from the plugin: %v", err)
		}
		switch {
		case c.hasKnock && c.knock && !c.ack:
			// The plugin dials one of our brokered servers: ack, then its next
			// stream is for that id.
			b.mu.Lock()
			l := b.listeners[c.id]
			b.mu.Unlock()
			ack := connInfo{id: c.id, hasKnock: true, knock: true, ack: true}
			if l == nil {
				ack.err = fmt.Sprintf("no listener for id %d", c.id)
			}
			if err := b.send(ack); err != nil {
				fail("send ack: %v", err)
			}
			if l != nil {
				go func() {
					s, err := b.sess.Accept()
					if err != nil {
						fail("accept the plugin's brokered stream: %v", err)
					}
					l.ch <- s
				}()
			}
		case c.hasKnock && c.ack:
			b.mu.Lock()
			ch := b.acks[c.id]
			b.mu.Unlock()
			if ch != nil {
				ch <- c
			}
		default:
			fail("unexpected ConnInfo on a multiplexed broker: %+v", c)
		}
	}
}

// serve registers an AddHelper under a fresh id.
func (b *broker) serve(a counterproto.AddHelper) (uint32, *grpc.Server) {
	b.mu.Lock()
	b.nextID++
	id := b.nextID
	l := newListener()
	b.listeners[id] = l
	b.mu.Unlock()
	s := grpc.NewServer()
	counterproto.RegisterAddHelperServer(s, &counterproto.GRPCAddHelperServer{Impl: a})
	go s.Serve(l)
	return id, s
}

// dial knocks for id and opens the stream for it.
func (b *broker) dial(id uint32) (*grpc.ClientConn, error) {
	ch := make(chan connInfo, 1)
	b.mu.Lock()
	b.acks[id] = ch
	b.mu.Unlock()
	if err := b.send(connInfo{id: id, hasKnock: true, knock: true}); err != nil {
		return nil, err
	}
	select {
	case ack := <-ch:
		if ack.err != "" {
			return nil, fmt.Errorf("knock for id %d refused: %s", id, ack.err)
		}
	case <-time.After(5 * time.Second):
		return nil, fmt.Errorf("timeout waiting for the knock's ack on id %d", id)
	}
	s, err := b.sess.Open()
	if err != nil {
		return nil, err
	}
	used := int32(0)
	return grpc.Dial("unused", grpc.WithInsecure(), grpc.WithDialer(func(string, time.Duration) (net.Conn, error) {
		if atomic.AddInt32(&used, 1) > 1 {
			return nil, fmt.Errorf("this brokered stream was used")
		}
		return s, nil
	}))
}

type hostAdder struct{ calls int64 }

func (h *hostAdder) Sum(a, b int64) (int64, error) {
	atomic.AddInt64(&h.calls, 1)
	return a + b, nil
}

// ---------------------------------------------------------------- main

func main() {
	args := os.Args[1:]
	if len(args) < 2 || args[0] != "--" {
		fmt.Fprintln(os.Stderr, "usage: mux-counter-host -- PLUGIN_COMMAND [ARGS...]")
		os.Exit(2)
	}
	args = args[1:]
	time.AfterFunc(30*time.Second, func() { fail("overall deadline of 30s exceeded; plugin killed") })

	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "BASIC_PLUGIN=hello", "PLUGIN_PROTOCOL_VERSIONS=1", "PLUGIN_MULTIPLEX_GRPC=true")
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		fail("stdout pipe: %v", err)
	}
	if err := cmd.Start(); err != nil {
		fail("start plugin: %v", err)
	}
	atomic.StoreInt64(&pluginPid, int64(cmd.Process.Pid))
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		fail("read the handshake line: %v", err)
	}
	parts := strings.Split(strings.TrimSpace(line), "|")
	if len(parts) < 7 || parts[6] != "true" {
		fail("the plugin does not announce multiplexing: %q", line)
	}
	if parts[5] != "" {
		fail("expected a plaintext plugin, got a certificate")
	}
	conn, err := net.Dial(parts[2], parts[3])
	if err != nil {
		fail("dial %s %s: %v", parts[2], parts[3], err)
	}
	sess, err := yamux.Client(conn, yamux.DefaultConfig())
	if err != nil {
		fail("yamux client: %v", err)
	}
	cc, err := grpc.Dial("unused", grpc.WithInsecure(), grpc.WithDialer(func(string, time.Duration) (net.Conn, error) {
		return sess.Open()
	}))
	if err != nil {
		fail("grpc dial over yamux: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := cc.NewStream(ctx, &grpc.StreamDesc{StreamName: "StartStream", ServerStreams: true, ClientStreams: true},
		"/plugin.GRPCBroker/StartStream", grpc.ForceCodec(rawCodec{}))
	if err != nil {
		fail("open the broker stream: %v", err)
	}
	b := &broker{sess: sess, stream: stream, listeners: map[uint32]*oneConnListener{}, acks: map[uint32]chan connInfo{}}
	go b.run()

	counter := counterproto.NewCounterClient(cc)
	adder := &hostAdder{}
	for _, v := range []int64{1, 2} {
		id, server := b.serve(adder)
		cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := counter.Put(cctx, &counterproto.PutRequest{AddServer: id, Key: "hello", Value: v})
		ccancel()
		if err != nil {
			fail("Counter.Put(hello, %d) with the host's AddHelper at id %d: %v", v, id, err)
		}
		server.Stop()
	}
	got, err := counter.Get(ctx, &counterproto.GetRequest{Key: "hello"})
	if err != nil {
		fail("Counter.Get: %v", err)
	}
	fmt.Printf("hello = %d\n", got.Value)
	if got.Value != 3 || atomic.LoadInt64(&adder.calls) != 2 {
		fail("got %d with %d callbacks, want 3 with 2", got.Value, atomic.LoadInt64(&adder.calls))
	}
	helper, err := counter.ServeHelper(ctx, &counterproto.Empty{})
	if err != nil {
		fail("Counter.ServeHelper: %v", err)
	}
	hc, err := b.dial(helper.BrokerId)
	if err != nil {
		fail("dial the plugin's helper at id %d: %v", helper.BrokerId, err)
	}
	sum, err := counterproto.NewAddHelperClient(hc).Sum(ctx, &counterproto.SumRequest{A: 40, B: 2})
	if err != nil {
		fail("AddHelper.Sum on the plugin's helper: %v", err)
	}
	fmt.Printf("plugin helper: 40 + 2 = %d\n", sum.R)
	if sum.R != 42 {
		fail("40 + 2 = %d", sum.R)
	}

	var empty []byte
	var reply []byte
	sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
	_ = cc.Invoke(sctx, "/plugin.GRPCController/Shutdown", &empty, &reply, grpc.ForceCodec(rawCodec{}))
	scancel()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			fail("the plugin exited with %v after Shutdown", err)
		}
	case <-time.After(5 * time.Second):
		fail("the plugin did not exit within 5s of Shutdown")
	}
	fmt.Fprintln(os.Stderr, "mux-counter-host: OK (yamux session, knocks acknowledged both ways)")
	os.Exit(0)
}
