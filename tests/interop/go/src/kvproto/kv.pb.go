// Package kvproto is go-plugin's classic KV example service (proto package
// `proto`, file kv.proto), written by hand in the shape protoc-gen-go 1.3
// (`plugins=grpc`) generates, so that it builds offline without protoc:
//
//	syntax = "proto3";
//	package proto;
//	message GetRequest  { string key = 1; }
//	message GetResponse { bytes value = 1; }
//	message PutRequest  { string key = 1; bytes value = 2; }
//	message Empty {}
//	service KV {
//	    rpc Get(GetRequest) returns (GetResponse);
//	    rpc Put(PutRequest) returns (Empty);
//	}
//
// The file descriptor is built at init from descriptorpb rather than pasted as
// bytes, and registered, so gRPC server reflection shows proto.KV like the
// generated code would. Wire compatibility only depends on the names and
// field numbers above (the same as the repository's proto/kv.proto).
package kvproto

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
	return fileDescriptorKV, []int{0}
}
func (m *GetRequest) GetKey() string {
	if m != nil {
		return m.Key
	}
	return ""
}

type GetResponse struct {
	Value                []byte   `protobuf:"bytes,1,opt,name=value,proto3" json:"value,omitempty"`
	XXX_NoUnkeyedLiteral struct{} `json:"-"`
	XXX_unrecognized     []byte   `json:"-"`
	XXX_sizecache        int32    `json:"-"`
}

func (m *GetResponse) Reset()         { *m = GetResponse{} }
func (m *GetResponse) String() string { return proto.CompactTextString(m) }
func (*GetResponse) ProtoMessage()    {}
func (*GetResponse) Descriptor() ([]byte, []int) {
	return fileDescriptorKV, []int{1}
}
func (m *GetResponse) GetValue() []byte {
	if m != nil {
		return m.Value
	}
	return nil
}

type PutRequest struct {
	Key                  string   `protobuf:"bytes,1,opt,name=key,proto3" json:"key,omitempty"`
	Value                []byte   `protobuf:"bytes,2,opt,name=value,proto3" json:"value,omitempty"`
	XXX_NoUnkeyedLiteral struct{} `json:"-"`
	XXX_unrecognized     []byte   `json:"-"`
	XXX_sizecache        int32    `json:"-"`
}

func (m *PutRequest) Reset()         { *m = PutRequest{} }
func (m *PutRequest) String() string { return proto.CompactTextString(m) }
func (*PutRequest) ProtoMessage()    {}
func (*PutRequest) Descriptor() ([]byte, []int) {
	return fileDescriptorKV, []int{2}
}
func (m *PutRequest) GetKey() string {
	if m != nil {
		return m.Key
	}
	return ""
}
func (m *PutRequest) GetValue() []byte {
	if m != nil {
		return m.Value
	}
	return nil
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
	return fileDescriptorKV, []int{3}
}

// ---------------------------------------------------------------- descriptor

// fileDescriptorKV is the gzipped FileDescriptorProto of kv.proto, as
// protoc-gen-go 1.3 embeds it.
var fileDescriptorKV = buildFileDescriptor()

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
	byt := descriptorpb.FieldDescriptorProto_TYPE_BYTES
	fd := &descriptorpb.FileDescriptorProto{
		Name:    s("kv.proto"),
		Package: s("proto"),
		Syntax:  s("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: s("GetRequest"), Field: []*descriptorpb.FieldDescriptorProto{field("key", 1, str, "key")}},
			{Name: s("GetResponse"), Field: []*descriptorpb.FieldDescriptorProto{field("value", 1, byt, "value")}},
			{Name: s("PutRequest"), Field: []*descriptorpb.FieldDescriptorProto{field("key", 1, str, "key"), field("value", 2, byt, "value")}},
			{Name: s("Empty")},
		},
		Service: []*descriptorpb.ServiceDescriptorProto{{
			Name: s("KV"),
			Method: []*descriptorpb.MethodDescriptorProto{
				{Name: s("Get"), InputType: s(".proto.GetRequest"), OutputType: s(".proto.GetResponse")},
				{Name: s("Put"), InputType: s(".proto.PutRequest"), OutputType: s(".proto.Empty")},
			},
		}},
	}
	raw, err := protov2.MarshalOptions{Deterministic: true}.Marshal(fd)
	if err != nil {
		panic(fmt.Sprintf("kvproto: marshal descriptor: %v", err))
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
	proto.RegisterFile("kv.proto", fileDescriptorKV)
	proto.RegisterType((*GetRequest)(nil), "proto.GetRequest")
	proto.RegisterType((*GetResponse)(nil), "proto.GetResponse")
	proto.RegisterType((*PutRequest)(nil), "proto.PutRequest")
	proto.RegisterType((*Empty)(nil), "proto.Empty")
}

// ---------------------------------------------------------------- service

// KVClient is the client API for the proto.KV service.
type KVClient interface {
	Get(ctx context.Context, in *GetRequest, opts ...grpc.CallOption) (*GetResponse, error)
	Put(ctx context.Context, in *PutRequest, opts ...grpc.CallOption) (*Empty, error)
}

type kVClient struct {
	cc *grpc.ClientConn
}

func NewKVClient(cc *grpc.ClientConn) KVClient {
	return &kVClient{cc}
}

func (c *kVClient) Get(ctx context.Context, in *GetRequest, opts ...grpc.CallOption) (*GetResponse, error) {
	out := new(GetResponse)
	if err := c.cc.Invoke(ctx, "/proto.KV/Get", in, out, opts...); err != nil {
		return nil, err
	}
	return out, nil
}

func (c *kVClient) Put(ctx context.Context, in *PutRequest, opts ...grpc.CallOption) (*Empty, error) {
	out := new(Empty)
	if err := c.cc.Invoke(ctx, "/proto.KV/Put", in, out, opts...); err != nil {
		return nil, err
	}
	return out, nil
}

// KVServer is the server API for the proto.KV service.
type KVServer interface {
	Get(context.Context, *GetRequest) (*GetResponse, error)
	Put(context.Context, *PutRequest) (*Empty, error)
}

// UnimplementedKVServer can be embedded to have forward compatible implementations.
type UnimplementedKVServer struct{}

func (*UnimplementedKVServer) Get(context.Context, *GetRequest) (*GetResponse, error) {
	return nil, status.Errorf(codes.Unimplemented, "method Get not implemented")
}
func (*UnimplementedKVServer) Put(context.Context, *PutRequest) (*Empty, error) {
	return nil, status.Errorf(codes.Unimplemented, "method Put not implemented")
}

func RegisterKVServer(s *grpc.Server, srv KVServer) {
	s.RegisterService(&_KV_serviceDesc, srv)
}

func _KV_Get_Handler(srv interface{}, ctx context.Context, dec func(interface{}) error, interceptor grpc.UnaryServerInterceptor) (interface{}, error) {
	in := new(GetRequest)
	if err := dec(in); err != nil {
		return nil, err
	}
	if interceptor == nil {
		return srv.(KVServer).Get(ctx, in)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: "/proto.KV/Get"}
	handler := func(ctx context.Context, req interface{}) (interface{}, error) {
		return srv.(KVServer).Get(ctx, req.(*GetRequest))
	}
	return interceptor(ctx, in, info, handler)
}

func _KV_Put_Handler(srv interface{}, ctx context.Context, dec func(interface{}) error, interceptor grpc.UnaryServerInterceptor) (interface{}, error) {
	in := new(PutRequest)
	if err := dec(in); err != nil {
		return nil, err
	}
	if interceptor == nil {
		return srv.(KVServer).Put(ctx, in)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: "/proto.KV/Put"}
	handler := func(ctx context.Context, req interface{}) (interface{}, error) {
		return srv.(KVServer).Put(ctx, req.(*PutRequest))
	}
	return interceptor(ctx, in, info, handler)
}

var _KV_serviceDesc = grpc.ServiceDesc{
	ServiceName: "proto.KV",
	HandlerType: (*KVServer)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Get", Handler: _KV_Get_Handler},
		{MethodName: "Put", Handler: _KV_Put_Handler},
	},
	Streams:  []grpc.StreamDesc{},
	Metadata: "kv.proto",
}
