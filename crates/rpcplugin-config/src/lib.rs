//! Configuration for rpcplugin hosts and plugins.
//!
//! Two things live here, and this is the only crate that reads environment
//! variables (the others receive values):
//!
//! - [`Settings`]: the tunables a user sets (timeouts, transports, message limits,
//!   the magic cookie), merged with [figment] from defaults < a config file <
//!   `PLUGIN_*` environment variables < an [`Overlay`] of values set in code;
//!   [`Settings::resolve`] also says where each value came from ([`Origin`]) and
//!   what was set but not used ([`Notice`]), and [`names`] holds
//!   pyvider-rpcplugin's names for the settings.
//! - [`Environment`]: a snapshot of the process environment, through which a
//!   plugin reads what its host passed (the magic cookie, whose variable name is
//!   chosen by the application, `PLUGIN_PROTOCOL_VERSIONS`, `PLUGIN_CLIENT_CERT`...).
//!
//! And [`units`]: the one parser of sizes (`4MiB`) and durations (`500ms`), which
//! the `rpcplugin` command line shares.
//!
//! ```
//! use rpcplugin_config::Settings;
//! use std::time::Duration;
//!
//! // Values as a host would set them in the plugin's environment.
//! let settings = Settings::from_vars([
//!     ("PLUGIN_HANDSHAKE_TIMEOUT", "2.5"),
//!     ("PLUGIN_SERVER_TRANSPORTS", "tcp,unix"),
//! ])
//! .unwrap();
//! assert_eq!(settings.handshake_timeout, Duration::from_millis(2500));
//! assert_eq!(settings.server_transports.unwrap()[0], rpcplugin_core::Network::Tcp);
//!
//! // A bad value names the variable and says what was expected.
//! let err = Settings::from_vars([("PLUGIN_HANDSHAKE_TIMEOUT", "ten")]).unwrap_err();
//! assert!(err.to_string().contains("PLUGIN_HANDSHAKE_TIMEOUT"), "{err}");
//! ```

mod de;
mod environment;
pub mod names;
mod overlay;
mod resolve;
mod sandbox;
mod settings;
pub mod units;

pub use environment::Environment;
pub use overlay::{ConfigValue, Overlay};
pub use resolve::{Entry, Loaded, Notice, NoticeKind, Origin, report, variable_of, warn};
pub use sandbox::SandboxMode;
pub use settings::{
    DEFAULT_COOKIE_KEY, DEFAULT_HOST_MAX_MESSAGE_SIZE, DEFAULT_PLUGIN_MAX_MESSAGE_SIZE, ENV_PREFIX,
    KEYS, PROTOCOL_VARIABLES, Settings, UnknownVariable, unknown_variables,
};
