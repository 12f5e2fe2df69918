//! The greeter plugin: a host (rpcplugin, go-plugin, pyvider) starts it.

fn main() -> std::process::ExitCode {
    greeter_plugin::plugin().run()
}
