//! The host's HTTP proxies in the guest: apt's (cloud-config `apt:`, which
//! cloud-init writes to `/etc/apt/apt.conf.d/`) and the login environment's
//! (`/etc/environment`, which PAM reads for ssh sessions and sudo), in lower and
//! upper case since programs read one or the other. Both are first-boot settings.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::Error;

/// Where the login environment's proxy variables are appended.
pub const ENVIRONMENT_FILE: &str = "/etc/environment";

/// Proxy settings as the guest must use them (addresses the guest can reach).
/// Serialized as a machine's record of the proxies it was made with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestProxy {
    /// For http URLs, e.g. "http://10.0.2.2:3128".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// For https URLs (an http:// proxy that tunnels with CONNECT, usually).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https: Option<String>,
    /// Hosts reached directly, comma-separated as curl and apt read them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_proxy: Option<String>,
}

impl GuestProxy {
    pub fn is_empty(&self) -> bool {
        self.http.is_none() && self.https.is_none() && self.no_proxy.is_none()
    }

    fn variables(&self) -> impl Iterator<Item = (&'static str, &String)> {
        [
            ("http_proxy", &self.http),
            ("https_proxy", &self.https),
            ("no_proxy", &self.no_proxy),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.as_ref().map(|v| (name, v)))
    }

    /// `/etc/environment`'s lines: each variable in lower and upper case.
    pub fn environment(&self) -> String {
        let mut text = String::new();
        for (name, value) in self.variables() {
            for name in [name.to_string(), name.to_ascii_uppercase()] {
                text.push_str(&format!("{name}=\"{value}\"\n"));
            }
        }
        text
    }
}

/// Values that fit a double-quoted `/etc/environment` line and apt's config.
pub(crate) fn validate(p: &GuestProxy) -> Result<(), Error> {
    for (name, value) in p.variables() {
        if value.is_empty()
            || value
                .chars()
                .any(|c| c.is_control() || c == '"' || c == '\\')
        {
            return Err(Error::InvalidConfig(format!(
                "the machines' {name} must be non-empty without control characters, `\"` or `\\` (hvbox encodes or leaves out such host values before this)"
            )));
        }
    }
    Ok(())
}

/// Add the proxy's keys to hvbox's part of the document (before the user's).
pub(crate) fn add(doc: &mut Map<String, Value>, p: &GuestProxy) {
    if p.is_empty() {
        return;
    }
    let mut apt = Map::new();
    if let Some(http) = &p.http {
        apt.insert("http_proxy".into(), json!(http));
    }
    if let Some(https) = &p.https {
        apt.insert("https_proxy".into(), json!(https));
    }
    if !apt.is_empty() {
        doc.insert("apt".into(), Value::Object(apt));
    }
    // Appended, not replaced: Ubuntu's file sets PATH.
    let file = json!({
        "path": ENVIRONMENT_FILE,
        "content": p.environment(),
        "append": true,
    });
    match doc.get_mut("write_files") {
        Some(Value::Array(files)) => files.insert(0, file),
        _ => {
            doc.insert("write_files".into(), json!([file]));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::fixtures::{cfg, parse};
    use crate::{user_data, UserData, WriteFile};

    fn proxy() -> GuestProxy {
        GuestProxy {
            http: Some("http://10.0.2.2:3128".into()),
            https: Some("http://user:pw@proxy.corp:8080/".into()),
            no_proxy: Some("localhost,127.0.0.1,.corp".into()),
        }
    }

    #[test]
    fn apt_and_the_login_environment_get_the_proxies() {
        let mut c = cfg();
        c.proxy = proxy();
        c.write_files = vec![WriteFile {
            path: "/etc/motd".into(),
            content: "hi\n".into(),
            ..Default::default()
        }];
        let v = parse(&user_data(&c).unwrap());
        assert_eq!(
            v["apt"],
            json!({"http_proxy": "http://10.0.2.2:3128", "https_proxy": "http://user:pw@proxy.corp:8080/"})
        );
        assert_eq!(
            v["write_files"],
            json!([
                {"path": "/etc/environment", "append": true, "content":
                    "http_proxy=\"http://10.0.2.2:3128\"\nHTTP_PROXY=\"http://10.0.2.2:3128\"\n\
                     https_proxy=\"http://user:pw@proxy.corp:8080/\"\nHTTPS_PROXY=\"http://user:pw@proxy.corp:8080/\"\n\
                     no_proxy=\"localhost,127.0.0.1,.corp\"\nNO_PROXY=\"localhost,127.0.0.1,.corp\"\n"},
                {"path": "/etc/motd", "content": "hi\n"},
            ])
        );
    }

    #[test]
    fn only_what_is_set_and_nothing_without_proxies() {
        let v = parse(&user_data(&cfg()).unwrap());
        assert!(v.get("apt").is_none() && v.get("write_files").is_none());
        let mut c = cfg();
        c.proxy.no_proxy = Some("example.org".into());
        let v = parse(&user_data(&c).unwrap());
        assert!(v.get("apt").is_none(), "{v}");
        assert_eq!(
            v["write_files"][0]["content"],
            "no_proxy=\"example.org\"\nNO_PROXY=\"example.org\"\n"
        );
    }

    /// The user's own `apt:` mapping merges into hvbox's, its values winning.
    #[test]
    fn the_users_apt_settings_merge_over_the_proxy() {
        let mut c = cfg();
        c.proxy = proxy();
        c.user_data = Some(
            UserData::parse(
                "#cloud-config\napt:\n  http_proxy: http://mine:3128\n  preserve_sources_list: true\n",
                "user-data",
            )
            .unwrap(),
        );
        let v = parse(&user_data(&c).unwrap());
        assert_eq!(v["apt"]["http_proxy"], "http://mine:3128");
        assert_eq!(v["apt"]["https_proxy"], "http://user:pw@proxy.corp:8080/");
        assert_eq!(v["apt"]["preserve_sources_list"], true);
    }

    #[test]
    fn values_that_would_break_the_files_are_refused() {
        for bad in ["", "http://a\"b", "http://a\nb", "http://a\\b"] {
            let mut c = cfg();
            c.proxy.http = Some(bad.into());
            let e = user_data(&c).unwrap_err().to_string();
            assert!(e.contains("the machines' http_proxy must be"), "{e}");
        }
    }
}
