//! Routing what arrives on the broker stream: an announcement goes to the dial
//! waiting for its id (or is kept for the next one), a knock is answered with an
//! acknowledgement, and a dial waits, bounded, for either.

use rpcplugin_core::Code;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use rpcplugin_core::{Error, Result};
use rpcplugin_proto::plugin::ConnInfo;
use rpcplugin_proto::plugin::conn_info::Knock;
use tokio::sync::oneshot;

use crate::broker::Inner;

/// Announcements nobody dialled yet and dials nobody answered yet, by id.
#[derive(Default)]
pub(crate) struct Pending {
    slots: HashMap<u32, Slot>,
    next_token: u64,
}

enum Slot {
    /// The peer announced the id; nobody has dialled it yet.
    Arrived(ConnInfo, Instant),
    /// A dial waits for the id (its token tells waits apart).
    Waiting(u64, oneshot::Sender<ConnInfo>),
}

/// What a dial finds for its id.
enum Claim {
    Arrived(ConnInfo),
    Wait(u64, oneshot::Receiver<ConnInfo>),
}

impl Pending {
    /// The announcement of `id` if it arrived, else a wait for it. A second dial
    /// of the same id takes over the wait, as go-plugin's shared slot.
    fn claim(&mut self, id: u32, timeout: Duration) -> Claim {
        self.expire(timeout);
        if let Some(Slot::Arrived(info, _)) = self.slots.remove(&id) {
            return Claim::Arrived(info);
        }
        let (tx, rx) = oneshot::channel();
        self.next_token += 1;
        self.slots.insert(id, Slot::Waiting(self.next_token, tx));
        Claim::Wait(self.next_token, rx)
    }

    /// A wait that timed out leaves, unless another dial took the slot over.
    fn abandon(&mut self, id: u32, token: u64) {
        if matches!(self.slots.get(&id), Some(Slot::Waiting(t, _)) if *t == token) {
            self.slots.remove(&id);
        }
    }

    /// An announcement: to the dial waiting for it, or kept for the next one.
    fn deliver(&mut self, info: ConnInfo, timeout: Duration) {
        self.expire(timeout);
        let id = info.service_id;
        let info = match self.slots.remove(&id) {
            Some(Slot::Waiting(_, tx)) => match tx.send(info) {
                Ok(()) => return,
                Err(info) => info,
            },
            _ => info,
        };
        self.slots.insert(id, Slot::Arrived(info, Instant::now()));
    }

    /// Drops announcements nobody dialled within the timeout, as go-plugin does,
    /// so ids of servers that were never used do not accumulate.
    fn expire(&mut self, timeout: Duration) {
        self.slots.retain(|id, slot| match slot {
            Slot::Arrived(_, at) if at.elapsed() > timeout => {
                tracing::debug!(id, "broker announcement expired undialled");
                false
            }
            Slot::Waiting(_, tx) => !tx.is_closed(),
            Slot::Arrived(..) => true,
        });
    }

    /// The stream that announced them ended: what it announced is gone.
    pub(crate) fn forget_announcements(&mut self) {
        self.slots
            .retain(|_, slot| matches!(slot, Slot::Waiting(..)));
    }

    /// Forgets everything; waiting dials see their sender dropped.
    pub(crate) fn clear(&mut self) {
        self.slots.clear();
    }

    #[cfg(test)]
    pub(crate) fn holds(&self, id: u32) -> bool {
        self.slots.contains_key(&id)
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

impl Inner {
    /// A message from the peer: a knock is answered, anything else is routed.
    pub(crate) fn deliver(&self, info: ConnInfo) {
        if info.knock.as_ref().is_some_and(|k| k.knock && !k.ack) {
            self.answer_knock(info.service_id);
            return;
        }
        let timeout = self.dial_timeout();
        self.pending().deliver(info, timeout);
    }

    /// Waits up to `timeout` for the peer's message about `id`.
    pub(crate) async fn wait_for(&self, id: u32, timeout: Duration) -> Result<ConnInfo> {
        self.check_open()?;
        let claim = self.pending().claim(id, timeout);
        let (token, rx) = match claim {
            Claim::Arrived(info) => return Ok(info),
            Claim::Wait(token, rx) => (token, rx),
        };
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(info)) => Ok(info),
            Ok(Err(_)) => {
                // The sender went: the broker closed, or another dial took over.
                self.check_open()?;
                Err(Error::new(
                    Code::BrokerDialSuperseded,
                    format!("another dial of broker id {id} took its connection info"),
                )
                .with_hint("dial each brokered id once, and share the channel"))
            }
            Err(_) => {
                self.pending().abandon(id, token);
                Err(self.dial_timeout_error(id, timeout))
            }
        }
    }

    /// Knocks for `id` and waits for the peer's acknowledgement (multiplexed):
    /// the next stream this side opens is then for that id.
    pub(crate) async fn knock(&self, id: u32, timeout: Duration) -> Result<()> {
        let knock = ConnInfo {
            service_id: id,
            knock: Some(Knock {
                knock: true,
                ack: false,
                error: String::new(),
            }),
            ..ConnInfo::default()
        };
        self.outgoing_tx
            .send_timeout(knock, timeout)
            .await
            .map_err(|_| self.dial_timeout_error(id, timeout))?;
        let ack = self.wait_for(id, timeout).await?;
        let peer = self.role.peer();
        match ack.knock {
            Some(k) if k.ack && k.error.is_empty() => Ok(()),
            Some(k) if k.ack => Err(Error::new(
                Code::BrokerKnockRefused,
                format!("the {peer} refused broker id {id}: {}", k.error),
            )
            .with_hint(format!(
                "the {peer} must serve the id (rpcplugin: accept_and_serve({id}, ..); go-plugin: \
                 AcceptAndServe({id}, ..)) before this side dials it"
            ))),
            _ => Err(Error::new(
                Code::BrokerBadAck,
                format!("the {peer} answered the knock for broker id {id} with something else"),
            )
            .with_hint("both sides must multiplex, or neither")),
        }
    }

    /// The peer knocks for `id`: its next stream is for that brokered server.
    fn answer_knock(&self, id: u32) {
        let result = match self.config.get().and_then(|c| c.mux.as_ref()) {
            Some(router) => router.knock(id),
            None => Err("this broker is not multiplexed".to_owned()),
        };
        if let Err(error) = &result {
            tracing::debug!(id, %error, "refusing a knock");
        }
        let ack = ConnInfo {
            service_id: id,
            knock: Some(Knock {
                knock: true,
                ack: true,
                error: result.err().unwrap_or_default(),
            }),
            ..ConnInfo::default()
        };
        if self.outgoing_tx.try_send(ack).is_err() {
            tracing::warn!(
                id,
                "cannot acknowledge a knock: the broker stream is full or closed"
            );
        }
    }

    fn dial_timeout_error(&self, id: u32, timeout: Duration) -> Error {
        let peer = self.role.peer();
        Error::new(
            Code::BrokerDialTimeout,
            format!("the {peer} announced no broker id {id} within {timeout:?}"),
        )
        .with_hint(format!(
            "the {peer} must serve the id (rpcplugin: broker().accept_and_serve({id}, ..); \
             go-plugin: broker.AcceptAndServe({id}, ..)) before or while this side dials, once \
             per dial (an announcement is used by one dial, as in go-plugin); check that both \
             sides use the id sent in the request, or raise the broker dial timeout"
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::{Driver, Role};

    fn info(id: u32, address: &str) -> ConnInfo {
        ConnInfo {
            service_id: id,
            network: "unix".into(),
            address: address.into(),
            knock: None,
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_announcement_before_the_dial_is_kept_for_it() {
        let driver = Driver::new(Role::Host);
        driver.inner.deliver(info(4, "/tmp/x.sock"));
        let got = driver
            .inner
            .wait_for(4, Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(got.address, "/tmp/x.sock");
        assert!(driver.inner.pending().is_empty(), "used by one dial");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_dial_waits_for_a_later_announcement() {
        let driver = Driver::new(Role::Plugin);
        let waiter = {
            let driver = driver.clone();
            tokio::spawn(async move { driver.inner.wait_for(9, Duration::from_secs(5)).await })
        };
        tokio::task::yield_now().await;
        driver.inner.deliver(info(9, "/tmp/y.sock"));
        let got = waiter.await.unwrap().unwrap();
        assert_eq!(got.address, "/tmp/y.sock");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_id_never_announced_times_out_naming_the_peer_and_its_call() {
        for (role, peer) in [(Role::Host, "plugin"), (Role::Plugin, "host")] {
            let driver = Driver::new(role);
            let started = Instant::now();
            let err = driver
                .inner
                .wait_for(3, Duration::from_millis(50))
                .await
                .unwrap_err();
            assert!(started.elapsed() < Duration::from_secs(2));
            assert_eq!(err.code(), Code::BrokerDialTimeout);
            assert_eq!(err.kind(), rpcplugin_core::ErrorKind::Timeout);
            let hint = err.hint().unwrap();
            assert!(hint.contains("accept_and_serve(3"), "{err:?}");
            assert!(hint.contains("AcceptAndServe(3"), "{err:?}");
            assert!(
                err.to_string()
                    .contains(&format!("the {peer} announced no broker id 3")),
                "{err:?}"
            );
            assert!(driver.inner.pending().is_empty());
        }
    }

    #[test]
    fn announcements_nobody_dials_expire() {
        let mut pending = Pending::default();
        pending.deliver(info(1, "/a"), Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(5));
        pending.deliver(info(2, "/b"), Duration::from_millis(1));
        assert!(!pending.holds(1));
        assert!(pending.holds(2));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_second_dial_of_the_same_id_takes_over() {
        let driver = Driver::new(Role::Host);
        let first = {
            let driver = driver.clone();
            tokio::spawn(async move { driver.inner.wait_for(6, Duration::from_secs(5)).await })
        };
        tokio::task::yield_now().await;
        let second = {
            let driver = driver.clone();
            tokio::spawn(async move { driver.inner.wait_for(6, Duration::from_secs(5)).await })
        };
        tokio::task::yield_now().await;
        driver.inner.deliver(info(6, "/s"));
        assert_eq!(
            first.await.unwrap().unwrap_err().code(),
            Code::BrokerDialSuperseded
        );
        assert_eq!(second.await.unwrap().unwrap().address, "/s");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn closing_fails_waiting_dials_at_once() {
        let driver = Driver::new(Role::Plugin);
        let waiter = {
            let driver = driver.clone();
            tokio::spawn(async move { driver.inner.wait_for(5, Duration::from_secs(30)).await })
        };
        tokio::task::yield_now().await;
        driver.close();
        let err = tokio::time::timeout(Duration::from_secs(2), waiter)
            .await
            .expect("the dial ends at once")
            .unwrap()
            .unwrap_err();
        assert_eq!(err.code(), Code::BrokerClosed);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_knock_on_a_broker_that_does_not_multiplex_is_refused_with_an_ack() {
        let driver = Driver::new(Role::Plugin);
        driver.inner.deliver(ConnInfo {
            service_id: 2,
            knock: Some(Knock {
                knock: true,
                ack: false,
                error: String::new(),
            }),
            ..ConnInfo::default()
        });
        let ack = driver.inner.outgoing_rx.lock().await.try_recv().unwrap();
        let knock = ack.knock.unwrap();
        assert_eq!(ack.service_id, 2);
        assert!(knock.ack);
        assert_eq!(knock.error, "this broker is not multiplexed");
        assert!(
            driver.inner.pending().is_empty(),
            "a knock is no announcement"
        );
    }
}
