//! RequestAuthentication → the `envoy.filters.http.jwt_authn` filter, as Istio's authn
//! policy applier writes it: one provider per JWT rule (`origins-N`), payloads in
//! dynamic metadata under `payload` for RBAC, and requirements that refuse an invalid
//! token (401) but let a request without one through to authorization.

use mizzen_api::security::JwtRule;
use mizzen_xds::pb::envoy::config::core::v3::{DataSource, data_source};
use mizzen_xds::pb::envoy::config::route::v3::{RouteMatch, route_match};
use mizzen_xds::pb::envoy::extensions::filters::http::jwt_authn::v3::{
    JwtAuthentication, JwtClaimToHeader, JwtHeader, JwtProvider, JwtRequirement,
    JwtRequirementAndList, JwtRequirementOrList, RequirementRule, jwt_provider,
    jwt_requirement::RequiresType, requirement_rule::RequirementType,
};
use mizzen_xds::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpFilter, http_filter,
};
use mizzen_xds::pb::google::protobuf::Empty;

use crate::model::security::request_authentications;
use crate::model::{Proxy, PushContext};
use crate::translate::authz::{JWT_FILTER, JWT_PAYLOAD};
use crate::translate::route::to_any;

/// The jwt_authn filter for `proxy`, or `None` when no RequestAuthentication selects it.
pub fn jwt_filter(push: &PushContext, proxy: &Proxy) -> Option<HttpFilter> {
    let rules: Vec<&JwtRule> =
        request_authentications(&push.config, &push.mesh.root_namespace, proxy)
            .into_iter()
            .flat_map(|policy| policy.spec.jwt_rules.iter())
            .collect();
    if rules.is_empty() {
        return None;
    }
    let config = jwt_authentication(push, &rules);
    Some(HttpFilter {
        name: JWT_FILTER.to_owned(),
        config_type: Some(http_filter::ConfigType::TypedConfig(to_any(&config))),
        ..HttpFilter::default()
    })
}

/// The filter's config: providers `origins-0…`, and one rule for every path requiring,
/// per provider, its token or none; with several providers also any one of them (a token
/// in a location providers share satisfies one of them).
fn jwt_authentication(push: &PushContext, rules: &[&JwtRule]) -> JwtAuthentication {
    let mut providers = std::collections::HashMap::new();
    let mut each_or_missing = Vec::new();
    let mut any_provider = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let name = format!("origins-{i}");
        providers.insert(name.clone(), provider(push, rule));
        let by_name = requirement(RequiresType::ProviderName(name));
        each_or_missing.push(requirement(RequiresType::RequiresAny(
            JwtRequirementOrList {
                requirements: vec![
                    by_name.clone(),
                    requirement(RequiresType::AllowMissing(Empty {})),
                ],
            },
        )));
        any_provider.push(by_name);
    }
    let requires = if each_or_missing.len() == 1 {
        each_or_missing.remove(0)
    } else {
        any_provider.push(requirement(RequiresType::RequiresAll(
            JwtRequirementAndList {
                requirements: each_or_missing,
            },
        )));
        requirement(RequiresType::RequiresAny(JwtRequirementOrList {
            requirements: any_provider,
        }))
    };
    JwtAuthentication {
        providers,
        rules: vec![RequirementRule {
            r#match: Some(RouteMatch {
                path_specifier: Some(route_match::PathSpecifier::Prefix("/".to_owned())),
                ..RouteMatch::default()
            }),
            requirement_type: Some(RequirementType::Requires(requires)),
        }],
        bypass_cors_preflight: true,
        ..JwtAuthentication::default()
    }
}

fn requirement(t: RequiresType) -> JwtRequirement {
    JwtRequirement {
        requires_type: Some(t),
    }
}

/// One rule's provider; keys inline, fetched by pilot for `jwksUri`.
fn provider(push: &PushContext, rule: &JwtRule) -> JwtProvider {
    let jwks = if rule.jwks.is_empty() {
        push.jwks.inline_for(&rule.jwks_uri).to_owned()
    } else {
        rule.jwks.clone()
    };
    JwtProvider {
        issuer: rule.issuer.clone(),
        audiences: rule.audiences.clone(),
        forward: rule.forward_original_token,
        forward_payload_header: rule.output_payload_to_header.clone(),
        payload_in_metadata: JWT_PAYLOAD.to_owned(),
        from_headers: rule
            .from_headers
            .iter()
            .map(|h| JwtHeader {
                name: h.name.clone(),
                value_prefix: h.prefix.clone(),
            })
            .collect(),
        from_params: rule.from_params.clone(),
        from_cookies: rule.from_cookies.clone(),
        claim_to_headers: rule
            .output_claim_to_headers
            .iter()
            .map(|c| JwtClaimToHeader {
                header_name: c.header.clone(),
                claim_name: c.claim.clone(),
                ..JwtClaimToHeader::default()
            })
            .collect(),
        jwks_source_specifier: Some(jwt_provider::JwksSourceSpecifier::LocalJwks(DataSource {
            specifier: Some(data_source::Specifier::InlineString(jwks)),
            ..DataSource::default()
        })),
        ..JwtProvider::default()
    }
}
