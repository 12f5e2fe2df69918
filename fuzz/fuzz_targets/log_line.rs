//! Fuzzes the classifier of plugin stderr lines (hclog JSON, hclog text, `[LEVEL]`
//! prefixes, plain text), which reads whatever a plugin writes: it must never
//! panic, and never invent text.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rpcplugin_client::logline::parse;

fuzz_target!(|data: &[u8]| {
    let line = parse(data);
    let text = String::from_utf8_lossy(data);
    // Outside JSON (whose messages are unescaped), the message is a piece of the
    // line: nothing is invented.
    if !text.trim_start().starts_with('{') {
        assert!(
            text.contains(line.message.as_str()),
            "{text:?} gave message {:?}",
            line.message
        );
    }
});
