//! Per-kind defaulting and validation (what admission and registry strategies do in a real apiserver).

use serde_json::{Value, json};

use super::Inner;
use super::meta::{ensure_object, is_deleting, metadata_mut, name_of};
use super::registry::{ResourceType, Special, crd_resource_type};
use crate::status::ApiError;
use crate::time::now_rfc3339;

/// The message a real apiserver gives for a forbidden pod spec change.
const POD_UPDATE_FORBIDDEN: &str = "spec: Forbidden: pod updates may not change fields other than \
`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,\
`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` \
(allow it to be set to 1 if it was previously negative)";

/// First octets of simulated service cluster IPs.
const SERVICE_CIDR_PREFIX: &str = "10.96";

/// Defaults and validates a new object.
pub(super) fn on_create(
    inner: &mut Inner,
    rt: &ResourceType,
    obj: &mut Value,
) -> Result<(), ApiError> {
    match rt.special {
        Special::Pod => {
            validate_pod_spec(obj)?;
            default_pod_spec(obj);
            obj["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
        }
        Special::Namespace => {
            let name = name_of(obj).to_string();
            let m = metadata_mut(obj);
            let labels = m.entry("labels").or_insert_with(|| json!({}));
            ensure_object(labels).insert("kubernetes.io/metadata.name".into(), json!(name));
            obj["spec"] = json!({"finalizers": ["kubernetes"]});
            obj["status"] = json!({"phase": "Active"});
        }
        Special::Service => {
            let n = inner.next_cluster_ip;
            inner.next_cluster_ip += 1;
            default_service(
                obj,
                &format!("{SERVICE_CIDR_PREFIX}.{}.{}", n / 256, n % 256),
            );
        }
        Special::Crd => {
            let t =
                crd_resource_type(obj).map_err(|e| ApiError::invalid(&rt.kind, name_of(obj), e))?;
            if inner
                .registry
                .get(&t.id)
                .is_some_and(|existing| !existing.custom)
            {
                return Err(ApiError::invalid(
                    &rt.kind,
                    name_of(obj),
                    "spec.group: Invalid value: the group and plural of a built-in resource",
                ));
            }
            obj["status"] = crd_status(obj, &t.versions);
        }
        Special::Generic => {}
    }
    Ok(())
}

/// Effects of a created object on the cluster.
pub(super) fn after_create(inner: &mut Inner, rt: &ResourceType, obj: &Value) {
    if rt.special == Special::Crd
        && let Ok(t) = crd_resource_type(obj)
    {
        inner.registry.insert(t);
    }
}

/// Defaults and validates an update of the main resource.
pub(super) fn on_update(rt: &ResourceType, old: &Value, new: &mut Value) -> Result<(), ApiError> {
    match rt.special {
        Special::Pod => {
            validate_pod_spec(new)?;
            default_pod_spec(new);
            if comparable_pod_spec(old) != comparable_pod_spec(new) {
                return Err(ApiError::invalid("Pod", name_of(old), POD_UPDATE_FORBIDDEN));
            }
        }
        Special::Service => {
            let ip = old
                .pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .unwrap_or("");
            default_service(new, ip);
        }
        Special::Crd => {
            crd_resource_type(new).map_err(|e| ApiError::invalid(&rt.kind, name_of(new), e))?;
        }
        Special::Namespace | Special::Generic => {}
    }
    Ok(())
}

/// Effects of an updated object on the cluster.
pub(super) fn after_update(inner: &mut Inner, rt: &ResourceType, obj: &Value) {
    if rt.special == Special::Crd
        && !is_deleting(obj)
        && let Ok(t) = crd_resource_type(obj)
    {
        inner.registry.insert(t);
    }
}

fn validate_pod_spec(pod: &Value) -> Result<(), ApiError> {
    let name = name_of(pod);
    let containers = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ApiError::invalid("Pod", name, "spec.containers: Required value"))?;
    for (i, c) in containers.iter().enumerate() {
        if c.get("name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(ApiError::invalid(
                "Pod",
                name,
                format!("spec.containers[{i}].name: Required value"),
            ));
        }
        if c.get("image")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(ApiError::invalid(
                "Pod",
                name,
                format!("spec.containers[{i}].image: Required value"),
            ));
        }
    }
    Ok(())
}

/// Applies the defaults a real apiserver adds to a pod spec (idempotent).
fn default_pod_spec(pod: &mut Value) {
    let spec = ensure_object(&mut pod["spec"]);
    spec.entry("restartPolicy")
        .or_insert_with(|| json!("Always"));
    spec.entry("terminationGracePeriodSeconds")
        .or_insert_with(|| json!(super::delete::DEFAULT_POD_GRACE_SECONDS));
    spec.entry("dnsPolicy")
        .or_insert_with(|| json!("ClusterFirst"));
    spec.entry("schedulerName")
        .or_insert_with(|| json!("default-scheduler"));
    spec.entry("securityContext").or_insert_with(|| json!({}));
    spec.entry("enableServiceLinks")
        .or_insert_with(|| json!(true));
    for list in ["containers", "initContainers"] {
        if let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in containers {
                let image = c
                    .get("image")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let c = ensure_object(c);
                c.entry("imagePullPolicy").or_insert_with(|| {
                    let tagged = image
                        .rsplit('/')
                        .next()
                        .is_some_and(|last| last.contains(':'));
                    if !tagged || image.ends_with(":latest") {
                        json!("Always")
                    } else {
                        json!("IfNotPresent")
                    }
                });
                c.entry("terminationMessagePath")
                    .or_insert_with(|| json!("/dev/termination-log"));
                c.entry("terminationMessagePolicy")
                    .or_insert_with(|| json!("File"));
                c.entry("resources").or_insert_with(|| json!({}));
            }
        }
    }
}

/// The pod spec without the fields an update may change.
fn comparable_pod_spec(pod: &Value) -> Value {
    let mut spec = pod.get("spec").cloned().unwrap_or_else(|| json!({}));
    let s = ensure_object(&mut spec);
    s.remove("activeDeadlineSeconds");
    s.remove("tolerations");
    s.remove("terminationGracePeriodSeconds");
    s.remove("schedulingGates");
    for list in ["containers", "initContainers"] {
        if let Some(containers) = s.get_mut(list).and_then(Value::as_array_mut) {
            for c in containers {
                ensure_object(c).remove("image");
            }
        }
    }
    spec
}

fn default_service(svc: &mut Value, cluster_ip: &str) {
    let spec = ensure_object(&mut svc["spec"]);
    spec.entry("type").or_insert_with(|| json!("ClusterIP"));
    spec.entry("sessionAffinity")
        .or_insert_with(|| json!("None"));
    let ip = spec
        .get("clusterIP")
        .and_then(Value::as_str)
        .filter(|ip| !ip.is_empty())
        .unwrap_or(cluster_ip)
        .to_string();
    spec.insert("clusterIP".into(), json!(ip));
    spec.insert("clusterIPs".into(), json!([ip]));
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            let port = p.get("port").cloned().unwrap_or(Value::Null);
            let p = ensure_object(p);
            p.entry("protocol").or_insert_with(|| json!("TCP"));
            p.entry("targetPort").or_insert(port);
        }
    }
    svc.as_object_mut().map(|o| {
        o.entry("status")
            .or_insert_with(|| json!({"loadBalancer": {}}))
    });
}

fn crd_status(crd: &Value, versions: &[String]) -> Value {
    let now = now_rfc3339();
    let condition = |t: &str, reason: &str, message: &str| json!({"type": t, "status": "True", "lastTransitionTime": now, "reason": reason, "message": message});
    json!({
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "acceptedNames": crd.pointer("/spec/names").cloned().unwrap_or_else(|| json!({})),
        "storedVersions": versions.first().map(|v| vec![v.clone()]).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_spec_changes_other_than_images_are_refused() {
        let mut old = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "x:1"}]}});
        default_pod_spec(&mut old);
        let mut image = old.clone();
        image["spec"]["containers"][0]["image"] = json!("x:2");
        on_update(&pod_type(), &old, &mut image).unwrap();
        let mut env = old.clone();
        env["spec"]["containers"][0]["env"] = json!([{"name": "A", "value": "1"}]);
        let err = on_update(&pod_type(), &old, &mut env).unwrap_err();
        assert_eq!(err.reason, crate::status::Reason::Invalid);
        assert!(err.message.contains("pod updates may not change fields"));
        // A body without the defaulted fields is defaulted first, as on a real apiserver.
        let mut bare = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "x:3"}]}});
        on_update(&pod_type(), &old, &mut bare).unwrap();
    }

    fn pod_type() -> ResourceType {
        super::super::registry::Registry::builtin()
            .lookup("", "v1", "pods")
            .cloned()
            .unwrap()
    }
}
