//! kubeconfig files for simulated clusters.

/// A kubeconfig with one cluster, one user (no credentials: the simulator does not authenticate) and
/// one context, all named `name`, pointing at `url`.
pub(crate) fn kubeconfig_yaml(name: &str, url: &str) -> String {
    format!(
        "apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: {name}\n  cluster:\n    server: {url}\n\
         users:\n\
         - name: {name}\n  user: {{}}\n\
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
        let yaml = kubeconfig_yaml("sh-dc1", "http://127.0.0.1:1234");
        let kc = kube::config::Kubeconfig::from_yaml(&yaml).unwrap();
        assert_eq!(kc.current_context.as_deref(), Some("sh-dc1"));
        let cluster = kc.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("http://127.0.0.1:1234"));
    }
}
