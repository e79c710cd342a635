-- An expired login challenge with a callback is called back too (status 'expired'): the
-- appliance marks it and queues the delivery. This index lets that sweep read only the pending
-- challenges with a callback, by expiry.
CREATE INDEX login_challenges_pending_callbacks ON login_challenges (expires_at)
    WHERE status = 'pending' AND callback IS NOT NULL;
