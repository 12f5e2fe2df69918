//! Compiles proto/greeter.proto into Rust at build time, with protox (a protobuf
//! compiler written in Rust) instead of a system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(["proto/greeter.proto"], ["proto"])?;
    tonic_prost_build::configure()
        // No tonic transport: rpcplugin brings its own connections.
        .build_transport(false)
        .compile_fds(descriptors)?;
    Ok(())
}
