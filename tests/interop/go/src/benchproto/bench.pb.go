// Package benchproto is rpcplugin's benchmark service (proto package
// `bench.v1`, file bench.proto in the repository's proto/examples/), written
// by hand in the shape protoc-gen-go 1.3 (`plugins=grpc`) generates, so that
// it builds offline without protoc:
//
//	syntax = "proto3";
//	package bench.v1;
//	message Payload         { bytes data = 1; }
//	message DownloadRequest { uint32 chunk_size = 1; uint32 count = 2; }
//	service Bench {
//	    rpc Echo(Payload) returns (Payload);                    // the payload unchanged
//	    rpc Download(DownloadRequest) returns (stream Payload); // count messages of chunk_size bytes
//	}
//
// The file descriptor is built at init from descriptorpb rather than pasted as
// bytes, and registered, as kvproto does. Wire compatibility only depends on
// the names and field numbers above.
package benchproto

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"

	proto "github.com/golang/protobuf/proto"
	grpc "google.golang.org/grpc"
	codes "google.golang.org/grpc/codes"
	status "google.golang.org/grpc/status"
	protov2 "google.golang.org/protobuf/proto"
	descriptorpb "google.golang.org/protobuf/types/descriptorpb"
)

const _ = proto.ProtoPackageIsVersion3

// ---------------------------------------------------------------- messages

type Payload struct {
	Data                 []byte   `protobuf:"bytes,1,opt,name=data,proto3" json:"data,omitempty"`
	XXX_NoUnkeyedLiteral struct{} `json:"-"`
	XXX_unrecognized     []byte   `json:"-"`
	XXX_sizecache        int32    `json:"-"`
}

func (m *Payload) Reset()         { *m = Payload{} }
func (m *Payload) String() string { return proto.CompactTextString(m) }
func (*Payload) ProtoMessage()    {}
func (*Payload) Descriptor() ([]byte, []int) {
	return fileDescriptorBench, []int{0}
}
func (m *Payload) GetData() []byte {
	if m != nil {
		return m.Data
	}
	return nil
}

type DownloadRequest struct {
	ChunkSize            uint32   `protobuf:"varint,1,opt,name=chunk_size,json=chunkSize,proto3" json:"chunk_size,omitempty"`
	Count                uint32   `protobuf:"varint,2,opt,name=count,proto3" json:"count,omitempty"`
	XXX_NoUnkeyedLiteral struct{} `json:"-"`
	XXX_unrecognized     []byte   `json:"-"`
	XXX_sizecache        int32    `json:"-"`
}

func (m *DownloadRequest) Reset()         { *m = DownloadRequest{} }
func (m *DownloadRequest) String() string { return proto.CompactTextString(m) }
func (*DownloadRequest) ProtoMessage()    {}
func (*DownloadRequest) Descriptor() ([]byte, []int) {
	return fileDescriptorBench, []int{1}
}
func (m *DownloadRequest) GetChunkSize() uint32 {
	if m != nil {
		return m.ChunkSize
	}
	return 0
}
func (m *DownloadRequest) GetCount() uint32 {
	if m != nil {
		return m.Count
	}
	return 0
}

// ---------------------------------------------------------------- descriptor

// fileDescriptorBench is the gzipped FileDescriptorProto of bench.proto, as
// protoc-gen-go 1.3 embeds it.
var fileDescriptorBench = buildFileDescriptor()

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
	byt := descriptorpb.FieldDescriptorProto_TYPE_BYTES
	u32 := descriptorpb.FieldDescriptorProto_TYPE_UINT32
	fd := &descriptorpb.FileDescriptorProto{
		Name:    s("bench.proto"),
		Package: s("bench.v1"),
		Syntax:  s("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: s("Payload"), Field: []*descriptorpb.FieldDescriptorProto{field("data", 1, byt, "data")}},
			{Name: s("DownloadRequest"), Field: []*descriptorpb.FieldDescriptorProto{
				field("chunk_size", 1, u32, "chunkSize"), field("count", 2, u32, "count"),
			}},
		},
		Service: []*descriptorpb.ServiceDescriptorProto{{
			Name: s("Bench"),
			Method: []*descriptorpb.MethodDescriptorProto{
				{Name: s("Echo"), InputType: s(".bench.v1.Payload"), OutputType: s(".bench.v1.Payload")},
				{Name: s("Download"), InputType: s(".bench.v1.DownloadRequest"), OutputType: s(".bench.v1.Payload"),
					ServerStreaming: protov2.Bool(true)},
			},
		}},
	}
	raw, err := protov2.MarshalOptions{Deterministic: true}.Marshal(fd)
	if err != nil {
		panic(fmt.Sprintf("benchproto: marshal descriptor: %v", err))
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
	proto.RegisterFile("bench.proto", fileDescriptorBench)
	proto.RegisterType((*Payload)(nil), "bench.v1.Payload")
	proto.RegisterType((*DownloadRequest)(nil), "bench.v1.DownloadRequest")
}

// ---------------------------------------------------------------- service

// BenchClient is the client API for the bench.v1.Bench service.
type BenchClient interface {
	Echo(ctx context.Context, in *Payload, opts ...grpc.CallOption) (*Payload, error)
	Download(ctx context.Context, in *DownloadRequest, opts ...grpc.CallOption) (Bench_DownloadClient, error)
}

type benchClient struct {
	cc *grpc.ClientConn
}

func NewBenchClient(cc *grpc.ClientConn) BenchClient {
	return &benchClient{cc}
}

func (c *benchClient) Echo(ctx context.Context, in *Payload, opts ...grpc.CallOption) (*Payload, error) {
	out := new(Payload)
	if err := c.cc.Invoke(ctx, "/bench.v1.Bench/Echo", in, out, opts...); err != nil {
		return nil, err
	}
	return out, nil
}

func (c *benchClient) Download(ctx context.Context, in *DownloadRequest, opts ...grpc.CallOption) (Bench_DownloadClient, error) {
	stream, err := c.cc.NewStream(ctx, &_Bench_serviceDesc.Streams[0], "/bench.v1.Bench/Download", opts...)
	if err != nil {
		return nil, err
	}
	x := &benchDownloadClient{stream}
	if err := x.ClientStream.SendMsg(in); err != nil {
		return nil, err
	}
	if err := x.ClientStream.CloseSend(); err != nil {
		return nil, err
	}
	return x, nil
}

type Bench_DownloadClient interface {
	Recv() (*Payload, error)
	grpc.ClientStream
}

type benchDownloadClient struct {
	grpc.ClientStream
}

func (x *benchDownloadClient) Recv() (*Payload, error) {
	m := new(Payload)
	if err := x.ClientStream.RecvMsg(m); err != nil {
		return nil, err
	}
	return m, nil
}

// BenchServer is the server API for the bench.v1.Bench service.
type BenchServer interface {
	Echo(context.Context, *Payload) (*Payload, error)
	Download(*DownloadRequest, Bench_DownloadServer) error
}

// UnimplementedBenchServer can be embedded to have forward compatible implementations.
type UnimplementedBenchServer struct{}

func (*UnimplementedBenchServer) Echo(context.Context, *Payload) (*Payload, error) {
	return nil, status.Errorf(codes.Unimplemented, "method Echo not implemented")
}
func (*UnimplementedBenchServer) Download(*DownloadRequest, Bench_DownloadServer) error {
	return status.Errorf(codes.Unimplemented, "method Download not implemented")
}

func RegisterBenchServer(s *grpc.Server, srv BenchServer) {
	s.RegisterService(&_Bench_serviceDesc, srv)
}

func _Bench_Echo_Handler(srv interface{}, ctx context.Context, dec func(interface{}) error, interceptor grpc.UnaryServerInterceptor) (interface{}, error) {
	in := new(Payload)
	if err := dec(in); err != nil {
		return nil, err
	}
	if interceptor == nil {
		return srv.(BenchServer).Echo(ctx, in)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: "/bench.v1.Bench/Echo"}
	handler := func(ctx context.Context, req interface{}) (interface{}, error) {
		return srv.(BenchServer).Echo(ctx, req.(*Payload))
	}
	return interceptor(ctx, in, info, handler)
}

func _Bench_Download_Handler(srv interface{}, stream grpc.ServerStream) error {
	m := new(DownloadRequest)
	if err := stream.RecvMsg(m); err != nil {
		return err
	}
	return srv.(BenchServer).Download(m, &benchDownloadServer{stream})
}

type Bench_DownloadServer interface {
	Send(*Payload) error
	grpc.ServerStream
}

type benchDownloadServer struct {
	grpc.ServerStream
}

func (x *benchDownloadServer) Send(m *Payload) error {
	return x.ServerStream.SendMsg(m)
}

var _Bench_serviceDesc = grpc.ServiceDesc{
	ServiceName: "bench.v1.Bench",
	HandlerType: (*BenchServer)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Echo", Handler: _Bench_Echo_Handler},
	},
	Streams: []grpc.StreamDesc{
		{StreamName: "Download", Handler: _Bench_Download_Handler, ServerStreams: true},
	},
	Metadata: "bench.proto",
}
