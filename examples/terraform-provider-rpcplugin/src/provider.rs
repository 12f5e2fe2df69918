//! The `tfplugin6.Provider` service: decodes what Terraform sends, runs the
//! resource logic of [`crate::file`], and answers with values and diagnostics.
//!
//! Every problem the user can act on is a diagnostic in a successful reply, as
//! Terraform expects; a gRPC error status is left for what is not about the
//! configuration (Terraform shows it as "Plugin error").

use crate::diag::{self, error};
use crate::file::{self, Config};
use crate::pb::provider_server::Provider;
use crate::pb::*;
use crate::schema::{self, FILE};
use crate::value::Value;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};
use tonic::{Request, Response, Status};

/// The provider: files on the local disk. Terraform starts one process per phase
/// of a command, and configures each before using it.
#[derive(Debug, Default)]
pub struct FileProvider {
    config: RwLock<Config>,
    stopping: AtomicBool,
    panic_in: Option<String>,
}

impl FileProvider {
    /// A provider not configured yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the RPC named `rpc` (such as `"ReadDataSource"`) panic: how the tests
    /// check that a provider bug reaches Terraform as an error, not a hang. The
    /// executable sets it from `TF_RPCPLUGIN_TEST_PANIC`.
    pub fn panic_in(mut self, rpc: impl Into<String>) -> Self {
        self.panic_in = Some(rpc.into());
        self
    }

    fn fault_injection(&self, rpc: &str) {
        if self.panic_in.as_deref() == Some(rpc) {
            panic!("{rpc} panicked on purpose (TF_RPCPLUGIN_TEST_PANIC={rpc})");
        }
    }

    fn config(&self) -> Config {
        self.config
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Terraform asked the provider to stop (Ctrl-C): no new changes start.
    fn stopped(&self) -> Option<Diagnostic> {
        self.stopping.load(Ordering::SeqCst).then(|| {
            error(
                "The provider is stopping",
                "Terraform asked the provider to stop (interrupted), so it does not start new \
                 changes. Run the command again.",
            )
        })
    }
}

/// Decodes a value or answers with the diagnostic that says why not.
macro_rules! decode {
    ($value:expr, $what:literal, $reply:expr) => {
        match Value::from_dynamic($value) {
            Ok(v) => v,
            Err(err) => {
                let mut reply = $reply;
                reply.diagnostics.push(diag::undecodable($what, &err));
                return Ok(Response::new(reply));
            }
        }
    };
}

fn unknown_type(kind: &str, name: &str) -> Diagnostic {
    error(
        format!("Unknown {kind} type"),
        format!("This provider has no {kind} {name:?}; it has {FILE:?}."),
    )
}

#[tonic::async_trait]
impl Provider for FileProvider {
    async fn get_metadata(
        &self,
        _: Request<get_metadata::Request>,
    ) -> Result<Response<get_metadata::Response>, Status> {
        Ok(Response::new(get_metadata::Response {
            server_capabilities: Some(schema::capabilities()),
            diagnostics: Vec::new(),
            data_sources: vec![get_metadata::DataSourceMetadata {
                type_name: FILE.to_owned(),
            }],
            resources: vec![get_metadata::ResourceMetadata {
                type_name: FILE.to_owned(),
            }],
        }))
    }

    async fn get_provider_schema(
        &self,
        _: Request<get_provider_schema::Request>,
    ) -> Result<Response<get_provider_schema::Response>, Status> {
        self.fault_injection("GetProviderSchema");
        Ok(Response::new(schema::provider_schema()))
    }

    async fn validate_provider_config(
        &self,
        request: Request<validate_provider_config::Request>,
    ) -> Result<Response<validate_provider_config::Response>, Status> {
        let mut reply = validate_provider_config::Response::default();
        let config = decode!(
            request.get_ref().config.as_ref(),
            "provider configuration",
            reply
        );
        // An unknown root is refused when configuring, not here: validate also runs
        // in `terraform validate`, where nothing is known yet.
        if !config.get("root").is_unknown()
            && let Err(d) = Config::from_value(&config)
        {
            reply.diagnostics.push(d);
        }
        Ok(Response::new(reply))
    }

    async fn validate_resource_config(
        &self,
        request: Request<validate_resource_config::Request>,
    ) -> Result<Response<validate_resource_config::Response>, Status> {
        let request = request.into_inner();
        let mut reply = validate_resource_config::Response::default();
        if request.type_name != FILE {
            reply
                .diagnostics
                .push(unknown_type("resource", &request.type_name));
            return Ok(Response::new(reply));
        }
        let config = decode!(request.config.as_ref(), "resource configuration", reply);
        reply.diagnostics = file::validate_resource(&config);
        Ok(Response::new(reply))
    }

    async fn validate_data_resource_config(
        &self,
        request: Request<validate_data_resource_config::Request>,
    ) -> Result<Response<validate_data_resource_config::Response>, Status> {
        let request = request.into_inner();
        let mut reply = validate_data_resource_config::Response::default();
        if request.type_name != FILE {
            reply
                .diagnostics
                .push(unknown_type("data source", &request.type_name));
        }
        Ok(Response::new(reply))
    }

    async fn upgrade_resource_state(
        &self,
        request: Request<upgrade_resource_state::Request>,
    ) -> Result<Response<upgrade_resource_state::Response>, Status> {
        let request = request.into_inner();
        let mut reply = upgrade_resource_state::Response::default();
        let json = request.raw_state.map(|raw| raw.json).unwrap_or_default();
        // Schema version 0 is the only one: the stored state is already current, and
        // only its encoding changes (JSON in, msgpack out).
        let state = match Value::from_json(&json) {
            Ok(state) => state,
            Err(err) => {
                reply
                    .diagnostics
                    .push(diag::undecodable("stored state", &err));
                return Ok(Response::new(reply));
            }
        };
        let upgraded = Value::object(
            ["id", "path", "content", "permissions", "sha256"]
                .map(|name| (name, state.get(name).clone())),
        );
        reply.upgraded_state = Some(upgraded.to_dynamic());
        Ok(Response::new(reply))
    }

    async fn configure_provider(
        &self,
        request: Request<configure_provider::Request>,
    ) -> Result<Response<configure_provider::Response>, Status> {
        self.fault_injection("ConfigureProvider");
        let request = request.into_inner();
        let mut reply = configure_provider::Response::default();
        let config = decode!(request.config.as_ref(), "provider configuration", reply);
        match Config::from_value(&config) {
            Ok(config) => {
                // On stdout on purpose: after the handshake, stdout travels to
                // Terraform over plugin.GRPCStdio and shows in its log (TF_LOG).
                println!(
                    "terraform-provider-rpcplugin: configured by Terraform {}, root {}",
                    request.terraform_version,
                    config
                        .root
                        .as_deref()
                        .map_or_else(|| "(none)".into(), |r| r.display().to_string())
                );
                *self
                    .config
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = config;
            }
            Err(d) => reply.diagnostics.push(d),
        }
        Ok(Response::new(reply))
    }

    async fn read_resource(
        &self,
        request: Request<read_resource::Request>,
    ) -> Result<Response<read_resource::Response>, Status> {
        self.fault_injection("ReadResource");
        let request = request.into_inner();
        let mut reply = read_resource::Response {
            new_state: request.current_state.clone(),
            private: request.private.clone(),
            ..Default::default()
        };
        let state = decode!(request.current_state.as_ref(), "state", reply);
        // Local files, microseconds each: read on the runtime's worker rather than
        // pay a hop to the blocking pool.
        match file::read(&state) {
            Ok(new_state) => reply.new_state = Some(new_state.to_dynamic()),
            Err(d) => reply.diagnostics.push(d),
        }
        Ok(Response::new(reply))
    }

    async fn plan_resource_change(
        &self,
        request: Request<plan_resource_change::Request>,
    ) -> Result<Response<plan_resource_change::Response>, Status> {
        self.fault_injection("PlanResourceChange");
        let request = request.into_inner();
        let mut reply = plan_resource_change::Response {
            planned_private: request.prior_private.clone(),
            ..Default::default()
        };
        let prior = decode!(request.prior_state.as_ref(), "prior state", reply);
        let proposed = decode!(request.proposed_new_state.as_ref(), "proposed state", reply);
        let config = decode!(request.config.as_ref(), "resource configuration", reply);
        match file::plan(&self.config(), &prior, &proposed, &config) {
            Ok(plan) => {
                reply.planned_state = Some(plan.planned.to_dynamic());
                reply.requires_replace = plan
                    .requires_replace
                    .iter()
                    .map(|name| diag::attribute_path(name))
                    .collect();
            }
            Err(d) => reply.diagnostics.push(d),
        }
        Ok(Response::new(reply))
    }

    async fn apply_resource_change(
        &self,
        request: Request<apply_resource_change::Request>,
    ) -> Result<Response<apply_resource_change::Response>, Status> {
        self.fault_injection("ApplyResourceChange");
        let request = request.into_inner();
        let mut reply = apply_resource_change::Response {
            // On failure Terraform keeps what this says: the prior state.
            new_state: request.prior_state.clone(),
            private: request.planned_private.clone(),
            ..Default::default()
        };
        if let Some(d) = self.stopped() {
            reply.diagnostics.push(d);
            return Ok(Response::new(reply));
        }
        let prior = decode!(request.prior_state.as_ref(), "prior state", reply);
        let planned = decode!(request.planned_state.as_ref(), "planned state", reply);
        match file::apply(&self.config(), &prior, &planned) {
            Ok(state) => reply.new_state = Some(state.to_dynamic()),
            Err(d) => reply.diagnostics.push(d),
        }
        Ok(Response::new(reply))
    }

    async fn import_resource_state(
        &self,
        request: Request<import_resource_state::Request>,
    ) -> Result<Response<import_resource_state::Response>, Status> {
        let request = request.into_inner();
        let mut reply = import_resource_state::Response::default();
        if request.type_name != FILE {
            reply
                .diagnostics
                .push(unknown_type("resource", &request.type_name));
            return Ok(Response::new(reply));
        }
        match file::import(&self.config(), &request.id) {
            Ok(state) => reply
                .imported_resources
                .push(import_resource_state::ImportedResource {
                    type_name: FILE.to_owned(),
                    state: Some(state.to_dynamic()),
                    private: Vec::new(),
                }),
            Err(d) => reply.diagnostics.push(d),
        }
        Ok(Response::new(reply))
    }

    async fn move_resource_state(
        &self,
        request: Request<move_resource_state::Request>,
    ) -> Result<Response<move_resource_state::Response>, Status> {
        let request = request.into_inner();
        Ok(Response::new(move_resource_state::Response {
            diagnostics: vec![error(
                "Moving resources is not supported",
                format!(
                    "This provider cannot move a {:?} to {:?}.",
                    request.source_type_name, request.target_type_name
                ),
            )],
            ..Default::default()
        }))
    }

    async fn read_data_source(
        &self,
        request: Request<read_data_source::Request>,
    ) -> Result<Response<read_data_source::Response>, Status> {
        self.fault_injection("ReadDataSource");
        let request = request.into_inner();
        let mut reply = read_data_source::Response::default();
        let config = decode!(request.config.as_ref(), "data source configuration", reply);
        match file::read_data(&self.config(), &config) {
            Ok(state) => reply.state = Some(state.to_dynamic()),
            Err(d) => reply.diagnostics.push(d),
        }
        Ok(Response::new(reply))
    }

    async fn stop_provider(
        &self,
        _: Request<stop_provider::Request>,
    ) -> Result<Response<stop_provider::Response>, Status> {
        tracing::info!("Terraform asked the provider to stop");
        self.stopping.store(true, Ordering::SeqCst);
        Ok(Response::new(stop_provider::Response::default()))
    }
}
