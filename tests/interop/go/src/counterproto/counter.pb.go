// Package counterproto is rpcplugin's bidirectional example contract (proto
// package `counter.v1`, file counter.proto in the repository's
// proto/examples/), written by hand in the shape protoc-gen-go 1.3
// (`plugins=grpc`) generates, so that it builds offline without protoc:
//
//	syntax = "proto3";
//	package counter.v1;
//	message GetRequest  { string key = 1; }
//	message GetResponse { int64 value = 1; }
//	message PutRequest  { uint32 add_server = 1; string key = 2; int64 value = 3; }
//	message SumRequest  { int64 a = 1; int64 b = 2; }
//	message SumResponse { int64 r = 1; }
//	message ServeHelperResponse { uint32 broker_id = 1; }
//	message Empty {}
//	service Counter {
//	    rpc Get(GetRequest) returns (GetResponse);
//	    rpc Put(PutRequest) returns (Empty);
//	    rpc ServeHelper(Empty) returns (ServeHelperResponse);
//	}
//	service AddHelper {
//	    rpc Sum(SumRequest) returns (SumResponse);
//	}
//
// AddHelper.Ticks (a server stream) is left out: the Go peers answer it
// Unimplemented. Wire compatibility only depends on the names and field
// numbers above.
package counterproto

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"

	proto "github.com/golang/protobuf/proto"
	grpc "google.golang.org/grpc"
	protov2 "google.golang.org/protobuf/proto"
	descriptorpb "google.golang.org/protobuf/types/descriptorpb"
)

const _ = proto.ProtoPackageIsVersion3

// ---------------------------------------------------------------- messages

type GetRequest struct {
	Key                  string   `protobuf:"bytes,1,opt,name=key,proto3" json:"key,omitempty"`
	XXX_NoUnkeyedLiteral struct{} `json:"-"`
	XXX_unrecognized     []byte   `json:"-"`
	XXX_sizecache        int32    `json:"-"`
}

func (m *GetRequest) Reset()         { *m = GetRequest{} }
func (m *GetRequest) String() string { return proto.CompactTextString(m) }
func (*GetRequest) ProtoMessage()    {}
func (*GetRequest) Descriptor() ([]byte, []int) {
	return fileDescriptorCounter, []int{0}
}

type GetResponse struct {
	Value                int64    `protobuf:"varint,1,opt,name=value,proto3" json:"value,omitempty"`
	XXX_NoUnkeyedLiteral struct{} `json:"-"`
	XXX_unrecognized     []byte   `json:"-"`
	XXX_sizecache        int32    `json:"-"`
}

func (m *GetResponse) Reset()         { *m = GetResponse{} }
func (m *GetResponse) String() string { return proto.CompactTextString(m) }
func (*GetResponse) ProtoMessage()    {}
func (*GetResponse) Descriptor() ([]byte, []int) {
	return fileDescriptorCounter, []int{1}
}

type PutRequest struct {
	AddServer            uint32   `protobuf:"varint,1,opt,name=add_server,json=addServer,proto3" json:"add_server,omitempty"`
	Key                  string   `protobuf:"bytes,2,opt,name=key,proto3" json:"key,omitempty"`
	Value                int64    `protobuf:"varint,3,opt,name=value,proto3" json:"value,omitempty"`
	XXX_NoUnkeyedLiteral struct{} `json:"-"`
	XXX_unrecognized     []byte   `json:"-"`
	XXX_sizecache        int32    `json:"-"`
}

func (m *PutRequest) Reset()         { *m = PutRequest{} }
func (m *PutRequest) String() string { return proto.CompactTextString(m) }
func (*PutRequest) ProtoMessage()    {}
func (*PutRequest) Descriptor() ([]byte, []int) {
	return fileDescriptorCounter, []int{2}
}

type SumRequest struct {
	A                    int64    `protobuf:"varint,1,opt,name=a,proto3" json:"a,omitempty"`
	B                    int64    `protobuf:"varint,2,opt,name=b,proto3" json:"b,omitempty"`
	XXX_NoUnkeyedLiteral struct{} `json:"-"`
	XXX_unrecognized     []byte   `json:"-"`
	XXX_sizecache        int32    `json:"-"`
}

func (m *SumRequest) Reset()         { *m = SumRequest{} }
func (m *SumRequest) String() string { return proto.CompactTextString(m) }
func (*SumRequest) ProtoMessage()    {}
func (*SumRequest) Descriptor() ([]byte, []int) {
	return fileDescriptorCounter, []int{3}
}

type SumResponse struct {
	R                    int64    `protobuf:"varint,1,opt,name=r,proto3" json:"r,omitempty"`
	XXX_NoUnkeyedLiteral struct{} `json:"-"`
	XXX_unrecognized     []byte   `json:"-"`
	XXX_sizecache        int32    `json:"-"`
}

func (m *SumResponse) Reset()         { *m = SumResponse{} }
func (m *SumResponse) String() string { return proto.CompactTextString(m) }
func (*SumResponse) ProtoMessage()    {}
func (*SumResponse) Descriptor() ([]byte, []int) {
	return fileDescriptorCounter, []int{4}
}

type ServeHelperResponse struct {
	BrokerId             uint32   `protobuf:"varint,1,opt,name=broker_id,json=brokerId,proto3" json:"broker_id,omitempty"`
	XXX_NoUnkeyedLiteral struct{} `json:"-"`
	XXX_unrecognized     []byte   `json:"-"`
	XXX_sizecache        int32    `json:"-"`
}

func (m *ServeHelperResponse) Reset()         { *m = ServeHelperResponse{} }
func (m *ServeHelperResponse) String() string { return proto.CompactTextString(m) }
func (*ServeHelperResponse) ProtoMessage()    {}
func (*ServeHelperResponse) Descriptor() ([]byte, []int) {
	return fileDescriptorCounter, []int{5}
}

type Empty struct {
	XXX_NoUnkeyedLiteral struct{} `json:"-"`
	XXX_unrecognized     []byte   `json:"-"`
	XXX_sizecache        int32    `json:"-"`
}

func (m *Empty) Reset()         { *m = Empty{} }
func (m *Empty) String() string { return proto.CompactTextString(m) }
func (*Empty) ProtoMessage()    {}
func (*Empty) Descriptor() ([]byte, []int) {
	return fileDescriptorCounter, []int{6}
}

// ---------------------------------------------------------------- descriptor

// fileDescriptorCounter is the gzipped FileDescriptorProto of counter.proto,
// as protoc-gen-go 1.3 embeds it.
var fileDescriptorCounter = buildFileDescriptor()

func buildFileDescriptor() []byte {
	s := protov2.String
	field := func(name string, num int32, typ descriptorpb.FieldDescriptorProto_Type, json string) *descriptorpb.FieldDescriptorProto {
		return &descriptorpb.FieldDescriptorProto{
			Name:     s(name),
			Number:   protov2.Int32(num),
			Label:    descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(),
			Type:     typ.Enum(),
			JsonName: s(json),
		}
	}
	str := descriptorpb.FieldDescriptorProto_TYPE_STRING
	i64 := descriptorpb.FieldDescriptorProto_TYPE_INT64
	u32 := descriptorpb.FieldDescriptorProto_TYPE_UINT32
	type F = []*descriptorpb.FieldDescriptorProto
	method := func(name, in, out string) *descriptorpb.MethodDescriptorProto {
		return &descriptorpb.MethodDescriptorProto{Name: s(name), InputType: s(".counter.v1." + in), OutputType: s(".counter.v1." + out)}
	}
	fd := &descriptorpb.FileDescriptorProto{
		Name:    s("counter.proto"),
		Package: s("counter.v1"),
		Syntax:  s("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: s("GetRequest"), Field: F{field("key", 1, str, "key")}},
			{Name: s("GetResponse"), Field: F{field("value", 1, i64, "value")}},
			{Name: s("PutRequest"), Field: F{field("add_server", 1, u32, "addServer"), field("key", 2, str, "key"), field("value", 3, i64, "value")}},
			{Name: s("SumRequest"), Field: F{field("a", 1, i64, "a"), field("b", 2, i64, "b")}},
			{Name: s("SumResponse"), Field: F{field("r", 1, i64, "r")}},
			{Name: s("ServeHelperResponse"), Field: F{field("broker_id", 1, u32, "brokerId")}},
			{Name: s("Empty")},
		},
		Service: []*descriptorpb.ServiceDescriptorProto{
			{
				Name: s("Counter"),
				Method: []*descriptorpb.MethodDescriptorProto{
					method("Get", "GetRequest", "GetResponse"),
					method("Put", "PutRequest", "Empty"),
					method("ServeHelper", "Empty", "ServeHelperResponse"),
				},
			},
			{
				Name:   s("AddHelper"),
				Method: []*descriptorpb.MethodDescriptorProto{method("Sum", "SumRequest", "SumResponse")},
			},
		},
	}
	raw, err := protov2.MarshalOptions{Deterministic: true}.Marshal(fd)
	if err != nil {
		panic(fmt.Sprintf("counterproto: marshal descriptor: %v", err))
	}
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if _, err := zw.Write(raw); err != nil {
		panic(err)
	}
	if err := zw.Close(); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

func init() {
	proto.RegisterFile("counter.proto", fileDescriptorCounter)
	proto.RegisterType((*GetRequest)(nil), "counter.v1.GetRequest")
	proto.RegisterType((*GetResponse)(nil), "counter.v1.GetResponse")
	proto.RegisterType((*PutRequest)(nil), "counter.v1.PutRequest")
	proto.RegisterType((*SumRequest)(nil), "counter.v1.SumRequest")
	proto.RegisterType((*SumResponse)(nil), "counter.v1.SumResponse")
	proto.RegisterType((*ServeHelperResponse)(nil), "counter.v1.ServeHelperResponse")
	proto.RegisterType((*Empty)(nil), "counter.v1.Empty")
}

// ---------------------------------------------------------------- Counter

// CounterClient is the client API for the counter.v1.Counter service.
type CounterClient interface {
	Get(ctx context.Context, in *GetRequest, opts ...grpc.CallOption) (*GetResponse, error)
	Put(ctx context.Context, in *PutRequest, opts ...grpc.CallOption) (*Empty, error)
	ServeHelper(ctx context.Context, in *Empty, opts ...grpc.CallOption) (*ServeHelperResponse, error)
}

type counterClient struct{ cc *grpc.ClientConn }

func NewCounterClient(cc *grpc.ClientConn) CounterClient { return &counterClient{cc} }

func (c *counterClient) Get(ctx context.Context, in *GetRequest, opts ...grpc.CallOption) (*GetResponse, error) {
	out := new(GetResponse)
	if err := c.cc.Invoke(ctx, "/counter.v1.Counter/Get", in, out, opts...); err != nil {
		return nil, err
	}
	return out, nil
}

func (c *counterClient) Put(ctx context.Context, in *PutRequest, opts ...grpc.CallOption) (*Empty, error) {
	out := new(Empty)
	if err := c.cc.Invoke(ctx, "/counter.v1.Counter/Put", in, out, opts...); err != nil {
		return nil, err
	}
	return out, nil
}

func (c *counterClient) ServeHelper(ctx context.Context, in *Empty, opts ...grpc.CallOption) (*ServeHelperResponse, error) {
	out := new(ServeHelperResponse)
	if err := c.cc.Invoke(ctx, "/counter.v1.Counter/ServeHelper", in, out, opts...); err != nil {
		return nil, err
	}
	return out, nil
}

// CounterServer is the server API for the counter.v1.Counter service.
type CounterServer interface {
	Get(context.Context, *GetRequest) (*GetResponse, error)
	Put(context.Context, *PutRequest) (*Empty, error)
	ServeHelper(context.Context, *Empty) (*ServeHelperResponse, error)
}

func RegisterCounterServer(s *grpc.Server, srv CounterServer) {
	s.RegisterService(&_Counter_serviceDesc, srv)
}

// unary builds a protoc-gen-go style unary handler.
func unary(method string, newIn func() interface{}, call func(srv interface{}, ctx context.Context, in interface{}) (interface{}, error)) func(interface{}, context.Context, func(interface{}) error, grpc.UnaryServerInterceptor) (interface{}, error) {
	return func(srv interface{}, ctx context.Context, dec func(interface{}) error, interceptor grpc.UnaryServerInterceptor) (interface{}, error) {
		in := newIn()
		if err := dec(in); err != nil {
			return nil, err
		}
		if interceptor == nil {
			return call(srv, ctx, in)
		}
		info := &grpc.UnaryServerInfo{Server: srv, FullMethod: method}
		return interceptor(ctx, in, info, func(ctx context.Context, req interface{}) (interface{}, error) {
			return call(srv, ctx, req)
		})
	}
}

var _Counter_serviceDesc = grpc.ServiceDesc{
	ServiceName: "counter.v1.Counter",
	HandlerType: (*CounterServer)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Get", Handler: unary("/counter.v1.Counter/Get", func() interface{} { return new(GetRequest) },
			func(srv interface{}, ctx context.Context, in interface{}) (interface{}, error) {
				return srv.(CounterServer).Get(ctx, in.(*GetRequest))
			})},
		{MethodName: "Put", Handler: unary("/counter.v1.Counter/Put", func() interface{} { return new(PutRequest) },
			func(srv interface{}, ctx context.Context, in interface{}) (interface{}, error) {
				return srv.(CounterServer).Put(ctx, in.(*PutRequest))
			})},
		{MethodName: "ServeHelper", Handler: unary("/counter.v1.Counter/ServeHelper", func() interface{} { return new(Empty) },
			func(srv interface{}, ctx context.Context, in interface{}) (interface{}, error) {
				return srv.(CounterServer).ServeHelper(ctx, in.(*Empty))
			})},
	},
	Streams:  []grpc.StreamDesc{},
	Metadata: "counter.proto",
}

// ---------------------------------------------------------------- AddHelper

// AddHelperClient is the client API for the counter.v1.AddHelper service.
type AddHelperClient interface {
	Sum(ctx context.Context, in *SumRequest, opts ...grpc.CallOption) (*SumResponse, error)
}

type addHelperClient struct{ cc *grpc.ClientConn }

func NewAddHelperClient(cc *grpc.ClientConn) AddHelperClient { return &addHelperClient{cc} }

func (c *addHelperClient) Sum(ctx context.Context, in *SumRequest, opts ...grpc.CallOption) (*SumResponse, error) {
	out := new(SumResponse)
	if err := c.cc.Invoke(ctx, "/counter.v1.AddHelper/Sum", in, out, opts...); err != nil {
		return nil, err
	}
	return out, nil
}

// AddHelperServer is the server API for the counter.v1.AddHelper service.
type AddHelperServer interface {
	Sum(context.Context, *SumRequest) (*SumResponse, error)
}

func RegisterAddHelperServer(s *grpc.Server, srv AddHelperServer) {
	s.RegisterService(&_AddHelper_serviceDesc, srv)
}

var _AddHelper_serviceDesc = grpc.ServiceDesc{
	ServiceName: "counter.v1.AddHelper",
	HandlerType: (*AddHelperServer)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Sum", Handler: unary("/counter.v1.AddHelper/Sum", func() interface{} { return new(SumRequest) },
			func(srv interface{}, ctx context.Context, in interface{}) (interface{}, error) {
				return srv.(AddHelperServer).Sum(ctx, in.(*SumRequest))
			})},
	},
	Streams:  []grpc.StreamDesc{},
	Metadata: "counter.proto",
}
