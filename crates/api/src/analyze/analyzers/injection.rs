//! Sidecar injection checks: namespaces not enabled (or enabled twice over), pods
//! without the sidecar their namespace promises, sidecars older than the injector's
//! image, and `image: auto` templates no injector will fill in.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use serde::Deserialize;
use serde_json::Value;

use super::util::{
    INJECTION_LABEL, PROXY_CONTAINER, REVISION_LABEL, SIDECAR_INJECT, go_list, selects,
};
use super::webhook::{Webhook, WebhookConfiguration};
use crate::analyze::{Analyzer, Collection, Context, Entry, Message, Metadata, args, catalogue};
use crate::networking::ProxyConfig;
use crate::types::Labels;
use crate::{Kind, Resource};

/// The namespace label that puts a namespace in ambient mode.
const DATAPLANE_MODE_LABEL: &str = "istio.io/dataplane-mode";

/// The name of the sidecar injector's ConfigMap for a revision.
fn injector_config_map(revision: &str) -> String {
    match revision {
        "" | "default" => "istio-sidecar-injector".into(),
        revision => format!("istio-sidecar-injector-{revision}"),
    }
}

/// The injector's Helm values (the ConfigMap's `values` key), as JSON.
fn injector_values(ctx: &Context, name: &str) -> Option<Value> {
    ctx.decoded::<ConfigMapData>(Collection::CONFIG_MAP)
        .find(|(entry, _)| entry.name() == name)
        .map(|(_, cm)| values_of(&cm))
}

/// The `data` of a ConfigMap.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ConfigMapData {
    data: BTreeMap<String, String>,
}

fn values_of(cm: &ConfigMapData) -> Value {
    cm.data
        .get("values")
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or(Value::Null)
}

/// The pod's containers and init containers (where native sidecars run).
fn all_containers(spec: &PodSpec) -> impl Iterator<Item = &Container> {
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
}

/// The namespaces' labels by name; an object with no namespace lives in `default`.
fn namespace_labels<'a>(ctx: &'a Context, namespace: &str) -> Option<&'a Labels> {
    let namespace = if namespace.is_empty() {
        "default"
    } else {
        namespace
    };
    ctx.find(Collection::of(Kind::Namespace), "", namespace)?
        .meta()
        .labels
        .as_ref()
}

/// `injection.Analyzer`: namespaces without injection labels, with contradicting
/// ones, and pods of injected namespaces running without a sidecar.
pub struct Injection;

impl Analyzer for Injection {
    fn metadata(&self) -> Metadata {
        Metadata {
            name: "injection.Analyzer".into(),
            description: "Checks conditions related to Istio sidecar injection",
            inputs: vec![
                Collection::of(Kind::Namespace),
                Collection::of(Kind::Pod),
                Collection::CONFIG_MAP,
            ],
        }
    }

    fn analyze(&self, ctx: &Context, out: &mut Vec<Message>) {
        // Istio keeps the last injector setting read across namespaces; so does this.
        let mut enabled_by_default = false;
        let mut injected = Vec::new();
        for entry in ctx.collection(Collection::of(Kind::Namespace)) {
            let ns = entry.name();
            if ns == ctx.istio_namespace() {
                continue;
            }
            let legacy = entry.label(INJECTION_LABEL);
            let revision = entry.label(REVISION_LABEL);
            let mut labels: Vec<String> = legacy
                .map(|v| format!("{INJECTION_LABEL}={v}"))
                .into_iter()
                .collect();
            if legacy.is_none_or(|v| v == "enabled") {
                for label in [REVISION_LABEL, DATAPLANE_MODE_LABEL] {
                    if let Some(v) = entry.label(label) {
                        labels.push(format!("{label}={v}"));
                    }
                }
            }
            if labels.len() > 1 {
                out.push(entry.message_at(
                    "metadata.name",
                    catalogue::NAMESPACE_MULTIPLE_INJECTION_LABELS,
                    args![go_list(&labels)],
                ));
            }
            if entry.label(DATAPLANE_MODE_LABEL) == Some("ambient") {
                continue;
            }
            if let Some(values) =
                injector_values(ctx, &injector_config_map(revision.unwrap_or_default()))
            {
                enabled_by_default = values["sidecarInjectorWebhook"]["enableNamespacesByDefault"]
                    .as_bool()
                    .unwrap_or(false);
            }
            if legacy.unwrap_or_default().is_empty() && revision.is_none() {
                out.push(if enabled_by_default {
                    entry.message(catalogue::NAMESPACE_INJECTION_ENABLED_BY_DEFAULT, args![])
                } else {
                    entry.message_at(
                        "metadata.name",
                        catalogue::NAMESPACE_NOT_INJECTED,
                        args![ns, ns],
                    )
                });
                continue;
            }
            if legacy == Some("enabled") {
                injected.push(ns);
            }
        }
        for (entry, pod) in ctx.each::<Pod>() {
            if !injected.contains(&entry.namespace()) {
                continue;
            }
            let opt_out = entry
                .label(SIDECAR_INJECT)
                .or(entry.annotation(SIDECAR_INJECT));
            if opt_out.is_some_and(|v| v.eq_ignore_ascii_case("false")) {
                continue;
            }
            let Some(spec) = &pod.spec else { continue };
            if spec.host_network == Some(true) {
                continue;
            }
            let proxy = all_containers(spec).find(|c| c.name == PROXY_CONTAINER);
            if proxy
                .and_then(|c| c.image.as_deref())
                .unwrap_or_default()
                .is_empty()
            {
                let name = format!("{}/{}", entry.namespace(), entry.name());
                out.push(entry.message(catalogue::POD_MISSING_PROXY, args![name]));
            }
        }
    }
}

/// `injection.ImageAnalyzer`: namespaces whose pods run a sidecar image other than the
/// one their injector (by revision) now injects.
pub struct Image;

/// The image an injector's values inject (`global.proxy.image`, qualified by
/// `global.hub` and `global.tag` unless it is a full reference).
fn injected_image(values: &Value) -> String {
    let global = &values["global"];
    let image = global["proxy"]["image"].as_str().unwrap_or_default();
    if image.contains('/') {
        return image.into();
    }
    let field = |name: &str| global[name].as_str().unwrap_or_default();
    format!("{}/{image}:{}", field("hub"), field("tag"))
}

/// The image variant (`distroless`…) a pod's sidecar uses: MeshConfig's default, then
/// the root namespace's ProxyConfig, the pod namespace's, a workload's selecting it,
/// and the pod's `proxy.istio.io/config` annotation, the last set winning
/// (`EffectiveProxyConfigResolver.ImageType`).
fn image_type(ctx: &Context, pod: &Entry) -> String {
    let mut variant = ctx
        .mesh()
        .default_config
        .image
        .as_ref()
        .map(|i| i.image_type.clone())
        .unwrap_or_default();
    let mut set = |v: Option<&str>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            variant = v.to_owned();
        }
    };
    let of = |pc: &ProxyConfig| pc.image.as_ref().map(|i| i.image_type.clone());
    let configs: Vec<(&Entry, &Resource<ProxyConfig>)> = ctx.each().collect();
    let root = ctx.mesh().root_namespace.as_str();
    for (entry, pc) in &configs {
        if entry.namespace() == root {
            set(of(&pc.spec).as_deref());
        }
    }
    for (entry, pc) in &configs {
        if entry.namespace() == pod.namespace()
            && entry.namespace() != root
            && pc.spec.selector.is_none()
        {
            set(of(&pc.spec).as_deref());
        }
    }
    for (entry, pc) in &configs {
        let Some(selector) = &pc.spec.selector else {
            continue;
        };
        let labels = pod.meta().labels.as_ref();
        if entry.namespace() == pod.namespace()
            && entry.namespace() != root
            && selects(&selector.match_labels, labels)
        {
            set(of(&pc.spec).as_deref());
        }
    }
    if let Some(config) = pod.annotation("proxy.istio.io/config") {
        let image: Option<Value> = serde_yaml_ng::from_str::<Value>(config).ok();
        set(image
            .as_ref()
            .and_then(|c| c["image"]["imageType"].as_str()));
    }
    if variant == "default" {
        String::new()
    } else {
        variant
    }
}

impl Analyzer for Image {
    fn metadata(&self) -> Metadata {
        Metadata {
            name: "injection.ImageAnalyzer".into(),
            description: "Checks the image of auto-injection configured with the running proxies on pods",
            inputs: vec![
                Collection::of(Kind::Namespace),
                Collection::of(Kind::Pod),
                Collection::CONFIG_MAP,
                Collection::MESH_CONFIG,
                Collection::of(Kind::ProxyConfig),
            ],
        }
    }

    fn analyze(&self, ctx: &Context, out: &mut Vec<Message>) {
        let images: BTreeMap<String, String> = ctx
            .decoded::<ConfigMapData>(Collection::CONFIG_MAP)
            .filter(|(entry, _)| entry.name().starts_with("istio-sidecar-injector"))
            .map(|(entry, cm)| (entry.name().to_owned(), injected_image(&values_of(&cm))))
            .collect();
        if images.is_empty() {
            return;
        }
        // Injected namespaces, each with the injector's ConfigMap for its revision.
        let mut injected: BTreeMap<&str, (&Entry, String)> = BTreeMap::new();
        for entry in ctx.collection(Collection::of(Kind::Namespace)) {
            let revision = match entry.label(REVISION_LABEL) {
                Some(revision) => revision,
                None if entry.label(INJECTION_LABEL) == Some("enabled") => "default",
                None => continue,
            };
            injected.insert(entry.name(), (entry, injector_config_map(revision)));
        }
        let mut mismatched: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (entry, pod) in ctx.each::<Pod>() {
            let Some((_, config_map)) = injected.get(entry.namespace()) else {
                continue;
            };
            // A pod naming its own sidecar image overrides the injector.
            if entry
                .annotation("sidecar.istio.io/proxyImage")
                .is_some_and(|i| !i.is_empty())
            {
                continue;
            }
            let Some(expected) = images.get(config_map) else {
                continue;
            };
            let variant = format!("{expected}-{}", image_type(ctx, entry));
            let spec = pod.spec.as_ref();
            for proxy in spec
                .into_iter()
                .flat_map(all_containers)
                .filter(|c| c.name == PROXY_CONTAINER)
            {
                let image = proxy.image.as_deref().unwrap_or_default();
                if image != expected && image != variant {
                    mismatched
                        .entry(entry.namespace())
                        .or_default()
                        .push(entry.name());
                }
            }
        }
        for (namespace, pods) in mismatched {
            let (entry, _) = injected[namespace];
            out.push(entry.message(
                catalogue::PODS_ISTIO_PROXY_IMAGE_MISMATCH_IN_NAMESPACE,
                args![go_list(&pods)],
            ));
        }
    }
}

/// `injection.ImageAutoAnalyzer`: pods with a sidecar of `image: auto` (a template
/// only injection completes), and Deployments with one that no Istio injection webhook
/// selects.
pub struct ImageAuto;

/// True when the pod spec has a sidecar placeholder of `image: auto`.
fn has_auto_image(spec: &PodSpec) -> bool {
    spec.containers
        .iter()
        .any(|c| c.name == PROXY_CONTAINER && c.image.as_deref() == Some("auto"))
}

impl Analyzer for ImageAuto {
    fn metadata(&self) -> Metadata {
        Metadata {
            name: "injection.ImageAutoAnalyzer".into(),
            description: "Makes sure that Pods and Deployments with `image: auto` are going to be injected",
            inputs: vec![
                Collection::of(Kind::Namespace),
                Collection::of(Kind::Pod),
                Collection::of(Kind::Deployment),
                Collection::MUTATING_WEBHOOK,
            ],
        }
    }

    fn analyze(&self, ctx: &Context, out: &mut Vec<Message>) {
        let webhooks: Vec<Webhook> = ctx
            .decoded::<WebhookConfiguration>(Collection::MUTATING_WEBHOOK)
            .flat_map(|(_, config)| config.webhooks)
            .filter(Webhook::is_istio)
            .collect();
        for (entry, pod) in ctx.each::<Pod>() {
            // A pod is created as written: `auto` is never replaced, whatever selects it.
            if pod.spec.as_ref().is_some_and(has_auto_image) {
                out.push(entry.message(
                    catalogue::IMAGE_AUTO_WITHOUT_INJECTION_ERROR,
                    args!["Pod", entry.name()],
                ));
            }
        }
        let empty = Labels::new();
        for (entry, deployment) in ctx.each::<Deployment>() {
            let template = &deployment.spec.template;
            if !template.spec.as_ref().is_some_and(has_auto_image) {
                continue;
            }
            let ns_labels = namespace_labels(ctx, entry.namespace()).unwrap_or(&empty);
            let pod_labels = template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.as_ref())
                .unwrap_or(&empty);
            if !webhooks.iter().any(|w| w.selects(ns_labels, pod_labels)) {
                out.push(entry.message(
                    catalogue::IMAGE_AUTO_WITHOUT_INJECTION_WARNING,
                    args!["Deployment", entry.name()],
                ));
            }
        }
    }
}
