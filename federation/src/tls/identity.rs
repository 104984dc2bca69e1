//! Who is on the other end of a connection: identities and roles carried by client certificates.
//!
//! Kubernetes-style, a certificate's subject Organization (O) is the role and its Common Name (CN)
//! the name: `O=cafe:agent, CN=<cluster>` for agents, `O=cafe:admin|cafe:operator|cafe:viewer,
//! CN=<user>` for operators.

use std::fmt;
use std::str::FromStr;

use x509_parser::x509::{AttributeTypeAndValue, X509Name};

use super::TlsError;
use super::material::parse_x509;
use crate::names::ClusterName;

/// The Organization of agent certificates.
pub const AGENT_ORGANIZATION: &str = "cafe:agent";
/// The Organization of admin certificates.
pub const ADMIN_ORGANIZATION: &str = "cafe:admin";
/// The Organization of operator certificates.
pub const OPERATOR_ORGANIZATION: &str = "cafe:operator";
/// The Organization of viewer certificates.
pub const VIEWER_ORGANIZATION: &str = "cafe:viewer";

/// The longest user name we accept; it becomes a Common Name, whose upper bound is 64 (RFC 5280).
const MAX_USER_NAME_LEN: usize = 64;

/// What an operator may do; each role includes everything the roles below it may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reads state: units, clusters, deployments, release status, history and the audit log.
    Viewer,
    /// Also drives releases: apply, pause, continue, retry, rollback.
    Operator,
    /// Also manages units, clusters and failover.
    Admin,
}

impl Role {
    /// Every role, weakest first.
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    /// Whether this role may do what `needed` may do.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }

    /// The role's lowercase name: `viewer`, `operator` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// The certificate Organization that carries this role.
    pub fn organization(self) -> &'static str {
        match self {
            Role::Viewer => VIEWER_ORGANIZATION,
            Role::Operator => OPERATOR_ORGANIZATION,
            Role::Admin => ADMIN_ORGANIZATION,
        }
    }

    fn from_organization(organization: &str) -> Option<Role> {
        Role::ALL
            .into_iter()
            .find(|role| role.organization() == organization)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = TlsError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == value)
            .ok_or_else(|| TlsError::UnknownRole(value.to_owned()))
    }
}

/// The authenticated identity of a peer, read from its client certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    /// A member agent, speaking for exactly one cluster.
    Agent {
        /// The cluster the agent may speak for.
        cluster: ClusterName,
    },
    /// A person or tool using the operators' API.
    User {
        /// The user's name (the certificate's Common Name).
        name: String,
        /// What the user may do.
        role: Role,
    },
}

impl Identity {
    /// The user's role, or `None` for an agent (agents may not use the operators' API).
    pub fn role(&self) -> Option<Role> {
        match self {
            Identity::Agent { .. } => None,
            Identity::User { role, .. } => Some(*role),
        }
    }

    /// The certificate subject that carries this identity: (Organization, Common Name).
    pub fn subject(&self) -> (&'static str, &str) {
        match self {
            Identity::Agent { cluster } => (AGENT_ORGANIZATION, cluster.as_str()),
            Identity::User { name, role } => (role.organization(), name),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Agent { cluster } => write!(f, "agent of cluster {cluster}"),
            Identity::User { name, role } => write!(f, "user {name} ({role})"),
        }
    }
}

/// Checks that `name` can be a user's Common Name and directory name: 1 to 64 characters from
/// `[A-Za-z0-9._@-]`, not starting with a dot.
pub fn validate_user_name(name: &str) -> Result<(), TlsError> {
    let invalid = |reason| {
        Err(TlsError::InvalidUserName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("it is empty");
    }
    if name.len() > MAX_USER_NAME_LEN {
        return invalid("it is longer than 64 characters");
    }
    if name.starts_with('.') {
        return invalid("it starts with a dot");
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-');
    if !name.chars().all(allowed) {
        return invalid("only letters, digits and . _ @ - are allowed");
    }
    Ok(())
}

/// Reads the identity from a DER-encoded certificate's subject.
///
/// This does not verify the certificate: call it on certificates the TLS layer has already
/// verified against the CA (the peer's, see [`peer_identity`]) or on ones we issued.
pub fn identity_from_der(cert_der: &[u8]) -> Result<Identity, TlsError> {
    identity_from_der_named(cert_der, "certificate")
}

pub(super) fn identity_from_der_named(cert_der: &[u8], what: &str) -> Result<Identity, TlsError> {
    identity_from_subject(parse_x509(cert_der, what)?.subject(), what)
}

fn identity_from_subject(subject: &X509Name<'_>, what: &str) -> Result<Identity, TlsError> {
    const CN: &str = "Common Name (CN)";
    const O: &str = "Organization (O)";
    let name = single_attribute(subject.iter_common_name(), what, CN)?.ok_or_else(|| {
        TlsError::MissingCommonName {
            what: what.to_owned(),
        }
    })?;
    let organization =
        single_attribute(subject.iter_organization(), what, O)?.ok_or_else(|| {
            TlsError::MissingOrganization {
                what: what.to_owned(),
            }
        })?;
    if organization == AGENT_ORGANIZATION {
        let cluster = ClusterName::new(name).map_err(|source| TlsError::InvalidClusterName {
            what: what.to_owned(),
            name: name.to_owned(),
            source,
        })?;
        return Ok(Identity::Agent { cluster });
    }
    let role =
        Role::from_organization(organization).ok_or_else(|| TlsError::UnknownOrganization {
            what: what.to_owned(),
            organization: organization.to_owned(),
        })?;
    validate_user_name(name)?;
    Ok(Identity::User {
        name: name.to_owned(),
        role,
    })
}

/// The text of the only attribute in `values`, `None` if there is none.
fn single_attribute<'a, 'b>(
    values: impl Iterator<Item = &'b AttributeTypeAndValue<'a>>,
    what: &str,
    attribute: &'static str,
) -> Result<Option<&'b str>, TlsError>
where
    'a: 'b,
{
    let values: Vec<_> = values.collect();
    match values.as_slice() {
        [] => Ok(None),
        [value] => value
            .as_str()
            .map(Some)
            .map_err(|_| TlsError::NonTextAttribute {
                what: what.to_owned(),
                attribute,
            }),
        _ => Err(TlsError::AmbiguousSubject {
            what: what.to_owned(),
            attribute,
            count: values.len(),
        }),
    }
}

/// The identity of the peer of a gRPC request, from the first certificate it presented.
///
/// Returns `UNAUTHENTICATED` when the connection carries no client certificate (a plaintext
/// `--insecure` listener) or the certificate's subject is not one of ours. The TLS layer has
/// already verified the certificate against the CA when this runs.
pub fn peer_identity<T>(request: &tonic::Request<T>) -> Result<Identity, tonic::Status> {
    let certs = request
        .peer_certs()
        .ok_or_else(|| tonic::Status::unauthenticated("no client certificate presented"))?;
    let first = certs
        .first()
        .ok_or_else(|| tonic::Status::unauthenticated("no client certificate presented"))?;
    identity_from_der_named(first.as_ref(), "client certificate")
        .map_err(|err| tonic::Status::unauthenticated(err.to_string()))
}

/// The identity of a request's peer, provided it is a user whose role allows `needed`.
///
/// `UNAUTHENTICATED` without a usable certificate, `PERMISSION_DENIED` for agents and for users
/// whose role is too weak.
pub fn authorize<T>(request: &tonic::Request<T>, needed: Role) -> Result<Identity, tonic::Status> {
    let identity = peer_identity(request)?;
    match identity.role() {
        Some(role) if role.allows(needed) => Ok(identity),
        _ => Err(tonic::Status::permission_denied(format!(
            "{identity} may not do this: it needs the {needed} role"
        ))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests fail loudly on unexpected errors.
mod tests {
    use rcgen::{CertificateParams, DnType, KeyPair};

    use super::*;

    /// A self-signed certificate whose subject has the given attributes.
    fn cert_with_subject(attributes: &[(DnType, &str)]) -> Vec<u8> {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (ty, value) in attributes {
            params.distinguished_name.push(ty.clone(), *value);
        }
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Admin.allows(Role::Operator));
        assert!(Role::Admin.allows(Role::Viewer));
        assert!(Role::Operator.allows(Role::Operator));
        assert!(Role::Operator.allows(Role::Viewer));
        assert!(!Role::Operator.allows(Role::Admin));
        assert!(!Role::Viewer.allows(Role::Operator));
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
            assert_eq!(Role::from_organization(role.organization()), Some(role));
        }
        assert_eq!(
            "root".parse::<Role>().unwrap_err().to_string(),
            "unknown role \"root\"; expected viewer, operator or admin"
        );
    }

    #[test]
    fn reads_agents_and_users() {
        let der = cert_with_subject(&[
            (DnType::OrganizationName, AGENT_ORGANIZATION),
            (DnType::CommonName, "eu-1a"),
        ]);
        assert_eq!(
            identity_from_der(&der).unwrap(),
            Identity::Agent {
                cluster: "eu-1a".parse().unwrap()
            }
        );
        let der = cert_with_subject(&[
            (DnType::CommonName, "alice@example.com"),
            (DnType::OrganizationName, OPERATOR_ORGANIZATION),
        ]);
        assert_eq!(
            identity_from_der(&der).unwrap(),
            Identity::User {
                name: "alice@example.com".into(),
                role: Role::Operator
            }
        );
    }

    #[test]
    fn rejects_subjects_that_are_not_ours() {
        let cases: [(&[(DnType, &str)], &str); 5] = [
            (
                &[(DnType::OrganizationName, AGENT_ORGANIZATION)],
                "certificate: the subject has no Common Name (CN)",
            ),
            (
                &[(DnType::CommonName, "alice")],
                "certificate: the subject has no Organization (O); expected one of cafe:agent, \
                 cafe:admin, cafe:operator, cafe:viewer",
            ),
            (
                &[
                    (DnType::OrganizationName, "system:masters"),
                    (DnType::CommonName, "alice"),
                ],
                "certificate: unknown Organization (O) \"system:masters\"",
            ),
            (
                &[
                    (DnType::OrganizationName, AGENT_ORGANIZATION),
                    (DnType::CommonName, "Not_A_Cluster"),
                ],
                "certificate: the Common Name \"Not_A_Cluster\" is not a valid cluster name",
            ),
            (
                &[
                    (DnType::OrganizationName, ADMIN_ORGANIZATION),
                    (DnType::CommonName, "../etc"),
                ],
                "invalid user name \"../etc\": it starts with a dot",
            ),
        ];
        for (subject, expected) in cases {
            let err = identity_from_der(&cert_with_subject(subject)).unwrap_err();
            assert!(
                err.to_string().starts_with(expected),
                "{subject:?}: got {err}, expected {expected}"
            );
        }
        let err = identity_from_der(b"not a certificate").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("certificate: invalid X.509 certificate"),
            "{err}"
        );
    }

    #[test]
    fn user_names() {
        for good in ["a", "alice", "alice@example.com", "ci-bot_2.x"] {
            validate_user_name(good).unwrap();
        }
        for bad in ["", ".hidden", "a/b", "a b", "é", &"x".repeat(65)] {
            assert!(validate_user_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn peer_identity_without_tls_is_unauthenticated() {
        let status = peer_identity(&tonic::Request::new(())).unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        let status = authorize(&tonic::Request::new(()), Role::Viewer).unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
    }
}
