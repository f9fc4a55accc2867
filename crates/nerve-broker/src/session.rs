//! What the broker knows of a connection's client: where it is, which listener it came through, and who it
//! is (the principal ACLs are checked against).

use std::net::SocketAddr;
use std::sync::Arc;

use nerve_auth::Principal;
use parking_lot::RwLock;

use crate::listener::Listener;

pub(crate) struct Session {
    pub(crate) peer: SocketAddr,
    pub(crate) listener: Arc<Listener>,
    /// `User:ANONYMOUS` until SASL or a client certificate says otherwise; changes only between
    /// requests (authentication runs in the connection's task with nothing else in flight).
    principal: RwLock<Arc<Principal>>,
}

impl Session {
    pub(crate) fn new(peer: SocketAddr, listener: Arc<Listener>, principal: Principal) -> Self {
        Session {
            peer,
            listener,
            principal: RwLock::new(Arc::new(principal)),
        }
    }

    pub(crate) fn principal(&self) -> Arc<Principal> {
        self.principal.read().clone()
    }

    pub(crate) fn set_principal(&self, principal: Principal) {
        *self.principal.write() = Arc::new(principal);
    }
}
