//! The `AuSuccess` / `AuFail` lines on stdout that log pipelines of the Go proxy already parse:
//!
//! `[2021-11-25T01:05:17+0000] AuSuccess src:[<ip> / <xff>] URI:<uri> inbound:[<user> / <g1|g2> / <extras>]`
//! `[2021-11-25T01:05:24+0000] AuFail src:[<ip> / <xff>] URI:<uri>`
//!
//! A request made with `kubectl --as` is decided as the user it acts as, which `inbound` names;
//! the person who logged in follows as `impersonator:[<user> / <g1|g2>]` (JSON: `impersonator`
//! and `impersonator_groups`), so the access log alone says who did it.
//!
//! Differences from the Go proxy, on purpose: IPv6 addresses are printed whole, and control
//! characters from the request or the token are escaped so one request can never forge a line.

use std::fmt::Write as _;

use time::OffsetDateTime;

use crate::{authn::User, text::utc_seconds};

/// Where access lines go: stdout through [`super::line_writer::BufferedWriter`] in production,
/// a buffer in tests. `line` gets one whole line, newline included.
pub trait Sink: Send + Sync {
    fn line(&self, line: &str);
    /// Returns once every line given so far has reached the output.
    fn flush(&self) {}
}

/// What the log needs to know about the client side of a request.
pub struct Client<'a> {
    /// The peer's address as its `Display` writes it.
    pub ip: &'a str,
    pub forwarded_for: Option<&'a str>,
    pub uri: &'a str,
}

/// `--log-format`: the Go proxy's text lines, or one JSON object per line with the same facts
/// plus the request ID, the cluster and the status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// What the lines add to the Go proxy's fields: the JSON form's request ID, cluster and status
/// code, and in both forms the person behind a `kubectl --as`.
pub struct Extra<'a> {
    pub request_id: &'a str,
    pub cluster: Option<&'a str>,
    pub code: u16,
    /// The authenticated person when the request acts as another user.
    pub impersonator: Option<&'a User>,
}

/// Appends an `AuSuccess` line to `out`.
pub fn write_success(
    out: &mut String,
    format: Format,
    now: OffsetDateTime,
    client: &Client<'_>,
    user: &User,
    extra: &Extra<'_>,
) {
    match format {
        Format::Text => success_text(out, now, client, user, extra.impersonator),
        Format::Json => out.push_str(&json_line(now, "AuSuccess", client, Some(user), extra)),
    }
}

/// Appends an `AuFail` line to `out`.
pub fn write_fail(
    out: &mut String,
    format: Format,
    now: OffsetDateTime,
    client: &Client<'_>,
    extra: &Extra<'_>,
) {
    match format {
        Format::Text => fail_text(out, now, client),
        Format::Json => out.push_str(&json_line(now, "AuFail", client, None, extra)),
    }
}

fn json_line(
    now: OffsetDateTime,
    event: &str,
    client: &Client<'_>,
    user: Option<&User>,
    extra: &Extra<'_>,
) -> String {
    let mut v = serde_json::json!({
        "time": now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        "event": event,
        "src": client.ip,
        "forwarded_for": client.forwarded_for.unwrap_or(""),
        "uri": client.uri,
        "request_id": extra.request_id,
        "cluster": extra.cluster.unwrap_or(""),
        "code": extra.code,
    });
    if let Some(u) = user {
        v["user"] = u.name.clone().into();
        v["groups"] = u.token_groups().collect::<Vec<_>>().into();
        v["extra"] = serde_json::to_value(&u.extra).unwrap_or_default();
    }
    if let (Some(_), Some(person)) = (user, extra.impersonator) {
        v["impersonator"] = person.name.clone().into();
        v["impersonator_groups"] = person.token_groups().collect::<Vec<_>>().into();
    }
    let mut line = v.to_string();
    // serde_json escapes C0 only: DEL, C1 and the invisible characters are escaped here as
    // `\uXXXX` (surrogate pairs above U+FFFF), so a JSON line shows what the text line shows.
    if line.bytes().any(|b| b >= 0x7f) && line.chars().any(|c| c.is_control() || invisible(c)) {
        let mut escaped = String::with_capacity(line.len() + 16);
        for c in line.chars() {
            if c.is_control() || invisible(c) {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(escaped, "\\u{unit:04x}");
                }
            } else {
                escaped.push(c);
            }
        }
        line = escaped;
    }
    line.push('\n');
    line
}

fn success_text(
    s: &mut String,
    now: OffsetDateTime,
    client: &Client<'_>,
    user: &User,
    impersonator: Option<&User>,
) {
    prefix(s, now, "AuSuccess", client, true);
    s.push_str(" inbound:[");
    name_and_groups(s, user);
    s.push_str(" / ");
    for (k, vs) in &user.extra {
        escape_with(s, k, b"=");
        s.push('=');
        for (i, v) in vs.iter().enumerate() {
            if i > 0 {
                s.push('|');
            }
            escape_into(s, v);
        }
        s.push(' ');
    }
    s.push(']');
    if let Some(person) = impersonator {
        s.push_str(" impersonator:[");
        name_and_groups(s, person);
        s.push(']');
    }
    s.push('\n');
}

/// `<user> / <g1|g2>`, escaped (`system:authenticated` left out, as every user has it).
fn name_and_groups(s: &mut String, user: &User) {
    escape_into(s, &user.name);
    s.push_str(" / ");
    for (i, g) in user.token_groups().enumerate() {
        if i > 0 {
            s.push('|');
        }
        escape_into(s, g);
    }
}

fn fail_text(s: &mut String, now: OffsetDateTime, client: &Client<'_>) {
    prefix(s, now, "AuFail", client, false);
    s.push('\n');
}

fn prefix(s: &mut String, now: OffsetDateTime, word: &str, client: &Client<'_>, filter_xff: bool) {
    s.reserve(160 + client.uri.len());
    s.push('[');
    push_timestamp(s, now);
    s.push_str("] ");
    s.push_str(word);
    s.push_str(" src:[");
    s.push_str(client.ip);
    s.push_str(" / ");
    if let Some(xff) = client.forwarded_for {
        if filter_xff {
            // As the Go proxy: the peer itself is not repeated in the forwarded-for part.
            let kept = xff
                .split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty() && *e != client.ip);
            push_entries(s, kept);
        } else {
            push_entries(s, xff.split(',').map(str::trim));
        }
    }
    s.push_str("] URI:");
    escape_into(s, client.uri);
}

/// X-Forwarded-For entries joined with `, `, each escaped on its own.
fn push_entries<'a>(s: &mut String, entries: impl Iterator<Item = &'a str>) {
    for (i, e) in entries.enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        escape_into(s, e);
    }
}

/// `2021-11-25T01:05:17+0000` (Go's `2006-01-02T15:04:05-0700`), always in UTC, written digit by
/// digit: this runs for every request.
fn push_timestamp(s: &mut String, now: OffsetDateTime) {
    match utc_seconds(now) {
        Some((seconds, _)) => s.push_str(std::str::from_utf8(&seconds).unwrap_or("0000-00-00T00:00:00")),
        None => s.push_str("0000-00-00T00:00:00"),
    }
    s.push_str("+0000");
}

/// Escapes what could forge a line or shift its fields: control characters (C0, DEL, C1),
/// invisible format characters, the characters the line uses as structure (`[` and `]` around
/// each part, space in the ` / ` separators and between extras, `|` between groups) and the
/// backslash itself, so every escape is unambiguous: `\xNN` up to U+00FF, `\u{NNNN}` above.
fn escape_into(s: &mut String, v: &str) {
    escape_with(s, v, b"")
}

/// The bytes written as they are: printable ASCII but for the separators of the line. Written
/// as comparisons, not a table, so the check over a whole value compiles to a vector loop.
fn plain(b: u8) -> bool {
    (b > 0x20) & (b < 0x7f) & (b != b'[') & (b != b']') & (b != b'|') & (b != b'\\')
}

/// [`escape_into`], also escaping the ASCII bytes in `more` (`=` in extra keys).
fn escape_with(s: &mut String, v: &str, more: &[u8]) {
    // Plain printable ASCII needs no per-character look; anything else (non-ASCII included)
    // takes the slow path, where only the characters listed above change.
    let special = |b: u8| !plain(b) || more.contains(&b);
    if v.bytes().fold(true, |ok, b| ok & plain(b))
        && (more.is_empty() || !v.bytes().any(|b| more.contains(&b)))
    {
        s.push_str(v);
        return;
    }
    for c in v.chars() {
        let escape = if c.is_ascii() {
            special(c as u8)
        } else {
            c.is_control() || invisible(c)
        };
        if !escape {
            s.push(c);
        } else if (c as u32) <= 0xff {
            let _ = write!(s, "\\x{:02x}", c as u32);
        } else {
            let _ = write!(s, "\\u{{{:04x}}}", c as u32);
        }
    }
}

/// Characters that change how a line *looks* without being seen: format characters (soft
/// hyphen, zero-width and bidirectional controls such as U+202E, which reverses what follows in
/// a viewer, prepended marks, tags) and the line and paragraph separators U+2028 and U+2029.
fn invisible(c: char) -> bool {
    matches!(c,
        '\u{ad}' | '\u{600}'..='\u{605}' | '\u{61c}' | '\u{6dd}' | '\u{70f}' | '\u{180e}'
        | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{feff}'
        | '\u{fff9}'..='\u{fffb}' | '\u{110bd}' | '\u{110cd}' | '\u{13430}'..='\u{1343f}'
        | '\u{1bca0}'..='\u{1bca3}' | '\u{1d173}'..='\u{1d17a}' | '\u{e0001}' | '\u{e0020}'..='\u{e007f}')
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    // The lines as whole strings, for assertions.
    fn success(
        format: Format,
        now: OffsetDateTime,
        client: &Client<'_>,
        user: &User,
        extra: &Extra<'_>,
    ) -> String {
        let mut s = String::new();
        write_success(&mut s, format, now, client, user, extra);
        s
    }

    fn fail(format: Format, now: OffsetDateTime, client: &Client<'_>, extra: &Extra<'_>) -> String {
        let mut s = String::new();
        write_fail(&mut s, format, now, client, extra);
        s
    }

    fn success_line(now: OffsetDateTime, client: &Client<'_>, user: &User) -> String {
        let mut s = String::new();
        success_text(&mut s, now, client, user, None);
        s
    }

    fn fail_line(now: OffsetDateTime, client: &Client<'_>) -> String {
        let mut s = String::new();
        fail_text(&mut s, now, client);
        s
    }

    fn user() -> User {
        User {
            name: "mlbadmin1".into(),
            uid: "1".into(),
            groups: vec!["k8s:devops".into(), "ops".into(), "system:authenticated".into()],
            extra: Default::default(),
        }
    }

    #[test]
    fn success_line_matches_the_go_format() {
        let c = Client {
            ip: "10.42.0.5",
            forwarded_for: Some("10.42.1.3, 10.42.0.5"),
            uri: "/k8s/api/v1/namespaces/openunison/pods?limit=500",
        };
        assert_eq!(
            success_line(datetime!(2021-11-25 01:05:17 UTC), &c, &user()),
            "[2021-11-25T01:05:17+0000] AuSuccess src:[10.42.0.5 / 10.42.1.3] URI:/k8s/api/v1/namespaces/openunison/pods?limit=500 inbound:[mlbadmin1 / k8s:devops|ops / ]\n"
        );
    }

    #[test]
    fn timestamps_are_utc_with_zero_padding() {
        let c = Client {
            ip: "10.0.0.1",
            forwarded_for: None,
            uri: "/k/x",
        };
        let at = |t: OffsetDateTime| fail_line(t, &c)[1..25].to_string();
        assert_eq!(
            at(datetime!(2021-11-25 01:05:17 +02:00)),
            "2021-11-24T23:05:17+0000"
        );
        assert_eq!(at(datetime!(0999-01-02 03:04:05 UTC)), "0999-01-02T03:04:05+0000");
        assert_eq!(
            at(datetime!(2024-12-31 23:59:59.999 UTC)),
            "2024-12-31T23:59:59+0000"
        );
    }

    #[test]
    fn fail_line_keeps_raw_xff_and_full_ipv6() {
        let c = Client {
            ip: "2001:db8::1",
            forwarded_for: Some("a, b"),
            uri: "/k8s/api/v1/nodes",
        };
        assert_eq!(
            fail_line(datetime!(2021-11-25 01:05:24 UTC), &c),
            "[2021-11-25T01:05:24+0000] AuFail src:[2001:db8::1 / a, b] URI:/k8s/api/v1/nodes\n"
        );
        let no_xff = Client {
            ip: "::1",
            forwarded_for: None,
            uri: "/x",
        };
        assert_eq!(
            fail_line(datetime!(2021-11-25 01:05:24 UTC), &no_xff),
            "[2021-11-25T01:05:24+0000] AuFail src:[::1 / ] URI:/x\n"
        );
    }

    #[test]
    fn json_lines_carry_the_same_facts() {
        let c = Client {
            ip: "::1",
            forwarded_for: None,
            uri: "/k/api/v1/pods",
        };
        let extra = Extra {
            request_id: "rid-1",
            cluster: Some("k"),
            code: 200,
            impersonator: None,
        };
        let line = success(
            Format::Json,
            datetime!(2021-11-25 01:05:17 UTC),
            &c,
            &user(),
            &extra,
        );
        assert!(line.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["event"], "AuSuccess");
        assert_eq!(v["time"], "2021-11-25T01:05:17Z");
        assert_eq!(v["src"], "::1");
        assert_eq!(v["user"], "mlbadmin1");
        assert_eq!(v["groups"], serde_json::json!(["k8s:devops", "ops"]));
        assert_eq!(v["request_id"], "rid-1");
        let line = fail(
            Format::Json,
            datetime!(2021-11-25 01:05:17 UTC),
            &c,
            &Extra {
                code: 401,
                cluster: None,
                ..extra
            },
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["event"], "AuFail");
        assert_eq!(v["code"], 401);
        assert!(v.get("user").is_none());
    }

    #[test]
    fn a_kubectl_as_line_names_the_person_too() {
        let c = Client {
            ip: "10.0.0.9",
            forwarded_for: None,
            uri: "/k/api/v1/pods",
        };
        let mut target = user();
        target.name = "bob".into();
        target.groups = vec!["system:authenticated".into()];
        let mut person = user();
        person.name = "mallory]x".into();
        let extra = Extra {
            request_id: "rid-1",
            cluster: Some("k"),
            code: 200,
            impersonator: Some(&person),
        };
        let now = datetime!(2021-11-25 01:05:17 UTC);
        let text = success(Format::Text, now, &c, &target, &extra);
        assert!(
            text.ends_with("inbound:[bob /  / ] impersonator:[mallory\\x5dx / k8s:devops|ops]\n"),
            "{text}"
        );
        let v: serde_json::Value =
            serde_json::from_str(&success(Format::Json, now, &c, &target, &extra)).unwrap();
        assert_eq!(v["user"], "bob");
        assert_eq!(v["impersonator"], "mallory]x");
        assert_eq!(v["impersonator_groups"], serde_json::json!(["k8s:devops", "ops"]));
        // Without `--as`, neither form has the field.
        let plain = Extra {
            impersonator: None,
            ..extra
        };
        assert!(!success(Format::Text, now, &c, &target, &plain).contains("impersonator"));
        let v: serde_json::Value =
            serde_json::from_str(&success(Format::Json, now, &c, &target, &plain)).unwrap();
        assert!(v.get("impersonator").is_none());
    }

    #[test]
    fn json_lines_escape_what_a_terminal_would_act_on_or_hide() {
        let mut u = user();
        u.name = "ann\u{9b}31m\u{7f}\u{202e}gpj.exe\u{e0041}é".into();
        let c = Client {
            ip: "::1",
            forwarded_for: Some("10.0.0.1\u{2028}"),
            uri: "/k/api/v1/pods",
        };
        let extra = Extra {
            request_id: "rid-1",
            cluster: Some("k"),
            code: 200,
            impersonator: None,
        };
        let line = success(Format::Json, datetime!(2021-11-25 01:05:17 UTC), &c, &u, &extra);
        let body = line.strip_suffix('\n').unwrap();
        assert!(
            !body.chars().any(|ch| ch.is_control() || invisible(ch)),
            "{line:?}"
        );
        assert!(
            body.contains("\\u009b") && body.contains("\\udb40\\udc41"),
            "{line}"
        );
        assert!(body.contains('é'), "visible non-ASCII stays as it is: {line}");
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["user"], u.name.as_str(), "the escapes decode to the same value");
        assert_eq!(v["forwarded_for"], "10.0.0.1\u{2028}");
    }

    #[test]
    fn extras_and_injection() {
        let mut u = user();
        u.name = "eve\n[2021] AuSuccess\u{85}é\u{a0}".into();
        u.extra.insert("scopes".into(), vec!["a".into(), "b".into()]);
        let c = Client {
            ip: "127.0.0.1",
            forwarded_for: None,
            uri: "/k/x",
        };
        let line = success_line(datetime!(2021-11-25 01:05:17 UTC), &c, &u);
        assert_eq!(line.matches('\n').count(), 1, "{line}");
        assert!(
            line.ends_with(
                "inbound:[eve\\x0a\\x5b2021\\x5d\\x20AuSuccess\\x85é\u{a0} / k8s:devops|ops / scopes=a|b ]\n"
            ),
            "{line}"
        );
    }

    /// Values that try to shift the line's fields (close a bracket, add a separator, a group or
    /// an extra) come out escaped, so a parser splitting on the structure reads the real fields.
    #[test]
    fn structure_characters_are_escaped() {
        let mut u = user();
        u.name = "eve / admin] AuSuccess".into();
        u.groups = vec![
            "a|system:masters".into(),
            "b]".into(),
            "system:authenticated".into(),
        ];
        u.extra = [("k=v x".to_string(), vec!["1|2".to_string()])]
            .into_iter()
            .collect();
        let c = Client {
            ip: "10.0.0.1",
            forwarded_for: Some("1.2.3.4] URI:/forged, 5.6.7.8"),
            uri: "/k/x[1]",
        };
        let line = success_line(datetime!(2021-11-25 01:05:17 UTC), &c, &u);
        assert_eq!(
            line,
            "[2021-11-25T01:05:17+0000] AuSuccess src:[10.0.0.1 / 1.2.3.4\\x5d\\x20URI:/forged, 5.6.7.8] \
             URI:/k/x\\x5b1\\x5d inbound:[eve\\x20/\\x20admin\\x5d\\x20AuSuccess / \
             a\\x7csystem:masters|b\\x5d / k\\x3dv\\x20x=1\\x7c2 ]\n"
        );
        // Invisible characters that would reorder or split what a person reads.
        let mut u = user();
        u.name = "eve\u{202e}nimda\u{2028}x\u{200b}".into();
        let line = success_line(datetime!(2021-11-25 01:05:17 UTC), &c, &u);
        assert!(
            line.contains("inbound:[eve\\u{202e}nimda\\u{2028}x\\u{200b} / "),
            "{line}"
        );
        // A backslash is escaped too, so a name cannot spell an escape: `a\x5d` is not `a]`.
        let mut u = user();
        u.name = "a\\x5d".into();
        let line = success_line(datetime!(2021-11-25 01:05:17 UTC), &c, &u);
        assert!(line.contains("inbound:[a\\x5cx5d / "), "{line}");
        let mut u = user();
        u.name = "tag\u{e0041}".into();
        let line = success_line(datetime!(2021-11-25 01:05:17 UTC), &c, &u);
        assert!(line.contains("inbound:[tag\\u{e0041} / "), "{line}");
        // Ordinary values are untouched, accents and non-Latin scripts included.
        let mut u = user();
        u.name = "zoë-日本-€".into();
        let line = success_line(datetime!(2021-11-25 01:05:17 UTC), &c, &u);
        assert!(line.contains("inbound:[zoë-日本-€ / "), "{line}");
        let plain = success_line(datetime!(2021-11-25 01:05:17 UTC), &c, &user());
        assert!(
            plain.contains("inbound:[mlbadmin1 / k8s:devops|ops / ]"),
            "{plain}"
        );
    }
}
