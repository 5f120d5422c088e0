//! The process's open-files limit: raised at start from its soft value to its hard one,
//! then checked to hold `server.max_connections` client connections plus [`RESERVED`]
//! descriptors for everything else (deliveries' outbound sockets, the store, logs), so a
//! full house of clients can never starve deliveries of sockets.

use crate::boot::MAX_IN_FLIGHT_TOTAL;

/// Descriptors kept for what is not a client connection: one outbound socket for each
/// delivery attempt in flight (`boot::MAX_IN_FLIGHT_TOTAL`), and 256 for the store's
/// connections and files, the listener and the rest.
pub const RESERVED: u64 = MAX_IN_FLIGHT_TOTAL as u64 + 256;

/// Raises the soft limit to the hard one and checks it holds `max_connections` plus
/// [`RESERVED`]. Returns the limit now in force.
pub fn raise_and_check(max_connections: u32) -> Result<u64, String> {
    check(raise(), max_connections)
}

fn check(limit: u64, max_connections: u32) -> Result<u64, String> {
    let needed = u64::from(max_connections) + RESERVED;
    if limit < needed {
        return Err(format!(
            "the open-files limit is {limit}, but server.max_connections = {max_connections} \
             needs {needed} ({RESERVED} are kept for deliveries and the store): raise the \
             limit (ulimit -n, systemd's LimitNOFILE) or lower server.max_connections to at \
             most {}",
            limit.saturating_sub(RESERVED)
        ));
    }
    Ok(limit)
}

#[cfg(unix)]
fn raise() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return u64::MAX; // unknown: nothing to check against
    }
    if lim.rlim_cur < lim.rlim_max {
        let wanted = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        } else {
            tracing::warn!(
                soft = lim.rlim_cur,
                hard = lim.rlim_max,
                "cannot raise the open-files limit to its hard limit"
            );
        }
    }
    lim.rlim_cur
}

#[cfg(not(unix))]
fn raise() -> u64 {
    u64::MAX
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_must_fit_under_the_limit_with_room_for_deliveries() {
        assert_eq!(check(1_048_576, 1024), Ok(1_048_576));
        let e = check(4096, 1024).unwrap_err();
        assert!(e.contains("server.max_connections = 1024"), "{e}");
        assert!(check(RESERVED + 10, 10).is_ok());
        assert!(check(RESERVED + 10, 11).is_err());
    }

    #[test]
    fn raising_leaves_the_soft_limit_at_the_hard_one() {
        let now = raise();
        assert!(now > 0);
        assert_eq!(raise(), now, "raising twice changes nothing");
    }
}
