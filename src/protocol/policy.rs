//! Who may upgrade and who they are: the origin allowlist, the client address behind trusted
//! proxies, and subprotocol choice. Pure functions of the request, unit-tested here.

use std::net::IpAddr;

/// One allowed origin: `https://app.example` (exact, scheme included), `app.example` (any
/// scheme), `*.example.com` or `https://*.example.com` (any subdomain, not the apex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPattern {
    scheme: Option<String>,
    /// Lower-cased host (with port, if the pattern named one); without the `*.` of a wildcard.
    host: String,
    wildcard: bool,
}

impl OriginPattern {
    pub fn parse(pattern: &str) -> Result<Self, String> {
        let pattern = pattern.trim().trim_end_matches('/').to_ascii_lowercase();
        let (scheme, host) = match pattern.split_once("://") {
            Some((s, h)) => (Some(s.to_string()), h.to_string()),
            None => (None, pattern.clone()),
        };
        let (wildcard, host) = match host.strip_prefix("*.") {
            Some(rest) => (true, rest.to_string()),
            None => (false, host),
        };
        if host.is_empty() || host.contains('*') || host.contains('/') {
            return Err(format!("invalid origin pattern {pattern:?}"));
        }
        Ok(Self { scheme, host, wildcard })
    }

    pub fn matches(&self, origin: &str) -> bool {
        let origin = origin.trim().to_ascii_lowercase();
        let Some((scheme, host)) = origin.split_once("://") else { return false };
        if self.scheme.as_deref().is_some_and(|s| s != scheme) {
            return false;
        }
        if self.wildcard {
            host.len() > self.host.len() + 1
                && host.ends_with(&self.host)
                && host.as_bytes()[host.len() - self.host.len() - 1] == b'.'
        } else {
            host == self.host
        }
    }
}

/// True when the request may upgrade: no allowlist, no `Origin` header (non-browser clients,
/// which could forge any origin anyway), or an origin matching one pattern.
pub fn origin_allowed(allowlist: Option<&[OriginPattern]>, origin: Option<&str>) -> bool {
    match (allowlist, origin) {
        (None, _) | (Some(_), None) => true,
        (Some(patterns), Some(origin)) => patterns.iter().any(|p| p.matches(origin)),
    }
}

/// Which proxies may tell us the client's address (`X-Forwarded-For` / `X-Real-IP`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TrustProxy {
    /// Use the TCP peer address; ignore forwarding headers.
    #[default]
    None,
    /// Trust every hop: the left-most `X-Forwarded-For` address is the client.
    All,
    /// Trust this many hops counting from our side (1 = the peer is a proxy).
    Hops(usize),
    /// Trust hops whose address is in this list (exact addresses or CIDR ranges).
    List(Vec<IpRange>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpRange {
    base: IpAddr,
    prefix: u8,
}

impl IpRange {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let base: IpAddr = addr.parse().map_err(|_| format!("invalid proxy address {s:?}"))?;
        let max = if base.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or(format!("invalid prefix in {s:?}"))?,
            None => max,
        };
        Ok(Self { base: canonical(base), prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let (a, b) = match (self.base, canonical(ip)) {
            (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(a) as u128, u32::from(b) as u128),
            (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b)),
            _ => return false,
        };
        let bits = if self.base.is_ipv4() { 32 } else { 128 };
        let shift = bits - u32::from(self.prefix);
        shift >= bits || (a >> shift) == (b >> shift)
    }
}

/// `::ffff:1.2.3.4` is reported as `1.2.3.4`.
pub fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// The client address: the TCP peer, or, walking forwarding headers from our side, the first
/// address not vouched for by a trusted proxy (the algorithm of Express's `trust proxy`).
pub fn client_address(
    peer: IpAddr,
    forwarded_for: Option<&str>,
    real_ip: Option<&str>,
    trust: &TrustProxy,
) -> IpAddr {
    let peer = canonical(peer);
    if *trust == TrustProxy::None {
        return peer;
    }
    // Hops from our side: the peer, then X-Forwarded-For right to left.
    let mut chain = vec![peer];
    match forwarded_for {
        Some(xff) => {
            for part in xff.rsplit(',') {
                match part.trim().parse::<IpAddr>() {
                    Ok(ip) => chain.push(canonical(ip)),
                    Err(_) => break, // a malformed entry ends what we can believe
                }
            }
        }
        None => {
            if let Some(ip) = real_ip.and_then(|v| v.trim().parse::<IpAddr>().ok()) {
                chain.push(canonical(ip));
            }
        }
    }
    let trusted = |ip: IpAddr, hop: usize| match trust {
        TrustProxy::None => false,
        TrustProxy::All => true,
        TrustProxy::Hops(n) => hop < *n,
        TrustProxy::List(ranges) => ranges.iter().any(|r| r.contains(ip)),
    };
    for (hop, ip) in chain.iter().enumerate() {
        if hop + 1 == chain.len() || !trusted(*ip, hop) {
            return *ip;
        }
    }
    peer
}

/// The client offered none of the required subprotocols (the upgrade is refused 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoSupportedProtocol;

/// Picks the first subprotocol the client offers that we support.
pub fn choose_protocol(
    supported: &[String],
    offered: Option<&str>,
    required: bool,
) -> Result<Option<String>, NoSupportedProtocol> {
    let chosen = offered
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find(|p| supported.iter().any(|s| s == p))
        .map(str::to_string);
    if chosen.is_none() && required {
        return Err(NoSupportedProtocol);
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pats(v: &[&str]) -> Vec<OriginPattern> {
        v.iter().map(|p| OriginPattern::parse(p).unwrap()).collect()
    }

    #[test]
    fn origins_exact_and_wildcard() {
        let p = pats(&["https://app.example", "*.example.com", "http://localhost:3000"]);
        let ok = |o| origin_allowed(Some(&p), Some(o));
        assert!(ok("https://app.example"));
        assert!(ok("HTTPS://APP.EXAMPLE"));
        assert!(!ok("http://app.example"), "scheme is part of an exact origin");
        assert!(!ok("https://evil-app.example"));
        assert!(ok("https://a.example.com"));
        assert!(ok("http://a.b.example.com"));
        assert!(!ok("https://example.com"), "wildcard does not include the apex");
        assert!(!ok("https://badexample.com"));
        assert!(ok("http://localhost:3000"));
        assert!(!ok("http://localhost:3001"));
        assert!(!ok("null"));
        assert!(origin_allowed(Some(&p), None), "non-browser clients send no Origin");
        assert!(origin_allowed(None, Some("https://anything")));
        assert!(OriginPattern::parse("https://*").is_err());
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn proxies_are_ignored_unless_trusted() {
        let peer = ip("10.0.0.1");
        assert_eq!(client_address(peer, Some("1.2.3.4"), None, &TrustProxy::None), peer);
        assert_eq!(client_address(peer, Some("6.6.6.6, 1.2.3.4"), None, &TrustProxy::All), ip("6.6.6.6"));
        assert_eq!(client_address(peer, Some("6.6.6.6, 1.2.3.4"), None, &TrustProxy::Hops(1)), ip("1.2.3.4"));
        assert_eq!(client_address(peer, Some("6.6.6.6, 1.2.3.4"), None, &TrustProxy::Hops(2)), ip("6.6.6.6"));
        assert_eq!(client_address(peer, None, Some("5.5.5.5"), &TrustProxy::Hops(1)), ip("5.5.5.5"));
        assert_eq!(client_address(peer, None, None, &TrustProxy::All), peer);
    }

    #[test]
    fn proxy_lists_stop_at_the_first_untrusted_hop() {
        let trust = TrustProxy::List(vec![IpRange::parse("10.0.0.0/8").unwrap(), IpRange::parse("192.168.1.5").unwrap()]);
        let peer = ip("10.0.0.1");
        // 6.6.6.6 is spoofed by the client; 1.2.3.4 is the client as our proxies saw it.
        assert_eq!(client_address(peer, Some("6.6.6.6, 1.2.3.4, 192.168.1.5"), None, &trust), ip("1.2.3.4"));
        assert_eq!(client_address(ip("8.8.8.8"), Some("1.2.3.4"), None, &trust), ip("8.8.8.8"), "untrusted peer");
        assert_eq!(client_address(ip("::ffff:10.1.1.1"), Some("1.2.3.4"), None, &trust), ip("1.2.3.4"));
        assert_eq!(client_address(peer, Some("garbage, 1.2.3.4"), None, &TrustProxy::All), ip("1.2.3.4"));
    }

    #[test]
    fn ip_ranges() {
        let r = IpRange::parse("192.168.0.0/16").unwrap();
        assert!(r.contains(ip("192.168.44.1")));
        assert!(!r.contains(ip("192.169.0.1")));
        assert!(IpRange::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(IpRange::parse("::1").unwrap().contains(ip("::1")));
        assert!(IpRange::parse("1.2.3.4/33").is_err());
    }

    #[test]
    fn subprotocols() {
        let ours = vec!["v2.app".to_string(), "v1.app".to_string()];
        assert_eq!(choose_protocol(&ours, Some("v1.app, v2.app"), false), Ok(Some("v1.app".into())));
        assert_eq!(choose_protocol(&ours, Some("chat"), false), Ok(None));
        assert_eq!(choose_protocol(&ours, Some("chat"), true), Err(NoSupportedProtocol));
        assert_eq!(choose_protocol(&ours, None, true), Err(NoSupportedProtocol));
        assert_eq!(choose_protocol(&[], Some("x"), false), Ok(None));
    }
}
