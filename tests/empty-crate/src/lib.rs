//! The greeter plugin's service: its generated code and its implementation, shared
//! by the plugin binary (src/main.rs) and the in-process test.

use rpcplugin::tonic::{Request, Response, Status};

/// The code generated from proto/greeter.proto by build.rs.
pub mod pb {
    #![allow(missing_docs, unreachable_pub)]
    rpcplugin::tonic::include_proto!("greeter.v1");
}

// Once per generated server: `add_service` then gives it the plugin's message
// limits (256 MiB by default) rather than tonic's 4 MiB.
rpcplugin::server::impl_limited_service!(pb::greeter_server::GreeterServer<T>);

/// Both sides must agree on it, or the plugin refuses to start.
pub const COOKIE: (&str, &str) = ("GREETER_PLUGIN", "hello");

/// The service: greets whoever asks.
#[derive(Debug, Default)]
pub struct Greeter;

#[rpcplugin::tonic::async_trait]
impl pb::greeter_server::Greeter for Greeter {
    async fn greet(
        &self,
        request: Request<pb::GreetRequest>,
    ) -> Result<Response<pb::GreetReply>, Status> {
        let name = request.into_inner().name;
        if name.is_empty() {
            return Err(Status::invalid_argument("name is empty; say who to greet"));
        }
        Ok(Response::new(pb::GreetReply {
            greeting: format!("hello, {name}"),
        }))
    }
}

/// The plugin server the binary runs and the test serves in process.
pub fn plugin() -> rpcplugin::server::Builder {
    rpcplugin::plugin_server()
        .handshake(COOKIE.0, COOKIE.1)
        .add_service(pb::greeter_server::GreeterServer::new(Greeter))
}
