//! The one policy the authorizer answers: Allow `execute-api:Invoke` on every
//! method of the stage the request came to. The whole stage, not the one
//! method: an answer API Gateway caches must fit the caller's next route
//! too; what a principal may do per route is the API handler's call (it
//! reads the context).

use aws_lambda_events::apigw::ApiGatewayCustomAuthorizerPolicy;
use aws_lambda_events::iam::{IamPolicyEffect, IamPolicyStatement};

pub const POLICY_VERSION: &str = "2012-10-17";
pub const ACTION_INVOKE: &str = "execute-api:Invoke";

/// `arn:PARTITION:execute-api:REGION:ACCOUNT:APIID/STAGE/VERB/PATH…` →
/// `arn:PARTITION:execute-api:REGION:ACCOUNT:APIID/STAGE/*/*`; `None` for
/// anything else.
pub fn stage_resource(method_arn: &str) -> Option<String> {
    let mut fields = method_arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("execute-api"), Some(region), Some(account)) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return None;
    };
    let mut segments = fields.next()?.split('/');
    let (api_id, stage) = (segments.next()?, segments.next()?);
    let lower_word = |text: &str| {
        !text.is_empty()
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    let valid = lower_word(partition)
        && lower_word(region)
        && !account.is_empty()
        && account.bytes().all(|b| b.is_ascii_digit())
        && !api_id.is_empty()
        && api_id.bytes().all(|b| b.is_ascii_alphanumeric())
        && !stage.is_empty()
        && stage
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    valid.then(|| format!("arn:{partition}:execute-api:{region}:{account}:{api_id}/{stage}/*/*"))
}

/// Version 2012-10-17, one statement: Allow `execute-api:Invoke` on `resource`.
pub fn allow(resource: String) -> ApiGatewayCustomAuthorizerPolicy {
    let mut statement = IamPolicyStatement::default();
    statement.action = vec![ACTION_INVOKE.to_owned()];
    statement.effect = IamPolicyEffect::Allow;
    statement.resource = vec![resource];
    let mut policy = ApiGatewayCustomAuthorizerPolicy::default();
    policy.version = Some(POLICY_VERSION.to_owned());
    policy.statement = vec![statement];
    policy
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_resource_is_the_stage_wildcard_of_the_method_arn() {
        assert_eq!(
            stage_resource(
                "arn:aws:execute-api:us-east-1:123456789012:abc123/prod/GET/payments/p1"
            )
            .unwrap(),
            "arn:aws:execute-api:us-east-1:123456789012:abc123/prod/*/*"
        );
    }

    #[test]
    fn the_partition_and_a_bare_stage_are_kept() {
        assert_eq!(
            stage_resource("arn:aws-cn:execute-api:cn-north-1:123456789012:a1/dev_2").unwrap(),
            "arn:aws-cn:execute-api:cn-north-1:123456789012:a1/dev_2/*/*"
        );
    }

    #[test]
    fn anything_but_an_execute_api_method_arn_has_no_resource() {
        for arn in [
            "",
            "not an arn",
            "arn:aws:execute-api:us-east-1:123456789012",
            "arn:aws:execute-api:us-east-1:123456789012:abc123",
            "arn:aws:execute-api:us-east-1:123456789012:abc123/",
            "arn:aws:execute-api:us-east-1:123456789012:/prod/GET/x",
            "arn:aws:lambda:us-east-1:123456789012:abc123/prod/GET/x",
            "arn:aws:execute-api:us-east-1:12345678901a:abc123/prod/GET/x",
            "arn:aws:execute-api:us-east-1::abc123/prod/GET/x",
            "arn:aws:execute-api:us-east-1:123456789012:*/prod/GET/x",
            "arn:aws:execute-api:us-east-1:123456789012:abc123/*/GET/x",
            "arn:aws:execute-api:*:123456789012:abc123/prod/GET/x",
            "xarn:aws:execute-api:us-east-1:123456789012:abc123/prod/GET/x",
        ] {
            assert_eq!(stage_resource(arn), None, "{arn}");
        }
    }

    #[test]
    fn the_policy_is_one_allow_of_invoke() {
        let policy = allow("arn:aws:execute-api:r:1:a/s/*/*".to_owned());
        assert_eq!(
            serde_json::to_value(&policy).unwrap(),
            serde_json::json!({
                "Version": "2012-10-17",
                "Statement": [{
                    "Action": ["execute-api:Invoke"],
                    "Effect": "Allow",
                    "Resource": ["arn:aws:execute-api:r:1:a/s/*/*"]
                }]
            })
        );
    }
}
