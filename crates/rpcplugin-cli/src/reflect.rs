//! A gRPC reflection client: which services a plugin serves, and the descriptors of
//! their messages, for `probe` (the list) and `call` (JSON to protobuf and back).
//!
//! Servers speak `grpc.reflection.v1` (rpcplugin, recent grpc-go) or only
//! `grpc.reflection.v1alpha` (go-plugin 1.0's grpc-go, grpcio). The two protocols
//! have the same messages under different package names, so one set of message
//! types serves both: only the method path differs.

use prost_reflect::DescriptorPool;
use prost_types::FileDescriptorProto;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tonic::transport::Channel;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::{ServerReflectionRequest, ServerReflectionResponse};

/// The reflection protocol a server answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    /// `grpc.reflection.v1`.
    V1,
    /// `grpc.reflection.v1alpha`.
    V1Alpha,
}

impl Version {
    fn path(self) -> &'static str {
        match self {
            Version::V1 => "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            Version::V1Alpha => "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        }
    }

    /// The package name, for reports.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Version::V1 => "grpc.reflection.v1",
            Version::V1Alpha => "grpc.reflection.v1alpha",
        }
    }
}

/// A reflection session with one plugin: the version it answered.
#[derive(Debug, Clone)]
pub(crate) struct Reflection {
    channel: Channel,
    version: Version,
    timeout: Duration,
}

/// Why reflection gave no answer.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The plugin serves neither reflection protocol.
    Unimplemented,
    /// A call failed, or the answer made no sense.
    Error(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Unimplemented => {
                f.write_str("the plugin serves no gRPC reflection (v1 or v1alpha)")
            }
            Failure::Error(why) => f.write_str(why),
        }
    }
}

impl Reflection {
    /// Finds the protocol the plugin speaks (v1 first) and lists its services.
    pub(crate) async fn connect(
        channel: Channel,
        timeout: Duration,
    ) -> Result<(Self, Vec<String>), Failure> {
        for version in [Version::V1, Version::V1Alpha] {
            let session = Self {
                channel: channel.clone(),
                version,
                timeout,
            };
            match session
                .ask(MessageRequest::ListServices(String::new()))
                .await
            {
                Ok(MessageResponse::ListServicesResponse(list)) => {
                    let names = list.service.into_iter().map(|s| s.name).collect();
                    return Ok((session, names));
                }
                Ok(other) => {
                    return Err(Failure::Error(format!(
                        "reflection answered a service list with {other:?}"
                    )));
                }
                Err(status) if status.code() == tonic::Code::Unimplemented => continue,
                Err(status) => {
                    return Err(Failure::Error(format!(
                        "reflection failed: {}",
                        crate::status_text(&status)
                    )));
                }
            }
        }
        Err(Failure::Unimplemented)
    }

    /// The protocol the plugin answered.
    pub(crate) fn version(&self) -> Version {
        self.version
    }

    /// The descriptors of `symbols` (services or messages) and everything they import.
    pub(crate) async fn pool_for(&self, symbols: &[String]) -> Result<DescriptorPool, Failure> {
        let mut files: BTreeMap<String, FileDescriptorProto> = BTreeMap::new();
        for symbol in symbols {
            let answer = self
                .ask(MessageRequest::FileContainingSymbol(symbol.clone()))
                .await
                .map_err(|s| {
                    Failure::Error(format!(
                        "reflection has no descriptor for {symbol}: {}",
                        crate::status_text(&s)
                    ))
                })?;
            add_files(&mut files, answer)?;
        }
        // Servers send a file with its imports, or not: ask for what is missing,
        // a bounded number of times (a file imports a finite set).
        for _ in 0..64 {
            let missing: BTreeSet<String> = files
                .values()
                .flat_map(|f| f.dependency.iter().cloned())
                .filter(|d| !files.contains_key(d) && !is_well_known(d))
                .collect();
            if missing.is_empty() {
                break;
            }
            for name in missing {
                let answer = self
                    .ask(MessageRequest::FileByFilename(name.clone()))
                    .await
                    .map_err(|s| {
                        Failure::Error(format!(
                            "reflection has no file {name}: {}",
                            crate::status_text(&s)
                        ))
                    })?;
                add_files(&mut files, answer)?;
            }
        }
        build_pool(files.into_values().collect()).map_err(Failure::Error)
    }

    /// One request on its own stream, one answer.
    async fn ask(&self, request: MessageRequest) -> Result<MessageResponse, tonic::Status> {
        let mut grpc =
            tonic::client::Grpc::new(self.channel.clone()).max_decoding_message_size(64 << 20);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(request),
        };
        let call = async {
            grpc.ready()
                .await
                .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
            let path = http::uri::PathAndQuery::from_static(self.version.path());
            let codec = tonic_prost::ProstCodec::<ServerReflectionRequest, ServerReflectionResponse>::default();
            let mut stream = grpc
                .streaming(
                    tonic::Request::new(tokio_stream::once(request)),
                    path,
                    codec,
                )
                .await?
                .into_inner();
            match stream.message().await? {
                Some(ServerReflectionResponse {
                    message_response: Some(MessageResponse::ErrorResponse(err)),
                    ..
                }) => Err(tonic::Status::new(
                    tonic::Code::from(err.error_code),
                    err.error_message,
                )),
                Some(ServerReflectionResponse {
                    message_response: Some(answer),
                    ..
                }) => Ok(answer),
                _ => Err(tonic::Status::unknown("reflection sent no answer")),
            }
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .unwrap_or_else(|_| {
                Err(tonic::Status::deadline_exceeded(format!(
                    "no reflection answer within {:?}",
                    self.timeout
                )))
            })
    }
}

/// google/protobuf's own files, which prost-reflect knows without being sent them.
fn is_well_known(name: &str) -> bool {
    name.starts_with("google/protobuf/")
}

fn add_files(
    files: &mut BTreeMap<String, FileDescriptorProto>,
    answer: MessageResponse,
) -> Result<(), Failure> {
    use prost::Message as _;
    let MessageResponse::FileDescriptorResponse(found) = answer else {
        return Err(Failure::Error(format!(
            "reflection answered a file request with {answer:?}"
        )));
    };
    for bytes in found.file_descriptor_proto {
        let file = FileDescriptorProto::decode(bytes.as_slice())
            .map_err(|e| Failure::Error(format!("reflection sent a bad descriptor: {e}")))?;
        files.entry(file.name().to_owned()).or_insert(file);
    }
    Ok(())
}

/// A pool of `files`, in an order where imports come first, over the well-known
/// types.
pub(crate) fn build_pool(files: Vec<FileDescriptorProto>) -> Result<DescriptorPool, String> {
    let mut pool = DescriptorPool::global();
    let mut pending = files;
    // Each pass adds every file whose imports are in; a pass that adds none means
    // an import nobody sent.
    while !pending.is_empty() {
        let (ready, waiting): (Vec<_>, Vec<_>) = pending.into_iter().partition(|f| {
            f.dependency
                .iter()
                .all(|d| pool.get_file_by_name(d).is_some())
        });
        if ready.is_empty() {
            let names: Vec<_> = waiting.iter().map(|f| f.name().to_owned()).collect();
            return Err(format!(
                "the descriptors of {} import files that were not found",
                names.join(", ")
            ));
        }
        for file in ready {
            if pool.get_file_by_name(file.name()).is_none() {
                pool.add_file_descriptor_proto(file)
                    .map_err(|e| format!("bad descriptors: {e}"))?;
            }
        }
        pending = waiting;
    }
    Ok(pool)
}
