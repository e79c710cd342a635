//! [`CodeService`]: the appliance's own one-time codes. Six random digits, sent by SMS through
//! the channel's notifier; only a keyed hash is stored (HMAC under a key derived from the active
//! data key, bound to application and purpose, with that key's id), so the database never holds
//! a code. A code expires after `code_ttl_secs`, another one is sent only after
//! `code_resend_secs`, and `code_max_attempts` wrong tries void it. Answers never depend on the
//! phone (whether it exists, is real-name, or received the SMS). A data-key rotation followed by
//! a restart voids open codes whose key was destroyed (reported as expired).

use std::sync::Arc;

use futures_util::future::BoxFuture;
use rand::Rng;

use crate::contact::{ChannelNotifier, CodeError, CodePurpose, OneTimeCodes, SentCode};
use crate::storage::{unix_now, NewCode, NotifyRows};
use crate::verification::seal::{DataKey, SealError};
use crate::verification::Keyring;

/// Code length in digits.
pub const CODE_DIGITS: usize = 6;

/// Timing and attempt rules of codes.
#[derive(Debug, Clone, Copy)]
pub struct CodeRules {
    /// Seconds a code is accepted.
    pub ttl_secs: i64,
    /// Seconds before another code is sent for the same step.
    pub resend_secs: i64,
    /// Wrong tries before the code is void.
    pub max_attempts: u32,
}

/// Constant-time comparison of two MACs.
pub fn equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn purpose_name(p: CodePurpose) -> &'static str {
    match p {
        CodePurpose::ConfirmPhone => "confirm_phone",
        CodePurpose::ApplicationSignature => "application_signature",
        CodePurpose::NewPhone => "new_phone",
        CodePurpose::Authorisation => "authorisation",
        CodePurpose::Lookup => "lookup",
        CodePurpose::AgentChange => "agent_change",
        CodePurpose::Download => "download",
        CodePurpose::CodeLogin => "code_login",
    }
}

fn code_mac(key: &DataKey, application_id: &str, purpose: &str, code: &str) -> Vec<u8> {
    key.reference_mac(&format!("otp\0{application_id}\0{purpose}"), code)
}

fn phone_mac(key: &DataKey, phone: &str) -> Vec<u8> {
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    key.reference_mac("otp-phone", &digits)
}

/// The SMS text of a code (Chinese first, as carriers expect; no other personal data).
pub fn sms_text(code: &str, ttl_secs: i64, purpose: CodePurpose) -> String {
    let what = match purpose {
        CodePurpose::ConfirmPhone => "确认手机号 (phone confirmation)",
        CodePurpose::ApplicationSignature => "签署证书申请 (application signature)",
        CodePurpose::NewPhone => "更换手机号 (phone change)",
        CodePurpose::Authorisation => "授权经办人办理证书 (authorising the agent)",
        CodePurpose::Lookup => "查询订单 (order lookup)",
        CodePurpose::AgentChange => "变更经办人 (agent change)",
        CodePurpose::Download => "下载证书到手机 (certificate download)",
        CodePurpose::CodeLogin => "验证码登录 (code login)",
    };
    format!(
        "您的验证码为 {code}，用于{what}，{} 分钟内有效，请勿告诉他人。Your code is {code}.",
        (ttl_secs + 59) / 60
    )
}

fn storage(e: impl std::fmt::Display) -> CodeError {
    CodeError::Storage(e.to_string())
}

/// One-time codes over the `one_time_codes` table, sent through a [`ChannelNotifier`].
pub struct CodeService {
    rows: NotifyRows,
    keyring: Arc<Keyring>,
    notifier: Arc<dyn ChannelNotifier>,
    rules: CodeRules,
}

impl std::fmt::Debug for CodeService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeService")
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl CodeService {
    /// Codes keyed by `keyring`'s active key, sent through `notifier`.
    pub fn new(
        rows: NotifyRows,
        keyring: Arc<Keyring>,
        notifier: Arc<dyn ChannelNotifier>,
        rules: CodeRules,
    ) -> Self {
        Self {
            rows,
            keyring,
            notifier,
            rules,
        }
    }

    async fn send_inner(
        &self,
        channel: &str,
        application_id: &str,
        purpose: CodePurpose,
        phone: &str,
    ) -> Result<SentCode, CodeError> {
        let name = purpose_name(purpose);
        let now = unix_now();
        if let Some(open) = self
            .rows
            .code(application_id, name)
            .await
            .map_err(storage)?
        {
            if open.resend_after > now {
                return Err(CodeError::ResendTooSoon {
                    retry_after: open.resend_after,
                });
            }
        }
        let code = format!(
            "{:0width$}",
            rand::rngs::OsRng.gen_range(0..1_000_000u32),
            width = CODE_DIGITS
        );
        let keys = self.keyring.current();
        let key = keys
            .active()
            .map_err(|e: SealError| storage(e.to_string()))?;
        let sent = SentCode {
            expires_at: now + self.rules.ttl_secs,
            resend_after: now + self.rules.resend_secs,
        };
        let stored = self
            .rows
            .put_code(&NewCode {
                application_id,
                purpose: name,
                key_id: key.id(),
                code_mac: &code_mac(key, application_id, name, &code),
                phone_mac: &phone_mac(key, phone),
                expires_at: sent.expires_at,
                resend_after: sent.resend_after,
                now,
            })
            .await
            .map_err(storage)?;
        if !stored {
            // Another send for the same step won the race: its cooldown applies.
            let retry_after = self
                .rows
                .code(application_id, name)
                .await
                .map_err(storage)?
                .map_or(now + self.rules.resend_secs, |c| c.resend_after);
            return Err(CodeError::ResendTooSoon { retry_after });
        }
        let text = sms_text(&code, self.rules.ttl_secs, purpose);
        if let Err(e) = self.notifier.send_sms(channel, phone, &text).await {
            // Nothing will reach the applicant: do not leave a code (and its cooldown) behind.
            let _ = self.rows.delete_code(application_id, name).await;
            return Err(CodeError::Notify(e));
        }
        tracing::info!(application = %application_id, purpose = name, "one-time code sent");
        Ok(sent)
    }

    async fn check_inner(
        &self,
        application_id: &str,
        purpose: CodePurpose,
        code: &str,
    ) -> Result<(), CodeError> {
        let name = purpose_name(purpose);
        let Some(row) = self
            .rows
            .code(application_id, name)
            .await
            .map_err(storage)?
        else {
            return Err(CodeError::NoCode);
        };
        match row.state.as_str() {
            "open" => {}
            "void" => return Err(CodeError::AttemptsExceeded),
            _ => return Err(CodeError::NoCode),
        }
        if unix_now() > row.expires_at {
            return Err(CodeError::Expired);
        }
        let mut keys = self.keyring.current();
        if keys.get(row.key_id).is_err() {
            keys = self.keyring.reload(&keys).await.map_err(storage)?;
        }
        let Ok(key) = keys.get(row.key_id) else {
            // Its key was destroyed by a rotation: the code can no longer be checked.
            return Err(CodeError::Expired);
        };
        let given = code.trim();
        let well_formed = given.len() == CODE_DIGITS && given.bytes().all(|b| b.is_ascii_digit());
        if well_formed && equal(&row.code_mac, &code_mac(key, application_id, name, given)) {
            if self
                .rows
                .use_code(application_id, name, row.attempts)
                .await
                .map_err(storage)?
            {
                return Ok(());
            }
            // A concurrent check changed it first (used or counted a wrong try).
            return Err(CodeError::NoCode);
        }
        match self
            .rows
            .wrong_try(application_id, name, row.attempts, self.rules.max_attempts)
            .await
            .map_err(storage)?
        {
            Some(n) if n >= self.rules.max_attempts => Err(CodeError::AttemptsExceeded),
            Some(n) => Err(CodeError::Wrong {
                attempts_left: self.rules.max_attempts - n,
            }),
            None => Err(CodeError::Wrong { attempts_left: 0 }),
        }
    }
}

impl OneTimeCodes for CodeService {
    fn send<'a>(
        &'a self,
        channel: &'a str,
        application_id: &'a str,
        purpose: CodePurpose,
        phone: &'a str,
    ) -> BoxFuture<'a, Result<SentCode, CodeError>> {
        Box::pin(self.send_inner(channel, application_id, purpose, phone))
    }

    fn check<'a>(
        &'a self,
        application_id: &'a str,
        purpose: CodePurpose,
        code: &'a str,
    ) -> BoxFuture<'a, Result<(), CodeError>> {
        Box::pin(self.check_inner(application_id, purpose, code))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_carries_the_code_and_nothing_else_personal() {
        let t = sms_text("012345", 300, CodePurpose::ConfirmPhone);
        assert!(t.contains("012345") && t.contains("5 分钟"));
        assert!(equal(b"abc", b"abc") && !equal(b"abc", b"abd") && !equal(b"ab", b"abc"));
    }
}
