//! [`CaptchaService`]: picture captchas. Four random digits drawn as distorted glyphs (5x7 font
//! scaled, each digit jittered and sheared, a wave through the whole picture, noise pixels and
//! lines) into a grayscale PNG. Only a keyed hash of the answer is stored (HMAC under a key that
//! lives in this process only, bound to the captcha id); a captcha is one use (deleted when
//! redeemed, whatever the answer), bound to the subject it guards, and expires quickly. A
//! restart voids open captchas (the key is gone): the applicant asks for a new one.

use futures_util::future::BoxFuture;
use rand::{Rng, RngCore};
use ring::hmac;

use super::png;
use crate::contact::{Captcha, CaptchaError, Captchas};
use crate::storage::{unix_now, NotifyRows};

/// Picture width in pixels.
pub const WIDTH: u32 = 140;
/// Picture height in pixels.
pub const HEIGHT: u32 = 50;
/// Digits per captcha.
pub const DIGITS: usize = 4;

/// 5x7 digit glyphs, one row per byte, bit 4 = leftmost column.
const GLYPHS: [[u8; 7]; 10] = [
    [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
    [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
    [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
    [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
    [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
    [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
    [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
    [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
    [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
    [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
];

/// Scale of a glyph cell in pixels.
const SCALE: i32 = 4;

/// Draws `digits` (each 0-9) into a grayscale picture, WIDTH x HEIGHT, row-major.
pub fn render(digits: &[u8], rng: &mut impl Rng) -> Vec<u8> {
    let (w, h) = (WIDTH as i32, HEIGHT as i32);
    let mut img: Vec<u8> = (0..w * h).map(|_| rng.gen_range(215..=250)).collect();
    let put = |img: &mut Vec<u8>, x: i32, y: i32, v: u8| {
        if (0..w).contains(&x) && (0..h).contains(&y) {
            img[(y * w + x) as usize] = v;
        }
    };
    for (i, &d) in digits.iter().enumerate() {
        let glyph = GLYPHS[usize::from(d % 10)];
        let x0 = 12 + i as i32 * 31 + rng.gen_range(-3..=3);
        let y0 = 11 + rng.gen_range(-5..=5);
        let shear: f32 = rng.gen_range(-0.35..0.35);
        let ink: u8 = rng.gen_range(20..=90);
        for (gy, row) in glyph.iter().enumerate() {
            for gx in 0..5 {
                if row & (0x10 >> gx) == 0 {
                    continue;
                }
                for dy in 0..SCALE {
                    for dx in 0..SCALE {
                        let py = gy as i32 * SCALE + dy;
                        let px = gx * SCALE + dx + (shear * (py - 14) as f32) as i32;
                        put(&mut img, x0 + px, y0 + py, ink);
                    }
                }
            }
        }
    }
    // Lines across the digits.
    for _ in 0..3 {
        let (mut x, mut y) = (0f32, rng.gen_range(5.0..(h - 5) as f32));
        let slope: f32 = rng.gen_range(-0.3..0.3);
        let shade: u8 = rng.gen_range(60..=140);
        while x < w as f32 {
            put(&mut img, x as i32, y as i32, shade);
            x += 1.0;
            y += slope;
        }
    }
    // A wave: each column shifted up or down.
    let phase: f32 = rng.gen_range(0.0..std::f32::consts::TAU);
    let mut waved = vec![235u8; img.len()];
    for x in 0..w {
        let shift = (2.5 * ((x as f32) / 9.0 + phase).sin()).round() as i32;
        for y in 0..h {
            let sy = (y - shift).clamp(0, h - 1);
            waved[(y * w + x) as usize] = img[(sy * w + x) as usize];
        }
    }
    // Salt and pepper.
    for p in waved.iter_mut() {
        if rng.gen_ratio(1, 14) {
            *p = rng.gen_range(0..=255);
        }
    }
    waved
}

/// Captchas over the `captchas` table.
pub struct CaptchaService {
    rows: NotifyRows,
    key: hmac::Key,
    ttl_secs: i64,
}

impl std::fmt::Debug for CaptchaService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptchaService")
            .field("ttl_secs", &self.ttl_secs)
            .finish_non_exhaustive()
    }
}

fn storage(e: impl std::fmt::Display) -> CaptchaError {
    CaptchaError::Storage(e.to_string())
}

impl CaptchaService {
    /// Captchas living `ttl_secs`, keyed by a fresh in-memory key.
    pub fn new(rows: NotifyRows, ttl_secs: u32) -> Self {
        let mut raw = zeroize::Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(raw.as_mut_slice());
        Self {
            rows,
            key: hmac::Key::new(hmac::HMAC_SHA256, raw.as_slice()),
            ttl_secs: i64::from(ttl_secs),
        }
    }

    fn answer_mac(&self, id: &str, answer: &str) -> Vec<u8> {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(id.as_bytes());
        ctx.update(&[0]);
        ctx.update(answer.as_bytes());
        ctx.sign().as_ref().to_vec()
    }

    /// Tests only: a captcha showing `digits` (each 0-9; [`Captchas::issue`] draws them at
    /// random), so a test can redeem the right answer without reading the picture.
    #[doc(hidden)]
    pub async fn issue_digits(
        &self,
        subject: &str,
        digits: [u8; DIGITS],
    ) -> Result<Captcha, CaptchaError> {
        self.issue_inner(subject, digits).await
    }

    async fn issue_inner(
        &self,
        subject: &str,
        digits: [u8; DIGITS],
    ) -> Result<Captcha, CaptchaError> {
        let digits = digits.map(|d| d % 10);
        let answer: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
        let pixels = render(&digits, &mut rand::thread_rng());
        let png = png::encode_gray(WIDTH, HEIGHT, &pixels)
            .ok_or_else(|| storage("the captcha picture could not be encoded"))?;
        let mut idb = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut idb);
        let id = format!("cap_{}", hex::encode(idb));
        let now = unix_now();
        let expires_at = now + self.ttl_secs;
        self.rows
            .put_captcha(
                &id,
                subject,
                &self.answer_mac(&id, &answer),
                expires_at,
                now,
            )
            .await
            .map_err(storage)?;
        Ok(Captcha {
            id,
            png,
            expires_at,
        })
    }

    async fn redeem_inner(
        &self,
        subject: &str,
        id: &str,
        answer: &str,
    ) -> Result<(), CaptchaError> {
        let Some((owner, mac, expires_at)) = self.rows.take_captcha(id).await.map_err(storage)?
        else {
            return Err(CaptchaError::Unknown);
        };
        if owner != subject || unix_now() > expires_at {
            return Err(CaptchaError::Unknown);
        }
        let answer = answer.trim();
        if super::codes::equal(&mac, &self.answer_mac(id, answer)) {
            Ok(())
        } else {
            Err(CaptchaError::Wrong)
        }
    }
}

impl Captchas for CaptchaService {
    fn issue<'a>(&'a self, subject: &'a str) -> BoxFuture<'a, Result<Captcha, CaptchaError>> {
        let mut digits = [0u8; DIGITS];
        for d in digits.iter_mut() {
            *d = rand::rngs::OsRng.gen_range(0..10);
        }
        Box::pin(self.issue_inner(subject, digits))
    }

    fn redeem<'a>(
        &'a self,
        subject: &'a str,
        id: &'a str,
        answer: &'a str,
    ) -> BoxFuture<'a, Result<(), CaptchaError>> {
        Box::pin(self.redeem_inner(subject, id, answer))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn renders_every_digit_with_ink_and_noise() {
        let mut rng = rand::thread_rng();
        let img = render(&[0, 1, 8, 9], &mut rng);
        assert_eq!(img.len(), (WIDTH * HEIGHT) as usize);
        let dark = img.iter().filter(|&&p| p < 100).count();
        // Four glyphs of at least 11 cells of 16 pixels each, plus noise.
        assert!(dark > 4 * 11 * 16 / 2, "{dark} dark pixels");
        let other = render(&[0, 1, 8, 9], &mut rng);
        assert_ne!(img, other, "two renderings of the same digits differ");
    }
}
