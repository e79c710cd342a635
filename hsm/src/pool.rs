//! A fixed-size pool of logged-in read/write sessions on one token, with reopen-and-retry.

use std::sync::{Condvar, Mutex};

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

use crate::error::HsmError;
use crate::pkcs11::{is_session_error, pkcs11_error, unavailable};

/// What an operation run on a pooled session can fail with.
pub(crate) enum OpError {
    /// A PKCS#11 call failed; session errors trigger one reopen-and-retry.
    Ck(CkError),
    /// A domain error (key not found, bad data): returned as is.
    Hsm(HsmError),
}

impl From<CkError> for OpError {
    fn from(e: CkError) -> Self {
        OpError::Ck(e)
    }
}

impl From<HsmError> for OpError {
    fn from(e: HsmError) -> Self {
        OpError::Hsm(e)
    }
}

/// `pool_size` sessions; a slot holding `None` lost its session and reopens it on next use.
pub(crate) struct Pool {
    ctx: Pkcs11,
    slot: Slot,
    pin: AuthPin,
    idle: Mutex<Vec<Option<Session>>>,
    returned: Condvar,
}

/// Map a C_Login failure: a refused PIN is the operator's problem, not the token's.
fn login_error(e: CkError) -> HsmError {
    match e {
        CkError::Pkcs11(RvError::PinIncorrect | RvError::PinLenRange, _) => HsmError::WrongPin,
        CkError::Pkcs11(RvError::PinLocked, _) => HsmError::PinLocked,
        other => pkcs11_error(other),
    }
}

impl Pool {
    /// Open `size` sessions and log the token in (login is per token, so once suffices).
    pub(crate) fn open(
        ctx: Pkcs11,
        slot: Slot,
        pin: AuthPin,
        size: usize,
    ) -> Result<Pool, HsmError> {
        let pool = Pool {
            ctx,
            slot,
            pin,
            idle: Mutex::new(Vec::with_capacity(size)),
            returned: Condvar::new(),
        };
        let mut sessions = Vec::with_capacity(size);
        for _ in 0..size.max(1) {
            sessions.push(Some(pool.new_session()?));
        }
        *pool.lock() = sessions;
        Ok(pool)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Option<Session>>> {
        // A panic while holding the lock cannot leave the Vec half-updated: push/pop only.
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Open a read/write session and make sure the token is logged in as user.
    fn new_session(&self) -> Result<Session, HsmError> {
        let session = self.ctx.open_rw_session(self.slot).map_err(|e| {
            if is_session_error(&e) {
                unavailable(&e)
            } else {
                pkcs11_error(e)
            }
        })?;
        match session.login(UserType::User, Some(&self.pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
            Err(e) if is_session_error(&e) => Err(unavailable(&e)),
            Err(e) => Err(login_error(e)),
        }
    }

    /// Take an idle slot, waiting for one if every session is busy.
    fn checkout(&self) -> Lease<'_> {
        let started = std::time::Instant::now();
        let mut idle = self.lock();
        loop {
            if let Some(slot) = idle.pop() {
                crate::metrics::pool_waited(started.elapsed());
                return Lease {
                    pool: self,
                    session: slot,
                };
            }
            idle = self
                .returned
                .wait(idle)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    /// Run `op` on a pooled session; on a session error reopen the session and retry once,
    /// then give up with `Unavailable`. Blocks: call from a blocking thread.
    pub(crate) fn run<T>(
        &self,
        mut op: impl FnMut(&Session) -> Result<T, OpError>,
    ) -> Result<T, HsmError> {
        let mut lease = self.checkout();
        let mut retried = false;
        loop {
            let session = match lease.session.take() {
                Some(session) => session,
                None => self.new_session()?,
            };
            match op(&session) {
                Ok(value) => {
                    lease.session = Some(session);
                    return Ok(value);
                }
                Err(OpError::Hsm(e)) => {
                    lease.session = Some(session);
                    return Err(e);
                }
                Err(OpError::Ck(e)) if is_session_error(&e) => {
                    drop(session);
                    if retried {
                        return Err(unavailable(&e));
                    }
                    tracing::warn!(error = %e, "PKCS#11 session failed; reopening and retrying once");
                    retried = true;
                }
                Err(OpError::Ck(e)) => {
                    lease.session = Some(session);
                    return Err(pkcs11_error(e));
                }
            }
        }
    }
}

/// A checked-out slot; goes back to the pool (with or without a live session) when dropped.
struct Lease<'a> {
    pool: &'a Pool,
    session: Option<Session>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        self.pool.lock().push(self.session.take());
        self.pool.returned.notify_one();
    }
}
