//! Validation of Chinese identifiers (GB 11643 resident ID, GB 32100 USCC, mainland mobile,
//! bank card, HK/Macau/Taiwan permits) and masking helpers for logs and displays.
//!
//! Pure functions, no dependencies, no clock: anything that depends on "today" takes it as a
//! parameter. Every parsed type masks itself in `Debug` so a stray `{:?}` never leaks a number.

#![cfg_attr(test, allow(clippy::unwrap_used))] // tests may unwrap; library code never does

pub mod bank_card;
pub mod date;
pub mod mask;
pub mod mobile;
pub mod permit;
pub mod resident_id;
pub mod timestamp;
pub mod uscc;

pub use bank_card::{BankCard, BankCardError};
pub use date::{Date, DateError};
pub use mask::{mask_card, mask_id_number, mask_middle, mask_phone};
pub use mobile::{Mobile, MobileError};
pub use permit::{HomeReturnPermit, PermitError, TaiwanPermit};
pub use resident_id::{ResidentId, ResidentIdError, ResidentIdKind};
pub use timestamp::Timestamp;
pub use uscc::{Uscc, UsccChecksum, UsccError};
