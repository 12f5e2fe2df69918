//! Versioned plugin sets: which services the plugin serves for each app protocol
//! version (go-plugin's `VersionedPlugins`).

use crate::{AddService, LimitedService, Limits, PluginService};
use std::fmt;

/// The services a plugin serves for one app protocol version.
///
/// Give one per version to [`Builder::versioned_services`](crate::Builder::versioned_services);
/// the host offers its versions, the highest one both speak wins, and only that
/// version's set is served (with the services added to the builder directly, which
/// every version serves). A host that speaks none of them is refused by the host
/// itself, with both sides' versions in its error.
///
/// ```no_run
/// use rpcplugin_proto::examples::kv::kv_server::{Kv, KvServer};
/// use rpcplugin_proto::examples::counter::counter_server::{Counter, CounterServer};
/// use rpcplugin_server::{PluginServer, ServiceSet};
/// # fn sets<K: Kv, C: Counter>(kv: K, counter: C) -> std::process::ExitCode {
/// PluginServer::builder()
///     .handshake("BASIC_PLUGIN", "hello")
///     .versioned_services(1, ServiceSet::new().add_service(KvServer::new(kv)))
///     .versioned_services(2, ServiceSet::new().add_service(CounterServer::new(counter)))
///     .run()
/// # }
/// ```
#[derive(Default)]
#[must_use]
pub struct ServiceSet {
    pub(crate) services: Vec<AddService>,
    pub(crate) names: Vec<String>,
}

impl fmt::Debug for ServiceSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceSet")
            .field("services", &self.names)
            .finish()
    }
}

impl ServiceSet {
    /// An empty set (a version that serves only the common services).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a tonic-generated service with the plugin's message limits (256 MiB by
    /// default, [`Builder::max_message_sizes`](crate::Builder::max_message_sizes)),
    /// not tonic's 4 MiB. A server generated in your own crate needs
    /// [`impl_limited_service!`](crate::impl_limited_service) once; a service that is
    /// not generated goes in with [`add_service_with`](Self::add_service_with).
    pub fn add_service<S: PluginService + LimitedService>(self, service: S) -> Self {
        self.add_service_with(move |limits| limits.apply(service))
    }

    /// Adds a tonic service built with the plugin's [`Limits`], as
    /// [`Builder::add_service_with`](crate::Builder::add_service_with).
    pub fn add_service_with<S, F>(mut self, make: F) -> Self
    where
        F: FnOnce(Limits) -> S + Send + 'static,
        S: PluginService,
    {
        self.names.push(S::NAME.to_owned());
        self.services.push(Box::new(move |limits, layers, routes| {
            layers.add(make(limits), routes);
        }));
        self
    }

    /// The gRPC names of the services in the set.
    pub fn service_names(&self) -> &[String] {
        &self.names
    }

    pub(crate) fn extend(&mut self, other: ServiceSet) {
        self.services.extend(other.services);
        self.names.extend(other.names);
    }
}

/// The versions a plugin serves: those with a set, plus those given with
/// `protocol_version(s)`; version 1 when neither was given.
pub(crate) fn served_versions(given: Option<&[u32]>, sets: impl Iterator<Item = u32>) -> Vec<u32> {
    let mut versions: Vec<u32> = sets.collect();
    match given {
        Some(given) => versions.extend(given),
        None if versions.is_empty() => versions.push(1),
        None => {}
    }
    versions.sort_unstable();
    versions.dedup();
    versions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_come_from_the_sets_and_the_explicit_list() {
        assert_eq!(served_versions(None, [].into_iter()), [1]);
        assert_eq!(served_versions(None, [3, 2].into_iter()), [2, 3]);
        assert_eq!(served_versions(Some(&[5]), [2].into_iter()), [2, 5]);
        assert_eq!(
            served_versions(Some(&[]), [].into_iter()),
            Vec::<u32>::new()
        );
    }
}
