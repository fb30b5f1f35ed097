//! THE mapping Google applies to a verified AWS caller: what an AWS workload becomes in a
//! workload identity pool (its subject and attributes), and the principal identifiers that IAM
//! bindings name it by.
//!
//! The subtle part is `attribute.aws_role`: for an assumed role it is the assumed-role ARN
//! **without the session name** (`arn:aws:sts::ACCOUNT:assumed-role/ROLE`), so every session of
//! the role matches one principalSet; for anything else it is the caller ARN itself. The lab,
//! the linter, `keyless setup` and `keyless doctor` all call this one function so they agree.

use std::collections::BTreeMap;

use super::cel::CelVariables;

/// What an AWS caller becomes under the AWS provider's default attribute mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsFederatedIdentity {
    /// `google.subject` = `assertion.arn` (the caller ARN, session name included).
    pub subject: String,
    /// `aws_role` and `aws_account` (without the `attribute.` prefix).
    pub attributes: BTreeMap<String, String>,
}

/// Applies the default mapping:
/// `google.subject = assertion.arn`,
/// `attribute.aws_role = assertion.arn.contains('assumed-role') ? assertion.arn.extract('{account_arn}assumed-role/') + 'assumed-role/' + assertion.arn.extract('assumed-role/{role_name}/') : assertion.arn`,
/// `attribute.aws_account = assertion.account`.
pub fn aws_default_mapping(arn: &str, account: &str) -> AwsFederatedIdentity {
    let aws_role = match arn.split_once("assumed-role/") {
        Some((account_arn, rest)) => {
            let role_name = rest.split('/').next().unwrap_or(rest);
            format!("{account_arn}assumed-role/{role_name}")
        }
        None => arn.to_string(),
    };
    AwsFederatedIdentity {
        subject: arn.to_string(),
        attributes: BTreeMap::from([
            ("aws_role".to_string(), aws_role),
            ("aws_account".to_string(), account.to_string()),
        ]),
    }
}

impl AwsFederatedIdentity {
    /// The variables an attribute condition sees: `google.subject`, `attribute.*`, and the
    /// assertion (`assertion.arn`, `assertion.account`) it was mapped from.
    pub fn cel_variables(&self, account: &str) -> CelVariables {
        let mut vars: CelVariables = self
            .attributes
            .iter()
            .map(|(k, v)| (format!("attribute.{k}"), v.clone()))
            .collect();
        vars.insert("google.subject".into(), self.subject.clone());
        vars.insert("assertion.arn".into(), self.subject.clone());
        vars.insert("assertion.account".into(), account.to_string());
        vars
    }
}

/// `//iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/POOL/providers/P`,
/// parsed. Google accepts the audience with or without an `https:` prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderAudience {
    /// The project number.
    pub project_number: String,
    /// The pool id.
    pub pool: String,
    /// The provider id.
    pub provider: String,
}

impl ProviderAudience {
    /// Parses a provider audience; `None` when it is not one.
    pub fn parse(audience: &str) -> Option<Self> {
        let rest = audience
            .strip_prefix("https:")
            .unwrap_or(audience)
            .strip_prefix("//iam.googleapis.com/projects/")?;
        let parts: Vec<&str> = rest.split('/').collect();
        let [number, "locations", "global", "workloadIdentityPools", pool, "providers", provider] =
            parts[..]
        else {
            return None;
        };
        let valid = |s: &str| !s.is_empty();
        (valid(number) && valid(pool) && valid(provider)).then(|| Self {
            project_number: number.to_string(),
            pool: pool.to_string(),
            provider: provider.to_string(),
        })
    }

    /// The canonical form (no `https:`).
    pub fn canonical(&self) -> String {
        format!(
            "//iam.googleapis.com/projects/{}/locations/global/workloadIdentityPools/{}/providers/{}",
            self.project_number, self.pool, self.provider
        )
    }

    /// `//iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/POOL`.
    pub fn pool_resource(&self) -> String {
        pool_resource(&self.project_number, &self.pool)
    }
}

/// `//iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/POOL`: the prefix of
/// every principal identifier in the pool.
pub fn pool_resource(project_number: &str, pool: &str) -> String {
    format!("//iam.googleapis.com/projects/{project_number}/locations/global/workloadIdentityPools/{pool}")
}

/// Whether an IAM member (`principal://...subject/S`, `principalSet://.../attribute.NAME/VALUE`,
/// `principalSet://.../*`) names a federated identity of the pool `pool_resource`.
pub fn member_matches(
    member: &str,
    pool_resource: &str,
    subject: &str,
    attributes: &BTreeMap<String, String>,
) -> bool {
    if let Some(rest) = member
        .strip_prefix("principal:")
        .and_then(|m| m.strip_prefix(pool_resource))
    {
        return rest.strip_prefix("/subject/") == Some(subject);
    }
    let Some(rest) = member
        .strip_prefix("principalSet:")
        .and_then(|m| m.strip_prefix(pool_resource))
    else {
        return false;
    };
    if rest == "/*" {
        return true;
    }
    rest.strip_prefix("/attribute.")
        .and_then(|r| r.split_once('/'))
        .is_some_and(|(name, value)| attributes.get(name).is_some_and(|v| v == value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assumed_role_attribute_drops_the_session_name() {
        let id = aws_default_mapping(
            "arn:aws:sts::123456789012:assumed-role/aws-workload/i-0abc",
            "123456789012",
        );
        assert_eq!(
            id.subject,
            "arn:aws:sts::123456789012:assumed-role/aws-workload/i-0abc"
        );
        assert_eq!(
            id.attributes["aws_role"],
            "arn:aws:sts::123456789012:assumed-role/aws-workload"
        );
        assert_eq!(id.attributes["aws_account"], "123456789012");
        let vars = id.cel_variables("123456789012");
        assert_eq!(vars["attribute.aws_role"], id.attributes["aws_role"]);
        assert_eq!(vars["google.subject"], id.subject);
    }

    #[test]
    fn users_keep_their_arn() {
        let id = aws_default_mapping("arn:aws:iam::123456789012:user/ci-user", "123456789012");
        assert_eq!(
            id.attributes["aws_role"],
            "arn:aws:iam::123456789012:user/ci-user"
        );
    }

    #[test]
    fn audiences_parse_with_or_without_https() {
        let canonical = "//iam.googleapis.com/projects/424242424242/locations/global/workloadIdentityPools/keyless-pool/providers/aws-lab";
        let a = ProviderAudience::parse(canonical).unwrap();
        assert_eq!(a.pool, "keyless-pool");
        assert_eq!(a.provider, "aws-lab");
        assert_eq!(a.canonical(), canonical);
        assert_eq!(
            ProviderAudience::parse(&format!("https:{canonical}")),
            Some(a)
        );
        assert_eq!(ProviderAudience::parse("sts.amazonaws.com"), None);
        assert_eq!(
            ProviderAudience::parse("//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/"),
            None
        );
    }

    #[test]
    fn members_match_subjects_attributes_and_whole_pools() {
        let pool = pool_resource("424242424242", "keyless-pool");
        let id = aws_default_mapping(
            "arn:aws:sts::123456789012:assumed-role/aws-workload/s",
            "123456789012",
        );
        let m = |member: String| member_matches(&member, &pool, &id.subject, &id.attributes);
        assert!(m(format!("principal:{pool}/subject/{}", id.subject)));
        assert!(!m(format!("principal:{pool}/subject/other")));
        assert!(m(format!(
            "principalSet:{pool}/attribute.aws_role/arn:aws:sts::123456789012:assumed-role/aws-workload"
        )));
        assert!(!m(format!(
            "principalSet:{pool}/attribute.aws_role/arn:aws:sts::123456789012:assumed-role/other"
        )));
        assert!(m(format!(
            "principalSet:{pool}/attribute.aws_account/123456789012"
        )));
        assert!(m(format!("principalSet:{pool}/*")));
        let other_pool = pool_resource("424242424242", "other-pool");
        assert!(!m(format!("principalSet:{other_pool}/*")));
        assert!(!m("serviceAccount:a@b".to_string()));
    }
}
