//! The broker stream (`plugin.GRPCBroker/StartStream`): what the peer sends is
//! routed into the broker, what the broker sends (announcements, knocks and their
//! acknowledgements) goes out, until either side ends it.
//!
//! The stream is the same for both roles; only its ends differ. The plugin serves
//! it and may carry several at once (a reattached host opens another): they take
//! turns sending, and the plugin's brokered servers stop when the last one ends,
//! while the broker stays open for the next. The host calls it once per plugin:
//! when it ends, the plugin is gone and the host's broker closes.

use std::future::Future;
use std::sync::atomic::Ordering;

use rpcplugin_proto::plugin::ConnInfo;
use tokio::sync::{mpsc, watch};
use tokio_stream::{Stream, StreamExt as _};
use tonic::Status;

use crate::Role;
use crate::broker::{Closed, Driver, Inner};

impl Driver {
    /// Carries one broker stream with the peer: messages from `inbound` are routed
    /// (announcements to dials, knocks answered), the broker's own messages go to
    /// `outbound`. The returned future runs until the peer ends `inbound`,
    /// `outbound` is closed or the broker closes; spawn it.
    ///
    /// The stream counts as open from this call on, not from the first poll. The
    /// host passes its `StartStream` call as `inbound` before the call has an
    /// answer: a go-plugin plugin answers only when it first has something to
    /// send, and the host's own announcements must flow before that. A call the
    /// plugin answers Unimplemented means it serves no broker, which the host's
    /// `broker.closed` errors then say.
    pub fn pump<S>(
        &self,
        inbound: S,
        outbound: mpsc::Sender<ConnInfo>,
    ) -> impl Future<Output = ()> + Send + 'static
    where
        S: Stream<Item = Result<ConnInfo, Status>> + Send + Unpin + 'static,
    {
        let inner = self.inner.clone();
        inner.streams.fetch_add(1, Ordering::SeqCst);
        // Watched from now: a close before the first poll still ends the stream.
        let generation = inner.generation.subscribe();
        async move {
            if !inner.is_closed()
                && let Some(status) = carry(&inner, inbound, outbound, generation).await
                && inner.role == Role::Host
                && status.code() == tonic::Code::Unimplemented
            {
                inner.close(Closed::Unsupported);
            }
            inner.stream_ended();
        }
    }
}

/// Runs the stream; returns how the peer failed it, if it did.
async fn carry<S>(
    inner: &Inner,
    mut inbound: S,
    outbound: mpsc::Sender<ConnInfo>,
    mut generation: watch::Receiver<u64>,
) -> Option<Status>
where
    S: Stream<Item = Result<ConnInfo, Status>> + Unpin,
{
    let peer = inner.role.peer();
    loop {
        tokio::select! {
            message = inbound.next() => match message {
                Some(Ok(info)) => inner.deliver(info),
                None => return None,
                Some(Err(status)) => {
                    tracing::debug!(%status, "the {peer}'s broker stream failed");
                    return Some(status);
                }
            },
            // The lock is held only while this branch waits, so several streams
            // (a reattached host) take turns.
            info = async { inner.outgoing_rx.lock().await.recv().await } => match info {
                Some(info) => {
                    if outbound.send(info).await.is_err() {
                        tracing::debug!("a broker message was lost: the {peer}'s stream closed");
                        return None;
                    }
                }
                None => return None,
            },
            () = outbound.closed() => return None,
            _ = generation.changed() => {
                if inner.is_closed() {
                    return None;
                }
            }
        }
    }
}

impl Inner {
    /// A stream with the peer ended. The host's broker closes: its plugin is gone.
    /// A plugin with no host stream left drops what they announced and stops the
    /// brokered servers made for them.
    fn stream_ended(&self) {
        let last = self.streams.fetch_sub(1, Ordering::SeqCst) == 1;
        match self.role {
            Role::Host => {
                tracing::debug!("the plugin's broker stream ended");
                self.close(Closed::PeerGone);
            }
            Role::Plugin if last => {
                tracing::debug!("the host's broker stream ended; stopping brokered servers");
                self.pending().forget_announcements();
                self.generation.send_modify(|g| *g += 1);
            }
            Role::Plugin => {}
        }
    }
}

/// Two brokers joined by their stream, as the tests of this crate run them: no
/// gRPC, two channels. Returns the host's and the plugin's pump.
#[cfg(test)]
pub(crate) fn join(
    host: &Driver,
    plugin: &Driver,
) -> (tokio::task::JoinHandle<()>, tokio::task::JoinHandle<()>) {
    use tokio_stream::wrappers::ReceiverStream;
    let (to_plugin, from_host) = mpsc::channel(16);
    let (to_host, from_plugin) = mpsc::channel(16);
    let plugin_side = tokio::spawn(plugin.pump(ReceiverStream::new(from_host).map(Ok), to_host));
    let host_side = tokio::spawn(host.pump(ReceiverStream::new(from_plugin).map(Ok), to_plugin));
    (host_side, plugin_side)
}

#[cfg(test)]
mod tests {
    use rpcplugin_core::Code;
    use std::time::Duration;

    use std::sync::Arc;

    use super::*;
    use crate::Config;
    use rpcplugin_proto::plugin::Empty;
    use rpcplugin_proto::plugin::grpc_controller_client::GrpcControllerClient;
    use rpcplugin_transport::{TcpTransport, UnixTransport};

    fn ready(role: Role) -> Driver {
        let driver = Driver::new(role);
        driver.set_ready(
            Config::new(Arc::new(UnixTransport::new())).dial_timeout(Duration::from_secs(2)),
        );
        driver
    }

    /// A call through a brokered channel reaches the server behind the id (an
    /// empty one, which answers Unimplemented).
    async fn reaches_a_server(channel: tonic::transport::Channel) {
        let status = GrpcControllerClient::new(channel)
            .shutdown(Empty {})
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");
    }

    /// An empty brokered server under a fresh id.
    async fn serve_nothing(driver: &Driver) -> (u32, crate::BrokeredServer) {
        let id = driver.broker().next_id();
        let served = driver
            .broker()
            .accept_and_serve(id, tonic::service::Routes::default())
            .await
            .unwrap();
        (id, served)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn each_side_serves_the_other_over_sockets() {
        let (host, plugin) = (ready(Role::Host), ready(Role::Plugin));
        join(&host, &plugin);
        for (server, client) in [(&plugin, &host), (&host, &plugin)] {
            let (id, served) = serve_nothing(server).await;
            let rpcplugin_core::Endpoint::Unix(path) = served.endpoint().clone() else {
                panic!("a unix socket: {:?}", served.endpoint());
            };
            assert!(path.exists());
            reaches_a_server(client.broker().dial(id).await.unwrap()).await;
            served.stop().await;
            assert!(!path.exists(), "stopping removes the socket");
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn tcp_brokered_servers_are_dialled_at_their_announced_address() {
        let host = Driver::new(Role::Host);
        host.set_ready(Config::new(Arc::new(TcpTransport::new())));
        let plugin = Driver::new(Role::Plugin);
        plugin.set_ready(Config::new(Arc::new(TcpTransport::new())));
        join(&host, &plugin);
        let served = host
            .broker()
            .accept_and_serve(3, tonic::service::Routes::default())
            .await
            .unwrap();
        assert!(
            matches!(served.endpoint(), rpcplugin_core::Endpoint::Tcp(a) if a.ip().is_loopback())
        );
        reaches_a_server(plugin.broker().dial(3).await.unwrap()).await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn when_the_hosts_stream_ends_the_host_closes_and_the_plugin_stops_serving() {
        let (host, plugin) = (ready(Role::Host), ready(Role::Plugin));
        let (host_side, plugin_side) = join(&host, &plugin);
        let served = plugin
            .broker()
            .accept_and_serve(1, tonic::service::Routes::default())
            .await
            .unwrap();
        assert!(served.is_serving());

        // The host goes: its end of the stream closes.
        host.close();
        tokio::time::timeout(Duration::from_secs(5), host_side)
            .await
            .unwrap()
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), plugin_side)
            .await
            .unwrap()
            .unwrap();
        for _ in 0..100 {
            if !served.is_serving() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!served.is_serving(), "the plugin's brokered server stopped");
        assert!(
            plugin.broker().is_open(),
            "the plugin's broker waits for the next host"
        );
        assert_eq!(
            host.broker().dial(1).await.unwrap_err().code(),
            Code::BrokerClosed
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_plugin_without_a_broker_is_reported_as_such() {
        let host = ready(Role::Host);
        let refused = tokio_stream::once(Err(Status::unimplemented("no such service")));
        host.pump(refused, mpsc::channel(1).0).await;
        let err = host.broker().dial(1).await.unwrap_err();
        assert_eq!(err.code(), Code::BrokerClosed);
        assert!(err.message().contains("serves no broker"), "{err:?}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_dial_nobody_answers_times_out() {
        let (host, plugin) = (ready(Role::Host), ready(Role::Plugin));
        join(&host, &plugin);
        let err = plugin
            .broker()
            .dial_with_timeout(8, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::BrokerDialTimeout);
        assert!(
            err.message().contains("the host announced no broker id 8"),
            "{err:?}"
        );
    }

    /// A host and a plugin broker multiplexed over one real socket pair: each
    /// side routes the streams its peer opens to the listener a knock named.
    async fn multiplexed() -> (Driver, Driver, tempfile::TempDir) {
        use rpcplugin_transport::{MuxRole, MuxRouter, MuxSession, Transport as _};
        let dir = tempfile::tempdir().unwrap();
        let listener = UnixTransport::new().dir(dir.path()).bind().await.unwrap();
        let dialled = rpcplugin_transport::connect(listener.endpoint())
            .await
            .unwrap();
        let accepted = listener.accept().await.unwrap();
        let mut drivers = Vec::new();
        for (role, raw, mux_role) in [
            (Role::Host, dialled, MuxRole::Client),
            (Role::Plugin, accepted, MuxRole::Server),
        ] {
            let router = Arc::new(MuxRouter::new());
            let (session, mut inbound) = MuxSession::new(raw, mux_role);
            router.set_session(session);
            let routing = router.clone();
            tokio::spawn(async move {
                while let Some(stream) = inbound.accept().await {
                    // No main server in these tests: unknocked streams are dropped.
                    drop(routing.route(stream));
                }
            });
            let driver = Driver::new(role);
            driver.set_ready(
                Config::new(Arc::new(UnixTransport::new()))
                    .dial_timeout(Duration::from_secs(2))
                    .multiplexed(Some(router)),
            );
            driver.set_endpoint(listener.endpoint().clone());
            drivers.push(driver);
        }
        let plugin = drivers.pop().unwrap();
        let host = drivers.pop().unwrap();
        join(&host, &plugin);
        (host, plugin, dir)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn multiplexed_each_side_serves_the_other_inside_one_connection() {
        let (host, plugin, _dir) = multiplexed().await;
        assert!(host.broker().is_multiplexed() && plugin.broker().is_multiplexed());
        for (server, client) in [(&plugin, &host), (&host, &plugin)] {
            let (id, served) = serve_nothing(server).await;
            // No socket of its own: it reports the main endpoint.
            assert_eq!(served.endpoint(), server.inner.endpoint.get().unwrap());
            reaches_a_server(client.broker().dial(id).await.unwrap()).await;
            served.stop().await;
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_multiplexed_dial_of_an_id_nobody_serves_is_refused_at_once() {
        let (host, _plugin, _dir) = multiplexed().await;
        let started = std::time::Instant::now();
        let err = host.broker().dial(42).await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(err.code(), Code::BrokerKnockRefused);
        assert!(
            err.message()
                .contains("the plugin refused broker id 42: no listener for id 42"),
            "{err:?}"
        );
        assert!(
            err.hint().unwrap().contains("accept_and_serve(42"),
            "{err:?}"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_host_announces_before_the_plugin_has_answered_the_stream() {
        // A go-plugin plugin answers StartStream only once it has something to
        // send; the host's announcements must reach it before that.
        let host = ready(Role::Host);
        let (to_plugin, mut at_plugin) = mpsc::channel(16);
        tokio::spawn(host.pump(tokio_stream::pending(), to_plugin));
        let served = host
            .broker()
            .accept_and_serve(4, tonic::service::Routes::default())
            .await
            .unwrap();
        let announced = tokio::time::timeout(Duration::from_secs(5), at_plugin.recv())
            .await
            .expect("announced while the stream has no answer")
            .unwrap();
        assert_eq!(announced.service_id, 4);
        assert_eq!(announced.network, "unix");
        assert_eq!(announced.address, served.endpoint().to_string());
    }

    /// A side's AutoMTLS settings: its own identity presented, exactly the
    /// peer's certificate trusted, in both directions.
    fn pinned(
        role: Role,
        own: &rpcplugin_crypto::Identity,
        peer: &rpcplugin_crypto::Identity,
    ) -> Driver {
        let driver = Driver::new(role);
        driver.set_ready(
            Config::new(Arc::new(UnixTransport::new()))
                .accept_tls(Some(
                    rpcplugin_crypto::server_config_pinned(own, peer.cert_der().clone()).unwrap(),
                ))
                .dial_tls(Some(
                    rpcplugin_crypto::client_config_pinned(own, peer.cert_der().clone()).unwrap(),
                )),
        );
        driver
    }

    fn identity(role: rpcplugin_crypto::Role) -> rpcplugin_crypto::Identity {
        rpcplugin_crypto::Identity::self_signed(rpcplugin_crypto::KeyAlgorithm::EcdsaP256, role)
            .unwrap()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn brokered_connections_run_mutual_tls_both_ways() {
        let host_id = identity(rpcplugin_crypto::Role::Client);
        let plugin_id = identity(rpcplugin_crypto::Role::Server);
        let host = pinned(Role::Host, &host_id, &plugin_id);
        let plugin = pinned(Role::Plugin, &plugin_id, &host_id);
        join(&host, &plugin);
        for (server, client) in [(&plugin, &host), (&host, &plugin)] {
            let (id, served) = serve_nothing(server).await;
            reaches_a_server(client.broker().dial(id).await.unwrap()).await;
            served.stop().await;
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_brokered_server_with_another_certificate_is_refused_at_dial() {
        let host_id = identity(rpcplugin_crypto::Role::Client);
        let plugin_id = identity(rpcplugin_crypto::Role::Server);
        let stranger = identity(rpcplugin_crypto::Role::Client);
        // The host presents a certificate the plugin was not told of.
        let host = pinned(Role::Host, &stranger, &plugin_id);
        let plugin = pinned(Role::Plugin, &plugin_id, &host_id);
        join(&host, &plugin);
        let (id, _served) = serve_nothing(&host).await;
        let err = plugin.broker().dial(id).await.unwrap_err();
        assert_eq!(err.code(), Code::SecurityTls, "{err:?}");
        assert!(
            err.message().contains(&format!("broker id {id}")),
            "{err:?}"
        );
        assert!(err.hint().unwrap().contains("same certificates"), "{err:?}");
    }
}
