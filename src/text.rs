//! Text written on every request, without the formatting machinery: `format!` of an address
//! costs more than the rest of an access line.

use std::{fmt::Write as _, net::IpAddr};

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

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use proptest::prelude::*;

    use super::push_ip;

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
