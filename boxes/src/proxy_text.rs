//! Proxy addresses as hvbox prints them: a proxy variable may carry a password
//! (`http://user:password@proxy:3128`), and notes and errors end up in terminals,
//! logs and bug reports, so the password is shown as `***`.

/// `value` with the password of its `user:password@` part masked.
pub fn masked_proxy(value: &str) -> String {
    let start = value.find("://").map_or(0, |i| i + 3);
    let rest = &value[start..];
    // The last `@` ends the user part: a password may hold an `@` of its own
    // (unencoded), and masking too much is the safe mistake.
    let Some(at) = rest.rfind('@') else {
        return value.to_string();
    };
    let Some(colon) = rest[..at].find(':') else {
        return value.to_string();
    };
    format!("{}{}:***{}", &value[..start], &rest[..colon], &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::masked_proxy;

    #[test]
    fn the_password_is_masked_and_nothing_else() {
        assert_eq!(
            masked_proxy("http://me:pw@127.0.0.1:3128"),
            "http://me:***@127.0.0.1:3128"
        );
        assert_eq!(masked_proxy("me:p@ss@proxy:8080/"), "me:***@proxy:8080/");
        assert_eq!(masked_proxy("socks5h://u:x:y@h:1"), "socks5h://u:***@h:1");
        for plain in ["http://proxy.corp:3128", "http://me@proxy:1", "proxy:1", ""] {
            assert_eq!(masked_proxy(plain), plain);
        }
    }
}
