//! TLS over the transports, with the classification a host relies on to say who
//! refused what.

use std::time::Duration;

use rpcplugin_crypto::{Identity, KeyAlgorithm, Role, client_config_pinned, server_config_pinned};
use rpcplugin_transport::rustls::pki_types::ServerName;
use rpcplugin_transport::{Network, TcpTransport, TlsFailure, Transport, UnixTransport, connect};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TIMEOUT: Duration = Duration::from_secs(5);

fn localhost() -> ServerName<'static> {
    ServerName::try_from("localhost").unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn pinned_tls_round_trip_over_unix_and_tcp() {
    let host = Identity::self_signed(KeyAlgorithm::EcdsaP521, Role::Client).unwrap();
    let plugin = Identity::self_signed(KeyAlgorithm::default(), Role::Server).unwrap();
    let server = server_config_pinned(&plugin, host.cert_der().clone()).unwrap();
    let client = client_config_pinned(&host, plugin.cert_der().clone()).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let transports: Vec<Box<dyn Transport>> = vec![
        Box::new(UnixTransport::new().dir(dir.path())),
        Box::new(TcpTransport::new()),
    ];
    for transport in transports {
        let listener = transport.bind().await.unwrap();
        let (accepted, connected) = tokio::join!(
            async {
                let stream = listener.accept().await.unwrap();
                let mut stream = stream.accept_tls(server.clone(), TIMEOUT).await?;
                // Servers speak first (HTTP/2 SETTINGS); the client reads this
                // while confirming the handshake and must hand it out intact.
                stream.write_all(b"hello").await?;
                stream.flush().await.map(|()| stream)
            },
            async {
                let stream = connect(listener.endpoint()).await.unwrap();
                stream
                    .connect_tls(client.clone(), localhost(), TIMEOUT)
                    .await
            }
        );
        let (mut accepted, mut connected) = (accepted.unwrap(), connected.unwrap());
        assert!(accepted.is_tls() && connected.is_tls());
        assert_eq!(accepted.network(), transport.network());
        let mut hello = [0; 5];
        connected.read_exact(&mut hello).await.unwrap();
        assert_eq!(&hello, b"hello");
        connected.write_all(b"ping").await.unwrap();
        connected.flush().await.unwrap();
        let mut buf = [0; 4];
        accepted.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn another_server_certificate_is_refused_by_the_client() {
    let host = Identity::self_signed(KeyAlgorithm::default(), Role::Client).unwrap();
    let announced = Identity::self_signed(KeyAlgorithm::default(), Role::Server).unwrap();
    let presented = Identity::self_signed(KeyAlgorithm::default(), Role::Server).unwrap();
    let server = server_config_pinned(&presented, host.cert_der().clone()).unwrap();
    let client = client_config_pinned(&host, announced.cert_der().clone()).unwrap();

    let listener = TcpTransport::new().bind().await.unwrap();
    let (_, connected) = tokio::join!(
        async {
            let stream = listener.accept().await.unwrap();
            stream.accept_tls(server, TIMEOUT).await
        },
        async {
            let stream = connect(listener.endpoint()).await.unwrap();
            stream.connect_tls(client, localhost(), TIMEOUT).await
        }
    );
    let failure = TlsFailure::find(&connected.unwrap_err()).unwrap();
    assert!(
        matches!(failure, TlsFailure::PeerCertificateRefused(_)),
        "{failure:?}"
    );
    assert!(
        failure.to_string().contains("not the pinned certificate"),
        "{failure}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn another_client_certificate_is_refused_by_the_server() {
    let expected = Identity::self_signed(KeyAlgorithm::default(), Role::Client).unwrap();
    let intruder = Identity::self_signed(KeyAlgorithm::default(), Role::Client).unwrap();
    let plugin = Identity::self_signed(KeyAlgorithm::default(), Role::Server).unwrap();
    let server = server_config_pinned(&plugin, expected.cert_der().clone()).unwrap();
    let client = client_config_pinned(&intruder, plugin.cert_der().clone()).unwrap();

    let listener = TcpTransport::new().bind().await.unwrap();
    let (accepted, connected) = tokio::join!(
        async {
            let stream = listener.accept().await.unwrap();
            stream.accept_tls(server, TIMEOUT).await
        },
        async {
            // TLS 1.3: the server judges the client's certificate after the
            // client's side of the handshake is done; connect_tls waits for the
            // verdict, so the refusal is its error rather than the first call's.
            let stream = connect(listener.endpoint()).await.unwrap();
            stream.connect_tls(client, localhost(), TIMEOUT).await
        }
    );
    let server_side = TlsFailure::find(&accepted.unwrap_err()).unwrap();
    assert!(
        matches!(server_side, TlsFailure::PeerCertificateRefused(_)),
        "{server_side:?}"
    );
    let client_side = TlsFailure::find(&connected.unwrap_err()).unwrap();
    assert!(client_side.is_certificate_problem(), "{client_side:?}");
    assert!(matches!(client_side, TlsFailure::RefusedByPeer(_)));
}

#[tokio::test(flavor = "current_thread")]
async fn plaintext_client_is_not_tls_to_the_server() {
    let host = Identity::self_signed(KeyAlgorithm::default(), Role::Client).unwrap();
    let plugin = Identity::self_signed(KeyAlgorithm::default(), Role::Server).unwrap();
    let server = server_config_pinned(&plugin, host.cert_der().clone()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let listener = UnixTransport::new().dir(dir.path()).bind().await.unwrap();
    assert_eq!(listener.endpoint().network(), Network::Unix);
    let (accepted, _) = tokio::join!(
        async {
            let stream = listener.accept().await.unwrap();
            stream.accept_tls(server, TIMEOUT).await
        },
        async {
            let mut stream = connect(listener.endpoint()).await.unwrap();
            // What a plaintext gRPC client sends first: the HTTP/2 preface.
            stream
                .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
                .await
                .unwrap();
            let mut buf = Vec::new();
            let _ = stream.read_to_end(&mut buf).await;
        }
    );
    assert_eq!(
        TlsFailure::find(&accepted.unwrap_err()),
        Some(TlsFailure::NotTls)
    );
}

#[tokio::test(flavor = "current_thread")]
async fn silent_peer_times_out() {
    let host = Identity::self_signed(KeyAlgorithm::default(), Role::Client).unwrap();
    let plugin = Identity::self_signed(KeyAlgorithm::default(), Role::Server).unwrap();
    let server = server_config_pinned(&plugin, host.cert_der().clone()).unwrap();
    let listener = TcpTransport::new().bind().await.unwrap();
    let _silent = connect(listener.endpoint()).await.unwrap();
    let stream = listener.accept().await.unwrap();
    let err = stream
        .accept_tls(server, Duration::from_millis(100))
        .await
        .unwrap_err();
    assert_eq!(TlsFailure::find(&err), Some(TlsFailure::TimedOut));
}
