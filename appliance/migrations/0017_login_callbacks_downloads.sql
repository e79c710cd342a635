-- Login callbacks (issue 13): the URL a relying party asked the result of a challenge to be
-- POSTed to (checked against its [[relying_party]] callback_urls when the challenge was made).
-- The delivery itself is a row of `notifications` (kind 'callback'), committed in the same
-- transaction as the answer.
ALTER TABLE login_challenges ADD COLUMN callback TEXT;

-- Certificate download for an account without an application (issue 13): the profile the
-- channel asked for. For such a download application_id holds the account id (acct_...).
ALTER TABLE downloads ADD COLUMN profile TEXT;
