//! Where a call goes below the target's base url: path segments and query parameters, built
//! into the url with `Url::path_segments_mut` and `query_pairs_mut`, never by formatting text,
//! so that an id or a filter value cannot reach outside the resource it names.

use crate::ids::ScimId;
use reqwest::Url;

/// The two resource endpoints scimsync writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Users,
    Groups,
}

impl Endpoint {
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Users => "Users",
            Endpoint::Groups => "Groups",
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Users => "/Users",
            Endpoint::Groups => "/Groups",
        }
    }
}

/// A call's place below the base url.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    segments: Vec<String>,
    query: Vec<(&'static str, String)>,
}

impl Route {
    /// `/Name`, e.g. `/ServiceProviderConfig`.
    pub fn at(segment: &str) -> Route {
        Route {
            segments: vec![segment.to_owned()],
            query: Vec::new(),
        }
    }

    /// `/Users` or `/Groups`.
    pub fn endpoint(endpoint: Endpoint) -> Route {
        Route::at(endpoint.name())
    }

    /// `/Users/ID`: the id is one path segment, whatever it holds.
    pub fn resource(endpoint: Endpoint, id: &ScimId) -> Route {
        Route {
            segments: vec![endpoint.name().to_owned(), id.as_str().to_owned()],
            query: Vec::new(),
        }
    }

    pub fn with(mut self, name: &'static str, value: impl ToString) -> Route {
        self.query.push((name, value.to_string()));
        self
    }

    /// Whether this is a write's route: a resource endpoint.
    pub fn is_resource(&self) -> bool {
        matches!(
            self.segments.first().map(String::as_str),
            Some("Users" | "Groups")
        )
    }

    /// The full url below `base`.
    pub fn url(&self, base: &Url) -> Url {
        let mut url = base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            for s in &self.segments {
                path.push(s);
            }
        }
        if !self.query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(self.query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        url
    }

    /// The path as RFC 7644 writes it inside a bulk request: `/Users/ID`, percent-encoded.
    pub fn bulk_path(&self) -> String {
        let base = Url::parse("http://x/").expect("a constant url");
        self.url(&base).path().to_owned()
    }
}

/// As a person reads it: `/Users?filter=userName eq "ada"`, decoded.
impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for s in &self.segments {
            write!(f, "/{s}")?;
        }
        for (i, (k, v)) in self.query.iter().enumerate() {
            write!(f, "{}{k}={v}", if i == 0 { '?' } else { '&' })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_filters_stay_inside_their_segment_and_parameter() {
        let base = Url::parse("https://t.example/scim/v2/").expect("url");
        let id = ScimId::from("../../admin?x=1#y");
        let r = Route::resource(Endpoint::Users, &id);
        assert_eq!(
            r.url(&base).as_str(),
            "https://t.example/scim/v2/Users/..%2F..%2Fadmin%3Fx=1%23y"
        );
        let q = Route::endpoint(Endpoint::Users).with("filter", r#"userName eq "a&b""#);
        assert_eq!(
            q.url(&base).as_str(),
            "https://t.example/scim/v2/Users?filter=userName+eq+%22a%26b%22"
        );
        assert_eq!(q.to_string(), r#"/Users?filter=userName eq "a&b""#);
        let plain = Url::parse("https://t.example/v2").expect("url");
        assert_eq!(
            Route::at("ServiceProviderConfig").url(&plain).as_str(),
            "https://t.example/v2/ServiceProviderConfig"
        );
        assert_eq!(
            Route::resource(Endpoint::Groups, &ScimId::from("a b")).bulk_path(),
            "/Groups/a%20b"
        );
    }
}
