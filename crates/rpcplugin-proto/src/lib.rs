//! Generated gRPC code for the services every go-plugin compatible plugin speaks.
//!
//! The code is generated from the `.proto` files in the repository's `proto/`
//! directory by `cargo xtask codegen` (protox, so no system `protoc`), committed,
//! and checked fresh in CI. The wire names are go-plugin's, exactly:
//!
//! | module | proto package | services |
//! | --- | --- | --- |
//! | [`plugin`] | `plugin` | `GRPCController`, `GRPCBroker`, `GRPCStdio` |
//! | [`health`] | `grpc.health.v1` | `Health` (go-plugin hosts check the service name `"plugin"`) |
//! | [`examples::kv`] | `proto` | `KV`, go-plugin's classic example |
//! | [`examples::bench`] | `bench.v1` | `Bench`, the benchmark contract |
//! | [`examples::counter`] | `counter.v1` | `Counter`, `AddHelper`: the bidirectional (broker) example |
//!
//! [`FILE_DESCRIPTOR_SET`] holds the encoded descriptors of all of them, for gRPC
//! server reflection.
//!
//! ```
//! use rpcplugin_proto::plugin::{StdioData, stdio_data::Channel};
//! use prost::Message;
//!
//! let msg = StdioData { channel: Channel::Stdout as i32, data: b"hello\n".to_vec() };
//! let bytes = msg.encode_to_vec();
//! assert_eq!(StdioData::decode(bytes.as_slice()).unwrap(), msg);
//! assert_eq!(rpcplugin_proto::plugin::grpc_controller_server::SERVICE_NAME, "plugin.GRPCController");
//! ```

/// The code `cargo xtask codegen` writes, private: the modules below re-export what
/// users need, by name, so that a regenerated file cannot grow this crate's public
/// API unnoticed (tonic-health keeps its generated code the same way).
mod generated {
    // Generated code documents only what the .proto files comment.
    #![allow(missing_docs, unreachable_pub, clippy::all)]

    pub(crate) mod plugin {
        include!("generated/plugin.rs");
    }
    pub(crate) mod health_v1 {
        include!("generated/grpc.health.v1.rs");
    }
    pub(crate) mod kv {
        include!("generated/proto.rs");
    }
    pub(crate) mod bench {
        include!("generated/bench.v1.rs");
    }
    pub(crate) mod counter {
        include!("generated/counter.v1.rs");
    }
    pub(crate) mod streams {
        include!("generated/streams.v1.rs");
    }
}

/// go-plugin's internal services: controller (shutdown), broker, stdio.
pub mod plugin {
    pub use crate::generated::plugin::{
        ConnInfo, Empty, StdioData, conn_info, grpc_broker_client, grpc_broker_server,
        grpc_controller_client, grpc_controller_server, grpc_stdio_client, grpc_stdio_server,
        stdio_data,
    };
}

/// The standard gRPC health checking protocol.
pub mod health {
    /// `grpc.health.v1`.
    pub mod v1 {
        pub use crate::generated::health_v1::{
            HealthCheckRequest, HealthCheckResponse, HealthListRequest, HealthListResponse,
            health_check_response, health_client, health_server,
        };
    }
}

/// The example contracts that interop checks and benchmarks drive (INTEROP.md).
pub mod examples {
    /// go-plugin's KV example: proto package `proto`, service `proto.KV`.
    pub mod kv {
        pub use crate::generated::kv::{
            Empty, GetRequest, GetResponse, PutRequest, kv_client, kv_server,
        };
    }
    /// The benchmark service: `bench.v1.Bench` (echo and download).
    pub mod bench {
        pub use crate::generated::bench::{DownloadRequest, Payload, bench_client, bench_server};
    }
    /// The bidirectional example: `counter.v1.Counter` served by the plugin,
    /// `counter.v1.AddHelper` served through the broker.
    pub mod counter {
        pub use crate::generated::counter::{
            Empty, GetRequest, GetResponse, PutRequest, ServeHelperResponse, SumRequest,
            SumResponse, TicksRequest, add_helper_client, add_helper_server, counter_client,
            counter_server,
        };
    }
    /// The four call shapes (unary, server streaming, client streaming,
    /// bidirectional): `streams.v1.Streams`, for `examples/async_patterns.rs`.
    pub mod streams {
        pub use crate::generated::streams::{
            AddRequest, CountRequest, Number, streams_client, streams_server,
        };
    }
}

/// Encoded `FileDescriptorSet` of every service above (and their imports), for
/// gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!("generated/descriptor.bin");

#[cfg(test)]
mod tests {
    use prost::Message;

    /// Every top-level item of a generated file is re-exported by a public module, so
    /// that a message or service added to proto/ is a decision here, not a type users
    /// cannot name.
    #[test]
    fn curated_modules_re_export_every_generated_item() {
        let generated = [
            include_str!("generated/plugin.rs"),
            include_str!("generated/grpc.health.v1.rs"),
            include_str!("generated/proto.rs"),
            include_str!("generated/bench.v1.rs"),
            include_str!("generated/counter.v1.rs"),
            include_str!("generated/streams.v1.rs"),
        ];
        let lib = include_str!("lib.rs");
        let curated = &lib[lib.find("\npub mod plugin").expect("the curated modules")..];
        let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
        let words: std::collections::HashSet<&str> = curated.split(|c| !is_word(c)).collect();
        for file in generated {
            for line in file.lines() {
                let Some(rest) = ["pub struct ", "pub enum ", "pub mod "]
                    .iter()
                    .find_map(|p| line.strip_prefix(p))
                else {
                    continue;
                };
                let name: String = rest.chars().take_while(|c| is_word(*c)).collect();
                assert!(words.contains(name.as_str()), "{name} is not re-exported");
            }
        }
    }

    #[test]
    fn descriptor_set_names_every_service_with_its_wire_name() {
        let fds = prost_types::FileDescriptorSet::decode(super::FILE_DESCRIPTOR_SET).unwrap();
        let mut services = Vec::new();
        for file in &fds.file {
            for svc in &file.service {
                services.push(format!("{}.{}", file.package(), svc.name()));
            }
        }
        for expected in [
            "plugin.GRPCController",
            "plugin.GRPCBroker",
            "plugin.GRPCStdio",
            "grpc.health.v1.Health",
            "proto.KV",
            "bench.v1.Bench",
            "counter.v1.Counter",
            "counter.v1.AddHelper",
        ] {
            assert!(
                services.iter().any(|s| s == expected),
                "{expected} missing from {services:?}"
            );
        }
        // Reflection clients resolve imports too.
        assert!(
            fds.file
                .iter()
                .any(|f| f.name() == "google/protobuf/empty.proto")
        );
    }

    #[test]
    fn service_names_match_go_plugin() {
        use crate::plugin::*;
        assert_eq!(grpc_broker_server::SERVICE_NAME, "plugin.GRPCBroker");
        assert_eq!(grpc_stdio_server::SERVICE_NAME, "plugin.GRPCStdio");
        assert_eq!(
            crate::health::v1::health_server::SERVICE_NAME,
            "grpc.health.v1.Health"
        );
    }
}
