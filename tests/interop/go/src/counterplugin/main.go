// counter-plugin: the bidirectional example's plugin on go-plugin 1.0.1, the
// Go reference peer for rpcplugin's broker. Put dials the broker id the host
// sent and asks the host's AddHelper for the sum; ServeHelper serves an
// AddHelper under a new broker id for the host to dial.
package main

import (
	"os"
	"sync"

	hclog "github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"

	"counterproto"
)

type counter struct {
	mu     sync.Mutex
	values map[string]int64
	log    hclog.Logger
}

func (c *counter) Put(key string, value int64, a counterproto.AddHelper) error {
	c.mu.Lock()
	current := c.values[key]
	c.mu.Unlock()
	sum, err := a.Sum(current, value)
	if err != nil {
		c.log.Error("AddHelper.Sum on the host failed", "error", err)
		return err
	}
	c.mu.Lock()
	c.values[key] = sum
	c.mu.Unlock()
	c.log.Debug("put", "key", key, "value", sum)
	return nil
}

func (c *counter) Get(key string) (int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.values[key], nil
}

// ServeHelper is served by counterproto.GRPCServer itself.
func (c *counter) ServeHelper() (counterproto.AddHelper, error) { return counterproto.Adder{}, nil }

func main() {
	// Bound to the real stderr now: after the handshake go-plugin 1.0.1
	// replaces os.Stderr with a pipe that nobody reads.
	logger := hclog.New(&hclog.LoggerOptions{
		Name:       "counter-plugin",
		Level:      hclog.Debug,
		Output:     os.Stderr,
		JSONFormat: true,
	})
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: counterproto.Handshake,
		Plugins: map[string]plugin.Plugin{
			"counter": &counterproto.CounterGRPCPlugin{Impl: &counter{values: map[string]int64{}, log: logger}},
		},
		GRPCServer: plugin.DefaultGRPCServer,
	})
}
