//! Text written on every request, without the formatting machinery: `format!` of an address
//! costs more than the rest of an access line.

use std::{fmt::Write as _, net::IpAddr};

use time::{OffsetDateTime, UtcOffset};

/// Appends `ip` as its `Display` form would write it (IPv4 by hand; IPv6, rare here, through
/// `Display`).
pub fn push_ip(s: &mut String, ip: IpAddr) {
    let IpAddr::V4(v4) = ip else {
        let _ = write!(s, "{ip}");
        return;
    };
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            s.push('.');
        }
        if octet >= 100 {
            s.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            s.push(char::from(b'0' + octet / 10 % 10));
        }
        s.push(char::from(b'0' + octet % 10));
    }
}

/// Appends `t` in UTC as RFC 3339 exactly as the `time` crate's `Rfc3339` format writes it:
/// `2026-12-02T06:33:22.1234Z`, the fraction to nanoseconds without trailing zeros and absent
/// when zero. Years outside 0..=9999 (which RFC 3339 cannot write) give the Unix epoch.
pub fn push_rfc3339_utc(s: &mut String, t: OffsetDateTime) {
    let Some((seconds, nanos)) = utc_seconds(t) else {
        s.push_str("1970-01-01T00:00:00Z");
        return;
    };
    let mut b = *b"0000-00-00T00:00:00.000000000Z";
    b[..19].copy_from_slice(&seconds);
    let mut end = 19;
    if nanos != 0 {
        put_digits(&mut b[20..29], nanos);
        end = 29;
        while b[end - 1] == b'0' {
            end -= 1;
        }
    }
    b[end] = b'Z';
    s.push_str(std::str::from_utf8(&b[..=end]).unwrap_or("1970-01-01T00:00:00Z"));
}

/// `t` in UTC as `YYYY-MM-DDTHH:MM:SS`, and its nanoseconds; `None` for a year outside
/// 0..=9999, which four digits cannot write.
pub fn utc_seconds(t: OffsetDateTime) -> Option<([u8; 19], u32)> {
    let t = t.to_offset(UtcOffset::UTC);
    let year = u32::try_from(t.year()).ok().filter(|y| *y <= 9999)?;
    let mut b = *b"0000-00-00T00:00:00";
    put_digits(&mut b[0..4], year);
    put_digits(&mut b[5..7], u32::from(u8::from(t.month())));
    put_digits(&mut b[8..10], u32::from(t.day()));
    put_digits(&mut b[11..13], u32::from(t.hour()));
    put_digits(&mut b[14..16], u32::from(t.minute()));
    put_digits(&mut b[17..19], u32::from(t.second()));
    Some((b, t.nanosecond()))
}

/// Fills `out` with the last `out.len()` decimal digits of `v`, zero-padded.
fn put_digits(out: &mut [u8], mut v: u32) {
    for d in out.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use proptest::prelude::*;
    use time::{OffsetDateTime, UtcOffset, format_description::well_known::Rfc3339, macros::datetime};

    use super::{push_ip, push_rfc3339_utc};

    fn rfc3339(t: OffsetDateTime) -> String {
        let mut s = String::from("x");
        push_rfc3339_utc(&mut s, t);
        s
    }

    #[test]
    fn rfc3339_as_the_time_crate_writes_it() {
        for (t, want) in [
            (datetime!(2026-12-02 06:33:22 UTC), "x2026-12-02T06:33:22Z"),
            (datetime!(2026-12-02 06:33:22.5 UTC), "x2026-12-02T06:33:22.5Z"),
            (
                datetime!(2026-12-02 06:33:22.000000001 UTC),
                "x2026-12-02T06:33:22.000000001Z",
            ),
            (
                datetime!(2026-12-02 06:33:22.12345 UTC),
                "x2026-12-02T06:33:22.12345Z",
            ),
            (datetime!(2026-12-02 08:33:22.1 +02:00), "x2026-12-02T06:33:22.1Z"),
            (datetime!(0009-01-02 03:04:05 UTC), "x0009-01-02T03:04:05Z"),
            (datetime!(-0001-12-31 00:00:00 UTC), "x1970-01-01T00:00:00Z"),
        ] {
            assert_eq!(rfc3339(t), want);
        }
    }

    proptest! {
        #[test]
        fn any_instant_as_the_time_crate(secs in 0i64..253_402_300_800, nanos in 0u32..1_000_000_000, nano_digits in 0u32..10, off in -86_399i32..86_400) {
            // Whole seconds and short fractions are the common cases: make them likely.
            let nanos = nanos - nanos % 10u32.pow(nano_digits);
            let t = OffsetDateTime::from_unix_timestamp(secs).unwrap()
                .replace_nanosecond(nanos).unwrap()
                .to_offset(UtcOffset::from_whole_seconds(off).unwrap());
            let utc = t.to_offset(UtcOffset::UTC);
            prop_assume!((0..=9999).contains(&utc.year()));
            prop_assert_eq!(rfc3339(t), format!("x{}", utc.format(&Rfc3339).unwrap()));
        }
    }

    fn pushed(ip: IpAddr) -> String {
        let mut s = String::from("x");
        push_ip(&mut s, ip);
        s
    }

    #[test]
    fn writes_what_display_writes() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "255.255.255.255",
            "192.168.100.9",
            "::1",
            "fe80::1:2",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(pushed(ip), format!("x{ip}"));
        }
    }

    proptest! {
        #[test]
        fn any_address_as_display(bits in any::<u32>(), v6 in any::<u128>()) {
            let v4 = IpAddr::from(bits.to_be_bytes());
            prop_assert_eq!(pushed(v4), format!("x{v4}"));
            let v6 = IpAddr::from(v6.to_be_bytes());
            prop_assert_eq!(pushed(v6), format!("x{v6}"));
        }
    }
}
