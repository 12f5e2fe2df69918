//! Fuzzes the tolerant handshake-line reader, which takes whatever a plugin
//! process prints first: it must never panic, and whatever it accepts must write
//! back (strict writer) to a line it reads as the same value.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rpcplugin_handshake::{HandshakeLine, parse_versions};

fuzz_target!(|data: &[u8]| {
    // A host reads the plugin's stdout as text; invalid UTF-8 becomes U+FFFD.
    let text = String::from_utf8_lossy(data);

    if let Ok(line) = HandshakeLine::parse(&text) {
        let encoded = line.encode();
        let again = HandshakeLine::parse(&encoded).unwrap_or_else(|e| {
            panic!("{text:?} parsed, but its encoding {encoded:?} did not: {e}")
        });
        assert_eq!(again, line, "{text:?} -> {encoded:?}");
        assert_eq!(
            again.encode(),
            encoded,
            "encoding is not stable for {text:?}"
        );
    }

    // The same bytes as a PLUGIN_PROTOCOL_VERSIONS value: must not panic either.
    let _ = parse_versions(&text);
});
