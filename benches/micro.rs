//! Micro-benchmarks of the hot pure paths: the handshake line, certificate
//! generation (AutoMTLS pays it at every launch, on both sides), and the
//! classification of plugin stderr lines.
//!
//! ```text
//! cargo bench --bench micro
//! ```

// criterion's macros generate the entry points, without docs.
#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use rpcplugin::Endpoint;
use rpcplugin::client::logline;
use rpcplugin::crypto::{Identity, KeyAlgorithm, Role};
use rpcplugin::handshake::HandshakeLine;
use std::hint::black_box;

fn handshake(c: &mut Criterion) {
    let cert = Identity::self_signed(KeyAlgorithm::EcdsaP256, Role::Server)
        .unwrap()
        .cert_der()
        .to_vec();
    let plain = HandshakeLine::new(
        1,
        Endpoint::Unix("/tmp/rpcplugin-1-0-abc/plugin.sock".into()),
    );
    let tls = plain.clone().with_server_cert(cert);
    let plain_text = plain.encode();
    let tls_text = tls.encode();
    c.bench_function("handshake/encode plaintext", |b| {
        b.iter(|| black_box(&plain).encode())
    });
    c.bench_function("handshake/encode with certificate", |b| {
        b.iter(|| black_box(&tls).encode())
    });
    c.bench_function("handshake/parse plaintext", |b| {
        b.iter(|| HandshakeLine::parse(black_box(&plain_text)).unwrap())
    });
    c.bench_function("handshake/parse with certificate", |b| {
        b.iter(|| HandshakeLine::parse(black_box(&tls_text)).unwrap())
    });
}

fn certificates(c: &mut Criterion) {
    let mut group = c.benchmark_group("certificates");
    group.sample_size(30);
    for (name, algorithm) in [
        ("P-256", KeyAlgorithm::EcdsaP256),
        ("P-384", KeyAlgorithm::EcdsaP384),
        ("P-521", KeyAlgorithm::EcdsaP521),
        ("Ed25519", KeyAlgorithm::Ed25519),
    ] {
        group.bench_function(format!("self-signed {name}"), |b| {
            b.iter(|| Identity::self_signed(algorithm, Role::Server).unwrap())
        });
    }
    group.finish();
}

fn log_lines(c: &mut Criterion) {
    let json = br#"{"@level":"debug","@message":"plugin address","@timestamp":"2026-11-22T21:24:23.650161Z","address":"/tmp/plugin1774583254","network":"unix"}"#;
    let text = b"2026-11-22T21:24:23.639Z [INFO]  kv-plugin: put: key=hello len=5";
    let plain = b"some library printed this without any structure at all";
    c.bench_function("logline/hclog json", |b| {
        b.iter(|| logline::parse(black_box(json)))
    });
    c.bench_function("logline/hclog text", |b| {
        b.iter(|| logline::parse(black_box(text)))
    });
    c.bench_function("logline/plain", |b| {
        b.iter(|| logline::parse(black_box(plain)))
    });
}

criterion_group!(benches, handshake, certificates, log_lines);
criterion_main!(benches);
