//! `rpcplugin call`: unary and server-streaming calls with JSON in and out, on one
//! launch of the plugin, with message types known only at run time: from the
//! plugin's gRPC reflection, or from `.proto` files compiled in-process (protox, no
//! protoc) when it serves none.
//!
//! The calls go through tonic's generic client with [`DynamicCodec`], which encodes
//! and decodes prost-reflect's `DynamicMessage`s: the same HTTP/2 framing and
//! limits as a generated client.

use crate::args::{CallArgs, Target};
use crate::{launch, reflect};
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, MethodDescriptor};
use rpcplugin_client::PluginClient;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// Why `call` stopped: the text for stderr (message and hint).
pub(crate) type Failed = String;

fn failed(message: impl std::fmt::Display, hint: impl std::fmt::Display) -> Failed {
    format!("error: {message}\n  hint: {hint}")
}

/// One call the command line asks for: `SERVICE/METHOD` and its JSON request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    /// The full service name, e.g. `proto.KV`.
    pub(crate) service: String,
    /// The method name, e.g. `Get`.
    pub(crate) method: String,
    /// The request as JSON text (`{}` when no --data was given for it).
    pub(crate) json: String,
}

/// Splits `proto.KV/Get` (or `/proto.KV/Get`, or grpcurl's `proto.KV.Get`) into
/// service and method.
pub(crate) fn split_method(text: &str) -> Option<(String, String)> {
    let text = text.strip_prefix('/').unwrap_or(text);
    let (service, method) = text.rsplit_once('/').or_else(|| text.rsplit_once('.'))?;
    (!service.is_empty() && !method.is_empty() && !method.contains('/'))
        .then(|| (service.to_owned(), method.to_owned()))
}

/// The JSON of a `--data` value: the text itself, or the file after `@` (`@-` is stdin).
pub(crate) fn read_data(value: &str) -> Result<String, Failed> {
    let Some(file) = value.strip_prefix('@') else {
        return Ok(value.to_owned());
    };
    let read = if file == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(file)
    };
    read.map_err(|e| {
        failed(
            format!("cannot read --data @{file}: {e}"),
            "give the path of a file holding the request as JSON, or the JSON itself",
        )
    })
}

/// Starts the plugin, makes the calls in order and prints each response as one
/// line of JSON; stops the plugin whatever happened. The error of the first call
/// that failed ends the run.
pub(crate) async fn run(
    args: &CallArgs,
    target: &Target,
    requests: &[Request],
) -> Result<(), Failed> {
    // Local files first: a typo in --proto should not cost a plugin launch.
    let local = if args.proto.is_empty() {
        None
    } else {
        Some(compile_protos(&args.proto, &args.import_path)?)
    };
    let plugin = launch::start(&args.launch, target)
        .await
        .map_err(|e| rpcplugin_core::render(&e))?;
    let result = calls(&plugin, local, args, requests).await;
    if let Err(err) = plugin.stop().await {
        // The calls' outcome is the answer; a failed stop is still worth a word.
        eprintln!("{}", rpcplugin_core::render(&err));
    }
    result
}

async fn calls(
    plugin: &PluginClient,
    local: Option<DescriptorPool>,
    args: &CallArgs,
    requests: &[Request],
) -> Result<(), Failed> {
    let pool = match local {
        Some(pool) => pool,
        None => {
            let services: Vec<String> = requests.iter().map(|r| r.service.clone()).collect();
            reflected_pool(plugin, &services, args).await?
        }
    };
    for request in requests {
        let method = find_method(&pool, request, !args.proto.is_empty())?;
        let message = parse_request(&method, &request.json)?;
        call(plugin, &method, message, args.launch.timeout).await?;
    }
    Ok(())
}

/// The descriptors of `services` from the plugin's reflection.
async fn reflected_pool(
    plugin: &PluginClient,
    services: &[String],
    args: &CallArgs,
) -> Result<DescriptorPool, Failed> {
    let no_reflection = "give the plugin's .proto files with --proto FILE (and --import-path DIR \
                         for their imports): they are compiled here, no protoc needed";
    let (session, _) = reflect::Reflection::connect(plugin.channel(), args.launch.timeout)
        .await
        .map_err(|why| failed(why, no_reflection))?;
    session
        .pool_for(services)
        .await
        .map_err(|why| failed(why, no_reflection))
}

/// Compiles `.proto` files in-process; each file's directory is an import path too.
pub(crate) fn compile_protos(
    files: &[PathBuf],
    imports: &[PathBuf],
) -> Result<DescriptorPool, Failed> {
    // Absolute paths: protox finds a file's import path by prefix, and `kv.proto`
    // must be found under `.` as `./kv.proto` would be.
    let absolute = |path: &Path| {
        std::path::absolute(path).map_err(|e| {
            failed(
                format!("cannot resolve {}: {e}", path.display()),
                "give existing paths to --proto and --import-path",
            )
        })
    };
    if let Some(missing) = files.iter().find(|f| !f.is_file()) {
        return Err(failed(
            format!("--proto {} does not exist", missing.display()),
            "give the path of the plugin's .proto file",
        ));
    }
    let files: Vec<PathBuf> = files
        .iter()
        .map(|f| absolute(f))
        .collect::<Result<_, _>>()?;
    let mut includes: Vec<PathBuf> = imports
        .iter()
        .map(|i| absolute(i))
        .collect::<Result<_, _>>()?;
    for file in &files {
        let dir = file.parent().unwrap_or(Path::new("/"));
        if !includes.iter().any(|i| i == dir) {
            includes.push(dir.to_owned());
        }
    }
    let mut compiler = protox::Compiler::new(&includes).map_err(|e| {
        failed(
            format!("cannot use the import paths: {e}"),
            "check that each --import-path is a directory",
        )
    })?;
    compiler.include_imports(true);
    compiler.open_files(&files).map_err(|e| {
        failed(
            format!("cannot compile --proto files: {e}"),
            "fix the .proto file, or add the directory its imports are relative to with --import-path DIR",
        )
    })?;
    Ok(compiler.descriptor_pool())
}

fn find_method(
    pool: &DescriptorPool,
    request: &Request,
    from_files: bool,
) -> Result<MethodDescriptor, Failed> {
    let source = if from_files {
        "the --proto files"
    } else {
        "the plugin's reflection"
    };
    let Some(service) = pool.get_service_by_name(&request.service) else {
        let known: Vec<String> = pool
            .services()
            .map(|s| s.full_name().to_owned())
            .filter(|name| !name.starts_with("grpc.reflection."))
            .collect();
        return Err(failed(
            format!("{source} describe no service {}", request.service),
            format!(
                "use a full service name (package.Service) from: {}",
                if known.is_empty() {
                    "(none)".to_owned()
                } else {
                    known.join(", ")
                }
            ),
        ));
    };
    let Some(method) = service.methods().find(|m| m.name() == request.method) else {
        let known: Vec<String> = service.methods().map(|m| m.name().to_owned()).collect();
        return Err(failed(
            format!(
                "service {} has no method {}",
                request.service, request.method
            ),
            format!("its methods are: {}", known.join(", ")),
        ));
    };
    if method.is_client_streaming() {
        return Err(failed(
            format!(
                "{}/{} takes a stream of requests",
                request.service, request.method
            ),
            "rpcplugin call makes unary and server-streaming calls only",
        ));
    }
    Ok(method)
}

fn parse_request(method: &MethodDescriptor, json: &str) -> Result<DynamicMessage, Failed> {
    let input = method.input();
    let mut de = serde_json::Deserializer::from_str(json);
    let message = DynamicMessage::deserialize(input.clone(), &mut de)
        .and_then(|m| de.end().map(|()| m))
        .map_err(|e| {
            failed(
                format!(
                    "--data for {} is not a {}: {e}",
                    method.full_name(),
                    input.full_name()
                ),
                format!(
                    "give the request as protobuf JSON with the fields {} (bytes as base64)",
                    field_list(&input)
                ),
            )
        })?;
    Ok(message)
}

fn field_list(message: &MessageDescriptor) -> String {
    let fields: Vec<String> = message
        .fields()
        .map(|f| format!("{:?}", f.json_name()))
        .collect();
    if fields.is_empty() {
        "{} (it has none)".to_owned()
    } else {
        format!("{{{}}}", fields.join(", "))
    }
}

/// One call; prints each response on its own line as it comes.
async fn call(
    plugin: &PluginClient,
    method: &MethodDescriptor,
    message: DynamicMessage,
    timeout: std::time::Duration,
) -> Result<(), Failed> {
    let name = format!("{}/{}", method.parent_service().full_name(), method.name());
    let path: http::uri::PathAndQuery = format!("/{name}").parse().map_err(|e| {
        failed(
            format!("{name} is not a valid gRPC path: {e}"),
            "check the service and method names",
        )
    })?;
    let mut grpc = tonic::client::Grpc::new(plugin.channel())
        .max_decoding_message_size(plugin.max_receive_message_size())
        .max_encoding_message_size(plugin.max_send_message_size());
    let codec = DynamicCodec {
        response: method.output(),
    };
    let status_error = |status: tonic::Status| {
        failed(
            format!("{name} failed: {}", crate::status_text(&status)),
            "the plugin answered with this gRPC status; check the request, and the plugin's log",
        )
    };
    let work = async {
        grpc.ready().await.map_err(|e| {
            failed(
                format!("{name}: the plugin cannot take calls: {e}"),
                "check the plugin's log",
            )
        })?;
        if method.is_server_streaming() {
            let mut stream = grpc
                .server_streaming(tonic::Request::new(message), path, codec)
                .await
                .map_err(status_error)?
                .into_inner();
            while let Some(reply) = stream.message().await.map_err(status_error)? {
                print_json(&reply)?;
            }
        } else {
            let reply = grpc
                .unary(tonic::Request::new(message), path, codec)
                .await
                .map_err(status_error)?;
            print_json(reply.get_ref())?;
        }
        Ok(())
    };
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or_else(|_| {
            Err(failed(
                format!("{name} got no complete answer within {timeout:?}"),
                "raise --timeout for slow calls or long streams",
            ))
        })
}

fn print_json(message: &DynamicMessage) -> Result<(), Failed> {
    let line = serde_json::to_string(message).map_err(|e| {
        failed(
            format!("cannot show the response as JSON: {e}"),
            "this is a bug",
        )
    })?;
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`| head -1`) is not the plugin's failure.
    let _ = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
    Ok(())
}

/// tonic's codec for messages known at run time: requests are encoded as they are,
/// responses decoded with the method's output descriptor.
#[derive(Debug, Clone)]
pub(crate) struct DynamicCodec {
    /// The response type.
    pub(crate) response: MessageDescriptor,
}

impl Codec for DynamicCodec {
    type Encode = DynamicMessage;
    type Decode = DynamicMessage;
    type Encoder = DynamicEncoder;
    type Decoder = DynamicDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        DynamicEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        DynamicDecoder(self.response.clone())
    }
}

/// Encodes a [`DynamicMessage`] as protobuf.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DynamicEncoder;

impl Encoder for DynamicEncoder {
    type Item = DynamicMessage;
    type Error = tonic::Status;

    fn encode(&mut self, item: Self::Item, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        item.encode(dst)
            .map_err(|e| tonic::Status::internal(format!("cannot encode the request: {e}")))
    }
}

/// Decodes protobuf into a [`DynamicMessage`] of one type.
#[derive(Debug, Clone)]
pub(crate) struct DynamicDecoder(MessageDescriptor);

impl Decoder for DynamicDecoder {
    type Item = DynamicMessage;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Self::Error> {
        DynamicMessage::decode(self.0.clone(), src)
            .map(Some)
            .map_err(|e| {
                tonic::Status::internal(format!(
                    "the response is not a valid {}: {e}",
                    self.0.full_name()
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_named_like_grpcurl_and_paths() {
        let kv = Some(("proto.KV".to_owned(), "Get".to_owned()));
        assert_eq!(split_method("proto.KV/Get"), kv);
        assert_eq!(split_method("/proto.KV/Get"), kv);
        assert_eq!(split_method("proto.KV.Get"), kv);
        assert_eq!(split_method("Get"), None);
        assert_eq!(split_method("proto.KV/"), None);
    }

    fn kv_pool() -> DescriptorPool {
        let proto = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto/examples/kv.proto");
        compile_protos(&[proto], &[]).expect("proto/examples/kv.proto compiles")
    }

    #[test]
    fn json_requests_become_messages_and_mistakes_name_the_fields() {
        let pool = kv_pool();
        let put = Request {
            service: "proto.KV".into(),
            method: "Put".into(),
            json: String::new(),
        };
        let method = find_method(&pool, &put, true).unwrap();
        let message = parse_request(&method, r#"{"key":"k","value":"dmFsdWU="}"#).unwrap();
        assert_eq!(
            serde_json::to_string(&message).unwrap(),
            r#"{"key":"k","value":"dmFsdWU="}"#
        );
        let err = parse_request(&method, r#"{"kee":"k"}"#).unwrap_err();
        assert!(err.contains("is not a proto.PutRequest"), "{err}");
        assert!(err.contains(r#"{"key", "value"}"#), "{err}");
        let err = parse_request(&method, r#"{"key":"k"} trailing"#).unwrap_err();
        assert!(err.contains("trailing"), "{err}");
    }

    #[test]
    fn unknown_services_and_methods_list_what_there_is() {
        let pool = kv_pool();
        let mut request = Request {
            service: "proto.Kv".into(),
            method: "Get".into(),
            json: "{}".into(),
        };
        let err = find_method(&pool, &request, true).unwrap_err();
        assert!(err.contains("describe no service proto.Kv"), "{err}");
        assert!(err.contains("proto.KV"), "{err}");
        request.service = "proto.KV".into();
        request.method = "Delete".into();
        let err = find_method(&pool, &request, true).unwrap_err();
        assert!(err.contains("its methods are: Get, Put"), "{err}");
    }

    #[test]
    fn a_bad_proto_file_is_reported_with_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.proto");
        std::fs::write(&file, "syntax = \"proto3\";\nmessage M { strin x = 1; }\n").unwrap();
        let err = compile_protos(&[file], &[]).unwrap_err();
        assert!(
            err.starts_with("error: cannot compile --proto files"),
            "{err}"
        );
        assert!(err.contains("strin"), "{err}");
    }
}
