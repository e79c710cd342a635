-- Login callbacks (issue 13): the URL a relying party asked the result of a challenge to be
-- POSTed to (checked against its [[relying_party]] callback_urls when the challenge was made).
-- The delivery itself is a row of `notifications` (kind 'callback'), committed in the same
-- transaction as the answer.
ALTER TABLE login_challenges ADD COLUMN callback TEXT;
