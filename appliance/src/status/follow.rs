//! Several nodes on one PostgreSQL database: each node follows the status changes the others
//! commit (the storage change feed), so its OCSP answers and CRLs follow a revocation made on
//! another node within a second. Woken by the feed's notification; a periodic catch-up repairs a
//! notification missed (listener connection lost, node busy).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::storage::{ChangedStatus, StatusFeed, StatusWaker};

use super::ocsp::{FeedChange, ADOPT_WAIT};
use super::StatusService;

/// The longest a change waits when its notification was missed.
pub const CATCH_UP: Duration = Duration::from_millis(500);

/// Changes read per CA per query.
const BATCH: i64 = 500;

/// Follows `feed` for ever: every change of a CA this node answers for withdraws the stale
/// answer, takes the one the changing node stored (signing one only if it does not come), and
/// marks the CA's CRLs for regeneration.
pub async fn run(service: Arc<StatusService>, feed: StatusFeed) {
    let start = loop {
        match feed.current().await {
            Ok(seq) => break seq,
            Err(e) => {
                tracing::warn!(error = %e, "status feed: cannot read the status counter; retrying");
                tokio::time::sleep(CATCH_UP).await;
            }
        }
    };
    // One cursor per CA: sequence numbers commit in order, so a CA's cursor never passes one
    // of its changes still to come.
    let mut cursors: HashMap<i64, i64> = service
        .ocsp
        .issuer_ids()
        .into_iter()
        .map(|id| (id, start))
        .collect();
    let mut waker = listen(&feed).await;
    loop {
        wait(&mut waker, &feed).await;
        for (ca_id, cursor) in cursors.iter_mut() {
            if let Err(e) = catch_up(&service, &feed, *ca_id, cursor).await {
                tracing::warn!(error = %e, ca_id, "status feed: catch-up failed; retrying");
            }
        }
    }
}

/// Applies the changes of `ca_id` after `cursor`, moving it.
async fn catch_up(
    service: &Arc<StatusService>,
    feed: &StatusFeed,
    ca_id: i64,
    cursor: &mut i64,
) -> Result<(), crate::storage::StorageError> {
    loop {
        let changes = feed.changes_after(ca_id, *cursor, BATCH).await?;
        let mut missing: Vec<ChangedStatus> = Vec::new();
        for c in &changes {
            match service
                .ocsp
                .on_feed_change(c.ca_id, &c.serial, c.status_seq)
                .await
            {
                Ok(FeedChange::Held) => {}
                Ok(FeedChange::Adopted) => {
                    adopted(c);
                    service.crls.mark_dirty(c.ca_id);
                }
                Ok(FeedChange::Missing) => {
                    service.crls.mark_dirty(c.ca_id);
                    missing.push(c.clone());
                }
                Err(e) => {
                    // The stale answer is withdrawn; the pre-signer's pass re-signs it.
                    tracing::warn!(error = %e, serial = %c.serial, "status feed: re-signing failed");
                    service.crls.mark_dirty(c.ca_id);
                }
            }
            *cursor = (*cursor).max(c.status_seq);
        }
        // The changing node signs and stores its answers right after its commit: they are taken
        // from the database after one wait for the batch, or signed here if they did not come.
        // Done aside, so that the next changes' stale answers are withdrawn without waiting.
        if !missing.is_empty() {
            tokio::spawn(adopt_or_sign(service.clone(), missing));
        }
        if (changes.len() as i64) < BATCH {
            return Ok(());
        }
    }
}

/// After [`ADOPT_WAIT`], the answers other nodes stored for `missing`, or signed here.
async fn adopt_or_sign(service: Arc<StatusService>, missing: Vec<ChangedStatus>) {
    tokio::time::sleep(ADOPT_WAIT).await;
    for c in &missing {
        match service
            .ocsp
            .adopt_or_sign(c.ca_id, &c.serial, c.status_seq)
            .await
        {
            Ok(true) => adopted(c),
            Ok(false) => tracing::info!(
                serial = %c.serial,
                status_seq = c.status_seq,
                "status change from another node: its answer did not come, signed here"
            ),
            Err(e) => {
                tracing::warn!(error = %e, serial = %c.serial, "status feed: re-signing failed")
            }
        }
    }
}

fn adopted(c: &ChangedStatus) {
    tracing::info!(
        serial = %c.serial,
        status_seq = c.status_seq,
        "status change from another node: answer adopted from the database"
    );
}

async fn listen(feed: &StatusFeed) -> Option<StatusWaker> {
    match feed.listen().await {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "status feed: LISTEN failed; following by catch-up only");
            None
        }
    }
}

/// Returns on a notification or after [`CATCH_UP`]; a failed listener is re-opened.
async fn wait(waker: &mut Option<StatusWaker>, feed: &StatusFeed) {
    let Some(w) = waker else {
        tokio::time::sleep(CATCH_UP).await;
        *waker = listen(feed).await;
        return;
    };
    tokio::select! {
        () = tokio::time::sleep(CATCH_UP) => {}
        heard = w.notified() => {
            if let Err(e) = heard {
                tracing::warn!(error = %e, "status feed: notification connection lost; catching up");
                tokio::time::sleep(CATCH_UP).await;
            }
        }
    }
}
