//! The provider's executable: Terraform starts it (the name must be
//! `terraform-provider-rpcplugin`), and it serves until Terraform shuts it down.

use std::process::ExitCode;
use terraform_provider_rpcplugin::{FileProvider, server};

fn main() -> ExitCode {
    // hclog JSON on stderr: Terraform shows it with TF_LOG, at its levels.
    rpcplugin::server::logging::init();
    let mut provider = FileProvider::new();
    if let Some(rpc) = std::env::var_os("TF_RPCPLUGIN_TEST_PANIC") {
        provider = provider.panic_in(rpc.to_string_lossy());
    }
    server(provider).run()
}
