//! Slack-shaped ids (`T…`, `U…`, `A…`, `Ev…`): generation and shape checks.
//!
//! An id is a kind prefix followed by upper-case alphanumerics. Platforms may bring their own
//! ids (syncing an existing workspace), so shape checks accept any length from 2 to 30 after
//! the prefix; generated ids use 10 characters, like Slack's.

use rand::Rng;

/// The kinds of object that carry a Slack-shaped id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Enterprise,
    Team,
    User,
    Bot,
    App,
    /// A public channel (`C`), private channel (`G`) or DM (`D`); any of the three prefixes.
    Conversation,
    Event,
    Installation,
    AppToken,
    Delivery,
    /// A bulk replay job.
    Redelivery,
}

impl IdKind {
    /// The prefix generated ids of this kind start with.
    pub fn prefix(self) -> &'static str {
        match self {
            IdKind::Enterprise => "E",
            IdKind::Team => "T",
            IdKind::User => "U",
            IdKind::Bot => "B",
            IdKind::App => "A",
            IdKind::Conversation => "C",
            IdKind::Event => "Ev",
            IdKind::Installation => "I",
            IdKind::AppToken => "XT",
            IdKind::Delivery => "DL",
            IdKind::Redelivery => "RD",
        }
    }

    fn accepted_prefixes(self) -> &'static [&'static str] {
        match self {
            IdKind::Conversation => &["C", "G", "D"],
            // Slack's user ids in Enterprise Grid start with W.
            IdKind::User => &["U", "W"],
            _ => std::slice::from_ref(match self {
                IdKind::Enterprise => &"E",
                IdKind::Team => &"T",
                IdKind::Bot => &"B",
                IdKind::App => &"A",
                IdKind::Event => &"Ev",
                IdKind::Installation => &"I",
                IdKind::AppToken => &"XT",
                IdKind::Delivery => &"DL",
                IdKind::Redelivery => &"RD",
                IdKind::Conversation | IdKind::User => unreachable!(),
            }),
        }
    }

    /// A human name for error messages ("team id").
    pub fn noun(self) -> &'static str {
        match self {
            IdKind::Enterprise => "enterprise id",
            IdKind::Team => "team id",
            IdKind::User => "user id",
            IdKind::Bot => "bot id",
            IdKind::App => "app id",
            IdKind::Conversation => "conversation id",
            IdKind::Event => "event id",
            IdKind::Installation => "installation id",
            IdKind::AppToken => "token id",
            IdKind::Delivery => "delivery id",
            IdKind::Redelivery => "redelivery id",
        }
    }
}

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// A fresh random id of this kind: prefix + `len` upper-case alphanumerics.
pub fn generate_with_len(kind: IdKind, len: usize) -> String {
    let mut rng = rand::rng();
    let mut s = String::with_capacity(kind.prefix().len() + len);
    s.push_str(kind.prefix());
    for _ in 0..len {
        s.push(ALPHABET[rng.random_range(0..ALPHABET.len())] as char);
    }
    s
}

/// A fresh random id of this kind with Slack's usual length (10 after the prefix;
/// `Ev` ids get 11 so they sit in the middle of Slack's observed 8–12 range).
pub fn generate(kind: IdKind) -> String {
    match kind {
        IdKind::Event => generate_with_len(kind, 11),
        _ => generate_with_len(kind, 10),
    }
}

/// Digits of sequential ids, in byte order, so that string order is counting order.
const SORTED_DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// An id of this kind that follows the previous one this process made: a per-kind counter
/// from a random start, written in base 36 at the usual length.
///
/// For the ids made on the hot path (events, deliveries): consecutive ids land next to each
/// other in the database's indexes, so a batch of inserts dirties a few pages at the end of
/// each index instead of one random page per row (random ids made every commit rewrite
/// thousands of index pages once the tables outgrow the page cache). Distinct processes
/// (restarts, nodes) start at independent random points of a 36^10 or 36^11 space, so
/// their ranges overlap with negligible probability; the store still refuses a duplicate.
pub fn sequential(kind: IdKind) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static COUNTERS: [OnceLock<AtomicU64>; 2] = [OnceLock::new(), OnceLock::new()];
    let (slot, len) = match kind {
        IdKind::Event => (0, 11u32),
        IdKind::Delivery => (1, 10),
        _ => return generate(kind),
    };
    let space = 36u64.pow(len);
    let counter =
        COUNTERS[slot].get_or_init(|| AtomicU64::new(rand::rng().random_range(0..space / 2)));
    let mut n = counter.fetch_add(1, Ordering::Relaxed) % space;
    let prefix = kind.prefix();
    let mut digits = [0u8; 11];
    for d in digits[..len as usize].iter_mut().rev() {
        *d = SORTED_DIGITS[(n % 36) as usize];
        n /= 36;
    }
    let mut s = String::with_capacity(prefix.len() + len as usize);
    s.push_str(prefix);
    s.extend(digits[..len as usize].iter().map(|&b| b as char));
    s
}

/// Whether `id` has the shape of an id of this kind.
pub fn is_valid(kind: IdKind, id: &str) -> bool {
    kind.accepted_prefixes().iter().any(|p| {
        id.strip_prefix(p).is_some_and(|rest| {
            (2..=30).contains(&rest.len())
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        })
    })
}

/// Checks the shape, with a message fit for an API error.
pub fn check(kind: IdKind, id: &str) -> Result<(), String> {
    if is_valid(kind, id) {
        Ok(())
    } else {
        Err(format!(
            "{:?} is not a valid {}: expected {} followed by 2 to 30 upper-case letters or digits",
            id,
            kind.noun(),
            kind.accepted_prefixes().join(" or ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_ids_have_the_usual_shape_and_sort_in_the_order_made() {
        let made: Vec<String> = (0..1000).map(|_| sequential(IdKind::Event)).collect();
        assert!(made
            .iter()
            .all(|id| is_valid(IdKind::Event, id) && id.len() == 13));
        assert!(made.windows(2).all(|w| w[0] < w[1]), "{made:?}");
        let d = sequential(IdKind::Delivery);
        assert!(is_valid(IdKind::Delivery, &d) && d.len() == 12, "{d}");
        assert!(sequential(IdKind::Delivery) > d);
        assert!(is_valid(IdKind::Team, &sequential(IdKind::Team)));
    }

    #[test]
    fn generated_ids_have_the_shape_they_are_checked_against() {
        for kind in [
            IdKind::Enterprise,
            IdKind::Team,
            IdKind::User,
            IdKind::Bot,
            IdKind::App,
            IdKind::Conversation,
            IdKind::Event,
            IdKind::Installation,
            IdKind::AppToken,
            IdKind::Delivery,
        ] {
            let id = generate(kind);
            assert!(is_valid(kind, &id), "{id}");
        }
    }

    #[test]
    fn event_ids_are_ev_and_eleven_upper_alphanumerics() {
        let id = generate(IdKind::Event);
        assert_eq!(id.len(), 13);
        assert!(id.starts_with("Ev"));
    }

    #[test]
    fn ids_of_the_wrong_shape_are_refused() {
        for (kind, id) in [
            (IdKind::Team, "t123"),
            (IdKind::Team, "U123"),
            (IdKind::Team, "T"),
            (IdKind::Team, "T1"),
            (IdKind::Team, "T12-3"),
            (IdKind::User, "Uabc"),
            (IdKind::Conversation, "X123"),
            (IdKind::App, &format!("A{}", "1".repeat(31))),
        ] {
            assert!(!is_valid(kind, id), "{id} accepted as {kind:?}");
        }
    }

    #[test]
    fn conversations_accept_channel_group_and_dm_prefixes() {
        for id in ["C0123", "G0123", "D0123"] {
            assert!(is_valid(IdKind::Conversation, id));
        }
        assert!(is_valid(IdKind::User, "W0123"));
    }

    #[test]
    fn check_names_the_kind_in_its_message() {
        let err = check(IdKind::Team, "nope").unwrap_err();
        assert!(err.contains("team id"), "{err}");
    }
}
