//! Parsing Kubernetes API paths.

/// What a request path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ApiPath {
    /// `/version`.
    Version,
    /// `/api`.
    CoreVersions,
    /// `/apis`.
    Groups,
    /// `/apis/{group}`.
    Group(String),
    /// `/api/v1` or `/apis/{group}/{version}`.
    Resources {
        /// Group ("" for core).
        group: String,
        /// Version.
        version: String,
    },
    /// `/openapi/v2` (older kubectl validates against it).
    OpenApiV2,
    /// `/openapi/v3`.
    OpenApiRoot,
    /// `/openapi/v3/api/v1` or `/openapi/v3/apis/{group}/{version}`.
    OpenApi {
        /// Group ("" for core).
        group: String,
        /// Version.
        version: String,
    },
    /// A resource collection or object.
    Object(ObjectPath),
}

/// A path below a group version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ObjectPath {
    /// Group ("" for core).
    pub(crate) group: String,
    /// Version.
    pub(crate) version: String,
    /// Plural resource name.
    pub(crate) plural: String,
    /// Namespace from `/namespaces/{ns}/...`.
    pub(crate) namespace: Option<String>,
    /// Object name.
    pub(crate) name: Option<String>,
    /// Subresource (`status`, ...).
    pub(crate) subresource: Option<String>,
    /// The deprecated `/watch/` prefix was used.
    pub(crate) legacy_watch: bool,
}

/// Parses a request path; `None` when it is not a Kubernetes API path.
pub(crate) fn parse(path: &str) -> Option<ApiPath> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segs.as_slice() {
        ["version"] => Some(ApiPath::Version),
        ["api"] => Some(ApiPath::CoreVersions),
        ["apis"] => Some(ApiPath::Groups),
        ["apis", group] => Some(ApiPath::Group(group.to_string())),
        ["openapi", "v2"] => Some(ApiPath::OpenApiV2),
        ["openapi", "v3"] => Some(ApiPath::OpenApiRoot),
        ["openapi", "v3", "api", version] => Some(ApiPath::OpenApi {
            group: String::new(),
            version: version.to_string(),
        }),
        ["openapi", "v3", "apis", group, version] => Some(ApiPath::OpenApi {
            group: group.to_string(),
            version: version.to_string(),
        }),
        ["api", version, rest @ ..] => below("", version, rest),
        ["apis", group, version, rest @ ..] => below(group, version, rest),
        _ => None,
    }
}

fn below(group: &str, version: &str, rest: &[&str]) -> Option<ApiPath> {
    let (legacy_watch, rest) = match rest {
        ["watch", tail @ ..] => (true, tail),
        other => (false, other),
    };
    let obj = |plural: &str, namespace: Option<&str>, name: Option<&str>, sub: Option<&str>| {
        Some(ApiPath::Object(ObjectPath {
            group: group.to_string(),
            version: version.to_string(),
            plural: plural.to_string(),
            namespace: namespace.map(str::to_string),
            name: name.map(str::to_string),
            subresource: sub.map(str::to_string),
            legacy_watch,
        }))
    };
    match rest {
        [] if !legacy_watch => Some(ApiPath::Resources {
            group: group.to_string(),
            version: version.to_string(),
        }),
        ["namespaces", name, sub @ ("status" | "finalize")] => {
            obj("namespaces", None, Some(name), Some(sub))
        }
        ["namespaces", ns, plural] => obj(plural, Some(ns), None, None),
        ["namespaces", ns, plural, name] => obj(plural, Some(ns), Some(name), None),
        ["namespaces", ns, plural, name, sub] => obj(plural, Some(ns), Some(name), Some(sub)),
        [plural] => obj(plural, None, None, None),
        [plural, name] => obj(plural, None, Some(name), None),
        [plural, name, sub] => obj(plural, None, Some(name), Some(sub)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(p: &str) -> ObjectPath {
        match parse(p) {
            Some(ApiPath::Object(o)) => o,
            other => panic!("{p}: {other:?}"),
        }
    }

    #[test]
    fn parses_paths() {
        assert_eq!(parse("/version"), Some(ApiPath::Version));
        assert_eq!(parse("/api"), Some(ApiPath::CoreVersions));
        assert_eq!(
            parse("/apis/apps/v1"),
            Some(ApiPath::Resources {
                group: "apps".into(),
                version: "v1".into()
            })
        );
        let o = object("/api/v1/namespaces/default/pods/web-0/status");
        assert_eq!(
            (
                o.plural.as_str(),
                o.namespace.as_deref(),
                o.name.as_deref(),
                o.subresource.as_deref()
            ),
            ("pods", Some("default"), Some("web-0"), Some("status"))
        );
        let o = object("/api/v1/namespaces/default");
        assert_eq!(
            (o.plural.as_str(), o.namespace, o.name.as_deref()),
            ("namespaces", None, Some("default"))
        );
        let o = object("/api/v1/namespaces/x/status");
        assert_eq!(
            (
                o.plural.as_str(),
                o.name.as_deref(),
                o.subresource.as_deref()
            ),
            ("namespaces", Some("x"), Some("status"))
        );
        let o = object("/apis/cafe.io/v1alpha1/namespaces/a/inplacesets");
        assert_eq!(
            (o.group.as_str(), o.plural.as_str(), o.name),
            ("cafe.io", "inplacesets", None)
        );
        let o = object("/api/v1/watch/namespaces/a/pods");
        assert!(o.legacy_watch);
        assert_eq!(parse("/healthz"), None);
    }
}
