//! Istio's message catalogue (`pkg/config/analysis/msg/messages.yaml`) as Rust data:
//! every code, level and template istioctl can print. A test keeps it equal to the YAML.

use super::message::{Level, MessageType};

/// Declares one constant per message type (documented by its description) and [`ALL`].
macro_rules! catalogue {
    ($($const:ident = $name:literal $code:literal $level:ident $description:literal $template:literal [$($arg:literal),*];)+) => {
        $(
            #[doc = $description]
            pub const $const: &MessageType = &MessageType {
                name: $name,
                code: $code,
                level: Level::$level,
                description: $description,
                template: $template,
                args: &[$($arg),*],
            };
        )+

        /// Every message type, ordered by code.
        pub const ALL: &[&MessageType] = &[$($const),+];
    };
}

catalogue! {
    INTERNAL_ERROR = "InternalError" "IST0001" Error
        "There was an internal error in the toolchain. This is almost always a bug in the implementation."
        "Internal error: %v"
        ["detail"];
    DEPRECATED = "Deprecated" "IST0002" Warning
        "A feature that the configuration is depending on is now deprecated."
        "Deprecated: %s"
        ["detail"];
    REFERENCED_RESOURCE_NOT_FOUND = "ReferencedResourceNotFound" "IST0101" Error
        "A resource being referenced does not exist."
        "Referenced %s not found: %q"
        ["reftype", "refval"];
    NAMESPACE_NOT_INJECTED = "NamespaceNotInjected" "IST0102" Info
        "A namespace is not enabled for Istio injection."
        "The namespace is not enabled for Istio injection. Run 'kubectl label namespace %s istio-injection=enabled' to enable it, or 'kubectl label namespace %s istio-injection=disabled' to explicitly mark it as not needing injection."
        ["namespace", "namespace2"];
    POD_MISSING_PROXY = "PodMissingProxy" "IST0103" Warning
        "A pod is missing the Istio proxy."
        "The pod %s is missing the Istio proxy. This can often be resolved by restarting or redeploying the workload."
        ["podName"];
    SCHEMA_VALIDATION_ERROR = "SchemaValidationError" "IST0106" Error
        "The resource has a schema validation error."
        "Schema validation error: %v"
        ["err"];
    MISPLACED_ANNOTATION = "MisplacedAnnotation" "IST0107" Warning
        "An Istio annotation is applied to the wrong kind of resource."
        "Misplaced annotation: %s can only be applied to %s"
        ["annotation", "kind"];
    UNKNOWN_ANNOTATION = "UnknownAnnotation" "IST0108" Warning
        "An Istio annotation is not recognized for any kind of resource"
        "Unknown annotation: %s"
        ["annotation"];
    CONFLICTING_MESH_GATEWAY_VIRTUAL_SERVICE_HOSTS = "ConflictingMeshGatewayVirtualServiceHosts" "IST0109" Error
        "Conflicting hosts on VirtualServices associated with mesh gateway"
        "The VirtualServices %s associated with mesh gateway define the same host %s which can lead to undefined behavior. This can be fixed by merging the conflicting VirtualServices into a single resource."
        ["virtualServices", "host"];
    CONFLICTING_SIDECAR_WORKLOAD_SELECTORS = "ConflictingSidecarWorkloadSelectors" "IST0110" Error
        "A Sidecar resource selects the same workloads as another Sidecar resource"
        "The Sidecars %v in namespace %q select the same workload pod %q, which can lead to undefined behavior."
        ["conflictingSidecars", "namespace", "workloadPod"];
    MULTIPLE_SIDECARS_WITHOUT_WORKLOAD_SELECTORS = "MultipleSidecarsWithoutWorkloadSelectors" "IST0111" Error
        "More than one sidecar resource in a namespace has no workload selector"
        "The Sidecars %v in namespace %q have no workload selector, which can lead to undefined behavior."
        ["conflictingSidecars", "namespace"];
    VIRTUAL_SERVICE_DESTINATION_PORT_SELECTOR_REQUIRED = "VirtualServiceDestinationPortSelectorRequired" "IST0112" Error
        "A VirtualService routes to a service with more than one port exposed, but does not specify which to use."
        "This VirtualService routes to a service %q that exposes multiple ports %v. Specifying a port in the destination is required to disambiguate."
        ["destHost", "destPorts"];
    DEPLOYMENT_ASSOCIATED_TO_MULTIPLE_SERVICES = "DeploymentAssociatedToMultipleServices" "IST0116" Warning
        "The resulting pods of a service mesh deployment can't be associated with multiple services using the same port but different protocols."
        "This deployment %s is associated with multiple services using port %d but different protocols: %v"
        ["deployment", "port", "services"];
    PORT_NAME_IS_NOT_UNDER_NAMING_CONVENTION = "PortNameIsNotUnderNamingConvention" "IST0118" Info
        "Port name is not under naming convention. Protocol detection is applied to the port."
        "Port name %s (port: %d, targetPort: %s) doesn't follow the naming convention of Istio port."
        ["portName", "port", "targetPort"];
    NAMESPACE_MULTIPLE_INJECTION_LABELS = "NamespaceMultipleInjectionLabels" "IST0123" Warning
        "A namespace has more than one type of injection labels"
        "The namespace has more than one type of injection labels %v, which may lead to undefined behavior. Make sure only one injection label exists."
        ["labels"];
    INVALID_ANNOTATION = "InvalidAnnotation" "IST0125" Warning
        "An Istio annotation that is not valid"
        "Invalid annotation %s: %s"
        ["annotation", "problem"];
    UNKNOWN_MESH_NETWORKS_SERVICE_REGISTRY = "UnknownMeshNetworksServiceRegistry" "IST0126" Error
        "A service registry in Mesh Networks is unknown"
        "Unknown service registry %s in network %s"
        ["serviceregistry", "network"];
    NO_MATCHING_WORKLOADS_FOUND = "NoMatchingWorkloadsFound" "IST0127" Warning
        "There aren't workloads matching the resource labels"
        "No matching workloads for this resource with the following labels: %s"
        ["labels"];
    NO_SERVER_CERTIFICATE_VERIFICATION_DESTINATION_LEVEL = "NoServerCertificateVerificationDestinationLevel" "IST0128" Warning
        "No caCertificates are set in DestinationRule, this results in no verification of presented server certificate."
        "DestinationRule %s in namespace %s has TLS mode set to %s but no caCertificates are set to validate server identity for host: %s"
        ["destinationrule", "namespace", "mode", "host"];
    NO_SERVER_CERTIFICATE_VERIFICATION_PORT_LEVEL = "NoServerCertificateVerificationPortLevel" "IST0129" Warning
        "No caCertificates are set in DestinationRule, this results in no verification of presented server certificate for traffic to a given port."
        "DestinationRule %s in namespace %s has TLS mode set to %s but no caCertificates are set to validate server identity for host: %s at port %s"
        ["destinationrule", "namespace", "mode", "host", "port"];
    VIRTUAL_SERVICE_UNREACHABLE_RULE = "VirtualServiceUnreachableRule" "IST0130" Warning
        "A VirtualService rule will never be used because a previous rule uses the same match."
        "VirtualService rule %v not used (%s)."
        ["ruleno", "reason"];
    VIRTUAL_SERVICE_INEFFECTIVE_MATCH = "VirtualServiceIneffectiveMatch" "IST0131" Info
        "A VirtualService rule match duplicates a match in a previous rule."
        "VirtualService rule %v match %v is not used (duplicate/overlapping match in rule %v)."
        ["ruleno", "matchno", "dupno"];
    VIRTUAL_SERVICE_HOST_NOT_FOUND_IN_GATEWAY = "VirtualServiceHostNotFoundInGateway" "IST0132" Warning
        "Host defined in VirtualService not found in Gateway."
        "one or more host %v defined in VirtualService %s not found in Gateway %s."
        ["host", "virtualservice", "gateway"];
    SCHEMA_WARNING = "SchemaWarning" "IST0133" Warning
        "The resource has a schema validation warning."
        "Schema validation warning: %v"
        ["err"];
    SERVICE_ENTRY_ADDRESSES_REQUIRED = "ServiceEntryAddressesRequired" "IST0134" Warning
        "Virtual IP addresses are required for ports serving TCP (or unset) protocol when PILOT_ENABLE_IP_AUTOALLOCATE is not set on a proxy"
        "ServiceEntry addresses are required for this protocol."
        [];
    DEPRECATED_ANNOTATION = "DeprecatedAnnotation" "IST0135" Info
        "A resource is using a deprecated Istio annotation."
        "Annotation %q has been deprecated%s and may not work in future Istio versions."
        ["annotation", "extra"];
    ALPHA_ANNOTATION = "AlphaAnnotation" "IST0136" Info
        "An Istio annotation may not be suitable for production."
        "Annotation %q is part of an alpha-phase feature and may be incompletely supported."
        ["annotation"];
    DEPLOYMENT_CONFLICTING_PORTS = "DeploymentConflictingPorts" "IST0137" Warning
        "Two services selecting the same workload with the same targetPort MUST refer to the same port."
        "This deployment %s is associated with multiple services %v using targetPort %q but different ports: %v."
        ["deployment", "services", "targetPort", "ports"];
    GATEWAY_DUPLICATE_CERTIFICATE = "GatewayDuplicateCertificate" "IST0138" Warning
        "Duplicate certificate in multiple gateways may cause 404s if clients re-use HTTP2 connections."
        "Duplicate certificate in multiple gateways %v may cause 404s if clients re-use HTTP2 connections."
        ["gateways"];
    INVALID_WEBHOOK = "InvalidWebhook" "IST0139" Error
        "Webhook is invalid or references a control plane service that does not exist."
        "%v"
        ["error"];
    INGRESS_ROUTE_RULES_NOT_AFFECTED = "IngressRouteRulesNotAffected" "IST0140" Warning
        "Route rules have no effect on ingress gateway requests"
        "Subset in virtual service %s has no effect on ingress gateway %s requests"
        ["virtualservicesubset", "virtualservice"];
    INSUFFICIENT_PERMISSIONS = "InsufficientPermissions" "IST0141" Error
        "Required permissions to install Istio are missing."
        "Missing required permission to create resource %v (%v)"
        ["resource", "error"];
    UNSUPPORTED_KUBERNETES_VERSION = "UnsupportedKubernetesVersion" "IST0142" Error
        "The Kubernetes version is not supported"
        "The Kubernetes Version %q is lower than the minimum version: %v"
        ["version", "minimumVersion"];
    LOCALHOST_LISTENER = "LocalhostListener" "IST0143" Error
        "A port exposed in a Service is bound to a localhost address"
        "Port %v is exposed in a Service but listens on localhost. It will not be exposed to other pods."
        ["port"];
    INVALID_APPLICATION_UID = "InvalidApplicationUID" "IST0144" Warning
        "Application pods should not run as user ID (UID) 1337"
        "User ID (UID) 1337 is reserved for the sidecar proxy."
        [];
    CONFLICTING_GATEWAYS = "ConflictingGateways" "IST0145" Error
        "Gateway should not have the same selector, port and matched hosts of server"
        "Conflict with gateways %s (workload selector %s, port %s, hosts %v)."
        ["gateway", "selector", "portnumber", "hosts"];
    IMAGE_AUTO_WITHOUT_INJECTION_WARNING = "ImageAutoWithoutInjectionWarning" "IST0146" Warning
        "Deployments with `image: auto` should be targeted for injection."
        "%s %s contains `image: auto` but does not match any Istio injection webhook selectors."
        ["resourceType", "resourceName"];
    IMAGE_AUTO_WITHOUT_INJECTION_ERROR = "ImageAutoWithoutInjectionError" "IST0147" Error
        "Pods with `image: auto` should be targeted for injection."
        "%s %s contains `image: auto` but does not match any Istio injection webhook selectors."
        ["resourceType", "resourceName"];
    NAMESPACE_INJECTION_ENABLED_BY_DEFAULT = "NamespaceInjectionEnabledByDefault" "IST0148" Info
        "user namespace should be injectable if Istio is installed with enableNamespacesByDefault enabled and neither injection label is set."
        "is enabled for Istio injection, as Istio is installed with enableNamespacesByDefault as true."
        [];
    JWT_CLAIM_BASED_ROUTING_WITHOUT_REQUEST_AUTH_N = "JwtClaimBasedRoutingWithoutRequestAuthN" "IST0149" Error
        "Virtual service using JWT claim based routing without request authentication."
        "The virtual service uses the JWT claim based routing (key: %s) but found no request authentication for the gateway (%s) pod (%s). The request authentication must first be applied for the gateway pods to validate the JWT token and make the claims available for routing."
        ["key", "gateway", "pod"];
    EXTERNAL_NAME_SERVICE_TYPE_INVALID_PORT_NAME = "ExternalNameServiceTypeInvalidPortName" "IST0150" Warning
        "Proxy may prevent tcp named ports and unmatched traffic for ports serving TCP protocol from being forwarded correctly for ExternalName services."
        "Port name for ExternalName service is invalid. Proxy may prevent tcp named ports and unmatched traffic for ports serving TCP protocol from being forwarded correctly"
        [];
    ENVOY_FILTER_USES_RELATIVE_OPERATION = "EnvoyFilterUsesRelativeOperation" "IST0151" Warning
        "This EnvoyFilter does not have a priority and has a relative patch operation set which can cause the EnvoyFilter not to be applied. Using the INSERT_FIRST or ADD option or setting the priority may help in ensuring the EnvoyFilter is applied correctly."
        "This EnvoyFilter does not have a priority and has a relative patch operation set which can cause the EnvoyFilter not to be applied. Using the INSERT_FIRST of ADD option or setting the priority may help in ensuring the EnvoyFilter is applied correctly."
        [];
    ENVOY_FILTER_USES_REPLACE_OPERATION_INCORRECTLY = "EnvoyFilterUsesReplaceOperationIncorrectly" "IST0152" Error
        "The REPLACE operation is only valid for HTTP_FILTER and NETWORK_FILTER."
        "The REPLACE operation is only valid for HTTP_FILTER and NETWORK_FILTER."
        [];
    ENVOY_FILTER_USES_ADD_OPERATION_INCORRECTLY = "EnvoyFilterUsesAddOperationIncorrectly" "IST0153" Error
        "The ADD operation will be ignored when applyTo is set to ROUTE_CONFIGURATION, or HTTP_ROUTE."
        "The ADD operation will be ignored when applyTo is set to ROUTE_CONFIGURATION, or HTTP_ROUTE."
        [];
    ENVOY_FILTER_USES_REMOVE_OPERATION_INCORRECTLY = "EnvoyFilterUsesRemoveOperationIncorrectly" "IST0154" Error
        "The REMOVE operation will be ignored when applyTo is set to ROUTE_CONFIGURATION, or HTTP_ROUTE."
        "The REMOVE operation will be ignored when applyTo is set to ROUTE_CONFIGURATION, or HTTP_ROUTE."
        [];
    ENVOY_FILTER_USES_RELATIVE_OPERATION_WITH_PROXY_VERSION = "EnvoyFilterUsesRelativeOperationWithProxyVersion" "IST0155" Warning
        "This EnvoyFilter does not have a priority and has a relative patch operation (NSTERT_BEFORE/AFTER, REPLACE, MERGE, DELETE) and proxyVersion set which can cause the EnvoyFilter not to be applied during an upgrade. Using the INSERT_FIRST or ADD option or setting the priority may help in ensuring the EnvoyFilter is applied correctly."
        "This EnvoyFilter does not have a priority and has a relative patch operation (NSTERT_BEFORE/AFTER, REPLACE, MERGE, DELETE) and proxyVersion set which can cause the EnvoyFilter not to be applied during an upgrade. Using the INSERT_FIRST or ADD option or setting the priority may help in ensuring the EnvoyFilter is applied correctly."
        [];
    UNSUPPORTED_GATEWAY_API_VERSION = "UnsupportedGatewayAPIVersion" "IST0156" Error
        "The Gateway API CRD version is not supported"
        "The Gateway API CRD version %v is lower than the minimum version: %v"
        ["version", "minimumVersion"];
    FUTURE_UNSUPPORTED_GATEWAY_API_VERSION = "FutureUnsupportedGatewayAPIVersion" "IST0172" Warning
        "The Gateway API CRD version will not be supported in the future"
        "The Gateway API CRD version %v is lower than the minimum version: %v"
        ["version", "minimumVersion"];
    INVALID_TELEMETRY_PROVIDER = "InvalidTelemetryProvider" "IST0157" Warning
        "The Telemetry with empty providers will be ignored"
        "The Telemetry %v in namespace %q with empty providers will be ignored."
        ["name", "namespace"];
    PODS_ISTIO_PROXY_IMAGE_MISMATCH_IN_NAMESPACE = "PodsIstioProxyImageMismatchInNamespace" "IST0158" Warning
        "The Istio proxy image of the pods running in the namespace do not match the image defined in the injection configuration."
        "The Istio proxy images of the pods running in the namespace do not match the image defined in the injection configuration (pod names: %v). This often happens after upgrading the Istio control-plane and can be fixed by redeploying the pods."
        ["podNames"];
    CONFLICTING_TELEMETRY_WORKLOAD_SELECTORS = "ConflictingTelemetryWorkloadSelectors" "IST0159" Error
        "A Telemetry resource selects the same workloads as another Telemetry resource"
        "The Telemetries %v in namespace %q select the same workload pod %q, which can lead to undefined behavior."
        ["conflictingTelemetries", "namespace", "workloadPod"];
    MULTIPLE_TELEMETRIES_WITHOUT_WORKLOAD_SELECTORS = "MultipleTelemetriesWithoutWorkloadSelectors" "IST0160" Error
        "More than one telemetry resource in a namespace has no workload selector"
        "The Telemetries %v in namespace %q have no workload selector, which can lead to undefined behavior."
        ["conflictingTelemetries", "namespace"];
    INVALID_GATEWAY_CREDENTIAL = "InvalidGatewayCredential" "IST0161" Error
        "The credential provided for the Gateway resource is invalid"
        "The credential referenced by the Gateway %s in namespace %s is invalid, which can cause the traffic not to work as expected."
        ["gatewayName", "gatewayNamespace"];
    GATEWAY_PORT_NOT_DEFINED_ON_SERVICE = "GatewayPortNotDefinedOnService" "IST0162" Warning
        "Gateway port not exposed by service"
        "The gateway is listening on a target port (port %d) that is not defined in the Service associated with its workload instances (Pod selector %s). If you need to access the gateway port through the gateway Service, it will not be available."
        ["port", "selector"];
    INVALID_EXTERNAL_CONTROL_PLANE_CONFIG = "InvalidExternalControlPlaneConfig" "IST0163" Warning
        "Address for the ingress gateway on the external control plane is not valid"
        "The hostname (%s) that was provided for the webhook (%s) to reach the ingress gateway on the external control plane cluster %s. Traffic may not flow properly."
        ["hostname", "webhook", "msg"];
    EXTERNAL_CONTROL_PLANE_ADDRESS_IS_NOT_A_HOSTNAME = "ExternalControlPlaneAddressIsNotAHostname" "IST0164" Info
        "Address for the ingress gateway on the external control plane is an IP address and not a hostname"
        "The address (%s) that was provided for the webhook (%s) to reach the ingress gateway on the external control plane cluster is an IP address. This is not recommended for a production environment."
        ["hostname", "webhook"];
    REFERENCED_INTERNAL_GATEWAY = "ReferencedInternalGateway" "IST0165" Warning
        "VirtualServices should not reference internal Gateways."
        "Gateway reference in VirtualService %s is to an implementation-generated internal Gateway: %s."
        ["virtualservice", "gateway"];
    INEFFECTIVE_SELECTOR = "IneffectiveSelector" "IST0166" Warning
        "Selector has no effect when applied to Kubernetes Gateways."
        "Ineffective selector on Kubernetes Gateway %s. Use the TargetRef field instead."
        ["gateway"];
    INEFFECTIVE_POLICY = "IneffectivePolicy" "IST0167" Warning
        "The policy applied has no impact."
        "The policy has no impact: %s."
        ["reason"];
    UNKNOWN_UPGRADE_COMPATIBILITY = "UnknownUpgradeCompatibility" "IST0168" Warning
        "We cannot automatically detect whether a change is fully compatible or not"
        "The configuration %q changed in release %s, but compatibility cannot be automatically detected: %s. Or, install with `--set compatibilityVersion=%s` to retain the old default."
        ["field", "release", "info", "compatVersion"];
    UPDATE_INCOMPATIBILITY = "UpdateIncompatibility" "IST0169" Warning
        "The provided configuration object may be incompatible due to an upgrade"
        "The configuration %q changed in release %s: %s. Or, install with `--set compatibilityVersion=%s` to retain the old default."
        ["field", "release", "info", "compatVersion"];
    MULTI_CLUSTER_INCONSISTENT_SERVICE = "MultiClusterInconsistentService" "IST0170" Warning
        "The services live in different clusters under multi-cluster deployment model are inconsistent"
        "The service %v in namespace %q is inconsistent across clusters %q, which can lead to undefined behaviors. The inconsistent behaviors are: %v."
        ["serviceName", "namespace", "clusters", "error"];
    NEGATIVE_CONDITION_STATUS = "NegativeConditionStatus" "IST0171" Warning
        "A condition with a negative status is present"
        "A condition with a negative status is present: type=%s, reason=%s, message=%s."
        ["conditionType", "reason", "message"];
    DESTINATION_RULE_SUBSET_NOT_SELECT_PODS = "DestinationRuleSubsetNotSelectPods" "IST0173" Error
        "Subsets defined in destination does not select any pods."
        "The Subset %s defined in the DestinationRule does not select any pods. Which may lead to 503 UH (NoHealthyUpstream)."
        ["subset"];
    UNKNOWN_DESTINATION_RULE_HOST = "UnknownDestinationRuleHost" "IST0174" Warning
        "Host defined in destination rule does not match any services in the mesh."
        "The host %s defined in the DestinationRule does not match any services in the mesh."
        ["host"];
    JWKS_URI_FETCH_UNRESTRICTED = "JwksUriFetchUnrestricted" "IST0175" Warning
        "RequestAuthentication resources exist but BLOCKED_CIDRS_IN_JWKS_URIS is not configured on istiod."
        "BLOCKED_CIDRS_IN_JWKS_URIS is not configured but %d RequestAuthentication resource(s) exist (%s). Consider configuring it to restrict JWKS URI fetches to trusted networks."
        ["count", "names"];
    GATEWAY_APICRD_VERSION_BELOW_MINIMUM = "GatewayAPICRDVersionBelowMinimum" "IST0176" Warning
        "A Gateway API CRD is installed at a version below the minimum required by this Istio version. Resources of this kind will not be processed."
        "Gateway API CRD %q is at version %q but Istio requires at least %q; resources of this kind will not be processed. Upgrade the Gateway API CRDs to satisfy the minimum version."
        ["crd", "installedVersion", "minimumVersion"];
    CONFLICTING_SERVICE_ENTRY_PROTOCOL = "ConflictingServiceEntryProtocol" "IST0177" Warning
        "Multiple ServiceEntries define the same host and port with conflicting protocols."
        "Multiple ServiceEntries (%s) define the same host %q and port %d with conflicting protocols (%s)."
        ["serviceEntryNames", "host", "port", "protocols"];
}
