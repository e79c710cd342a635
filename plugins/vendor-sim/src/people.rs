//! The simulator's fixed world: people, phones, cards, corporate accounts and organisations.
//! Every identity here is fictitious; README.md lists them with the outcome each produces.

/// How a face session of this person ends when the page is completed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FaceBehaviour {
    /// Liveness passes with this similarity score (0-100).
    Pass(f64),
    /// Liveness fails.
    LivenessFail,
}

/// A person known to the carrier, the banks and the face vendor.
#[derive(Debug, Clone, Copy)]
pub struct Person {
    /// Legal name.
    pub name: &'static str,
    /// Resident ID number (valid GB 11643 checksum).
    pub id_number: &'static str,
    /// Mobile number registered to them.
    pub phone: &'static str,
    /// False when the phone is not registered under their real name.
    pub phone_real_name: bool,
    /// Face vendor outcome.
    pub face: FaceBehaviour,
}

/// People; a phone not listed here has no carrier record.
pub const PEOPLE: &[Person] = &[
    Person {
        name: "张三",
        id_number: "11010519491231002X",
        phone: "13800138000",
        phone_real_name: true,
        face: FaceBehaviour::Pass(96.5),
    },
    Person {
        name: "李四",
        id_number: "110105198001010016",
        phone: "13800138001",
        phone_real_name: false,
        face: FaceBehaviour::Pass(91.0),
    },
    Person {
        name: "王五",
        id_number: "110105199002020026",
        phone: "13800138002",
        phone_real_name: true,
        face: FaceBehaviour::LivenessFail,
    },
    Person {
        name: "赵六",
        id_number: "110105200003030037",
        phone: "13800138003",
        phone_real_name: true,
        face: FaceBehaviour::Pass(42.0),
    },
];

/// Status of a bank card at its issuer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardStatus {
    /// Normal.
    Normal,
    /// Reported lost.
    Lost,
    /// Restricted (card-not-present payments disabled, frozen).
    Restricted,
}

/// A bank card with its holder and reserved phone.
#[derive(Debug, Clone, Copy)]
pub struct Card {
    /// Card number.
    pub number: &'static str,
    /// Holder's ID number.
    pub holder_id: &'static str,
    /// Holder's name.
    pub holder_name: &'static str,
    /// Phone reserved at the bank (receives the code).
    pub reserved_phone: &'static str,
    /// Card status.
    pub status: CardStatus,
}

/// Cards; a number not listed here is `card_invalid`.
pub const CARDS: &[Card] = &[
    Card {
        number: "6222020000000000018",
        holder_id: "11010519491231002X",
        holder_name: "张三",
        reserved_phone: "13800138000",
        status: CardStatus::Normal,
    },
    Card {
        number: "6222020000000000026",
        holder_id: "11010519491231002X",
        holder_name: "张三",
        reserved_phone: "13800138000",
        status: CardStatus::Lost,
    },
    Card {
        number: "6222020000000000034",
        holder_id: "11010519491231002X",
        holder_name: "张三",
        reserved_phone: "13800138000",
        status: CardStatus::Restricted,
    },
    // 李四's phone 13800138001 is not real-name registered to him; his card is valid and the
    // bank has another phone of his on file (the SHECA fallback: bank card, then that phone).
    Card {
        number: "6222020000000000042",
        holder_id: "110105198001010016",
        holder_name: "李四",
        reserved_phone: "13800138011",
        status: CardStatus::Normal,
    },
    Card {
        number: "6222020000000000059",
        holder_id: "110105199002020026",
        holder_name: "王五",
        reserved_phone: "13800138000",
        status: CardStatus::Normal,
    },
    Card {
        number: "6222020000000000067",
        holder_id: "11010519491231002X",
        holder_name: "张三",
        reserved_phone: "13800138010",
        status: CardStatus::Normal,
    },
];

/// Status of a corporate account at the payout provider's bank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountStatus {
    /// Open.
    Open,
    /// Closed.
    Closed,
    /// Frozen.
    Frozen,
}

/// A corporate bank account.
#[derive(Debug, Clone, Copy)]
pub struct Account {
    /// Account number.
    pub number: &'static str,
    /// Registered holder name.
    pub holder: &'static str,
    /// Status.
    pub status: AccountStatus,
}

/// Accounts; a number not listed here fails as `account_closed`.
pub const ACCOUNTS: &[Account] = &[
    Account {
        number: "110060000000001",
        holder: "示例科技有限公司",
        status: AccountStatus::Open,
    },
    Account {
        number: "110060000000002",
        holder: "示例科技有限公司",
        status: AccountStatus::Closed,
    },
    Account {
        number: "110060000000003",
        holder: "示例科技有限公司",
        status: AccountStatus::Frozen,
    },
];

/// Registration status of an organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrgStatus {
    /// Active.
    Active,
    /// Deregistered.
    Deregistered,
}

/// An organisation in the registry.
#[derive(Debug, Clone, Copy)]
pub struct Org {
    /// Registered name.
    pub name: &'static str,
    /// USCC.
    pub uscc: &'static str,
    /// Legal representative's name.
    pub legal_rep_name: &'static str,
    /// Legal representative's ID number.
    pub legal_rep_id: &'static str,
    /// Status.
    pub status: OrgStatus,
}

/// Organisations; a USCC not listed here is `no_record`.
pub const ORGS: &[Org] = &[
    Org {
        name: "示例科技有限公司",
        uscc: "91350100M000100Y43",
        legal_rep_name: "张三",
        legal_rep_id: "11010519491231002X",
        status: OrgStatus::Active,
    },
    Org {
        name: "注销贸易有限公司",
        uscc: "91110000600037341L",
        legal_rep_name: "张三",
        legal_rep_id: "11010519491231002X",
        status: OrgStatus::Deregistered,
    },
    // An early code whose check character fails GB 32100: valid because the registry says so.
    Org {
        name: "早期实业公司",
        uscc: "91110000100000000A",
        legal_rep_name: "张三",
        legal_rep_id: "11010519491231002X",
        status: OrgStatus::Active,
    },
];

/// The person with this phone.
pub fn person_by_phone(phone: &str) -> Option<&'static Person> {
    PEOPLE.iter().find(|p| p.phone == phone)
}

/// The person with this ID number.
pub fn person_by_id(id: &str) -> Option<&'static Person> {
    PEOPLE.iter().find(|p| p.id_number.eq_ignore_ascii_case(id))
}

/// The card with this number.
pub fn card(number: &str) -> Option<&'static Card> {
    CARDS.iter().find(|c| c.number == number)
}

/// The account with this number.
pub fn account(number: &str) -> Option<&'static Account> {
    ACCOUNTS.iter().find(|a| a.number == number)
}

/// The organisation with this USCC.
pub fn org(uscc: &str) -> Option<&'static Org> {
    ORGS.iter().find(|o| o.uscc.eq_ignore_ascii_case(uscc))
}
