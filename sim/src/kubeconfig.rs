//! kubeconfig files for simulated clusters and test control planes.

use std::path::Path;

/// How a kubeconfig's user reaches the server.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Access<'a> {
    /// Plain HTTP, no credentials: the simulator does not authenticate.
    Anonymous,
    /// HTTPS trusting the CA file `ca`, with a bearer token.
    Token {
        /// The CA certificate's file.
        ca: &'a Path,
        /// The bearer token.
        token: &'a str,
    },
}

/// A kubeconfig with one cluster, one user and one context, all named `name`, pointing at `url`.
pub(crate) fn kubeconfig_yaml(name: &str, url: &str, access: Access<'_>) -> String {
    let (ca, user) = match access {
        Access::Anonymous => (String::new(), "{}".to_string()),
        Access::Token { ca, token } => (
            format!("    certificate-authority: {}\n", ca.display()),
            format!("\n    token: {token}"),
        ),
    };
    format!(
        "apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: {name}\n  cluster:\n    server: {url}\n{ca}\
         users:\n\
         - name: {name}\n  user: {user}\n\
         contexts:\n\
         - name: {name}\n  context:\n    cluster: {name}\n    user: {name}\n    namespace: default\n\
         current-context: {name}\n\
         preferences: {{}}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_parses_with_kube_rs() {
        let yaml = kubeconfig_yaml("sh-dc1", "http://127.0.0.1:1234", Access::Anonymous);
        let kc = kube::config::Kubeconfig::from_yaml(&yaml).unwrap();
        assert_eq!(kc.current_context.as_deref(), Some("sh-dc1"));
        let cluster = kc.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("http://127.0.0.1:1234"));
    }

    #[test]
    fn token_kubeconfig_names_the_ca_and_the_token() {
        let access = Access::Token {
            ca: Path::new("/tmp/ca.crt"),
            token: "abc",
        };
        let yaml = kubeconfig_yaml("c1", "https://127.0.0.1:6443", access);
        let kc = kube::config::Kubeconfig::from_yaml(&yaml).unwrap();
        let cluster = kc.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(
            cluster.certificate_authority.as_deref(),
            Some("/tmp/ca.crt")
        );
        let user = kc.auth_infos[0].auth_info.as_ref().unwrap();
        assert!(user.token.is_some());
    }
}
