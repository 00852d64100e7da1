//! Whether a kind lives in a namespace, known as kubectl knows it: built-in kinds from
//! the API's own metadata (each k8s-openapi type says its scope), custom kinds from their
//! CustomResourceDefinition in the same stream, the rest from `--cluster-scoped` and
//! `--namespaced`. A kind known none of these ways is unknown, and a manifest object of it
//! is never moved (a cluster-scoped object given a namespace is an error to kubectl).

use std::any::TypeId;
use std::collections::HashMap;

use k8s_openapi::{NamespaceResourceScope, Resource};
use serde_json::Value;

/// Where objects of a kind live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Namespaced,
    Cluster,
}

/// Scopes by (API group, kind); the core group is "".
#[derive(Debug, Clone)]
pub struct Scopes {
    known: HashMap<(String, String), Scope>,
    /// Declared by kind alone (`--cluster-scoped GatewayClass`), any group.
    by_kind: HashMap<String, Scope>,
}

fn scope_of<T: Resource + 'static>() -> ((String, String), Scope)
where
    T::Scope: 'static,
{
    let scope = if TypeId::of::<T::Scope>() == TypeId::of::<NamespaceResourceScope>() {
        Scope::Namespaced
    } else {
        Scope::Cluster
    };
    ((T::GROUP.to_owned(), T::KIND.to_owned()), scope)
}

macro_rules! builtin_scopes {
    ($($t:ty,)*) => {
        vec![$(scope_of::<$t>(),)*]
    };
}

impl Scopes {
    /// Every kind k8s-openapi (Kubernetes 1.37) knows, with its scope.
    pub fn builtin() -> Self {
        let known = builtin_scopes!(
            k8s_openapi::api::admissionregistration::v1::MutatingAdmissionPolicy,
            k8s_openapi::api::admissionregistration::v1::MutatingAdmissionPolicyBinding,
            k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration,
            k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicy,
            k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicyBinding,
            k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration,
            k8s_openapi::api::admissionregistration::v1alpha1::MutatingAdmissionPolicy,
            k8s_openapi::api::admissionregistration::v1alpha1::MutatingAdmissionPolicyBinding,
            k8s_openapi::api::admissionregistration::v1beta1::MutatingAdmissionPolicy,
            k8s_openapi::api::admissionregistration::v1beta1::MutatingAdmissionPolicyBinding,
            k8s_openapi::api::apiserverinternal::v1alpha1::StorageVersion,
            k8s_openapi::api::apps::v1::ControllerRevision,
            k8s_openapi::api::apps::v1::DaemonSet,
            k8s_openapi::api::apps::v1::Deployment,
            k8s_openapi::api::apps::v1::ReplicaSet,
            k8s_openapi::api::apps::v1::StatefulSet,
            k8s_openapi::api::authentication::v1::SelfSubjectReview,
            k8s_openapi::api::authentication::v1::TokenReview,
            k8s_openapi::api::authorization::v1::LocalSubjectAccessReview,
            k8s_openapi::api::authorization::v1::SelfSubjectAccessReview,
            k8s_openapi::api::authorization::v1::SelfSubjectRulesReview,
            k8s_openapi::api::authorization::v1::SubjectAccessReview,
            k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler,
            k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler,
            k8s_openapi::api::batch::v1::CronJob,
            k8s_openapi::api::batch::v1::Job,
            k8s_openapi::api::certificates::v1::CertificateSigningRequest,
            k8s_openapi::api::certificates::v1::ClusterTrustBundle,
            k8s_openapi::api::certificates::v1::PodCertificateRequest,
            k8s_openapi::api::certificates::v1beta1::ClusterTrustBundle,
            k8s_openapi::api::certificates::v1beta1::PodCertificateRequest,
            k8s_openapi::api::coordination::v1::Lease,
            k8s_openapi::api::coordination::v1alpha2::LeaseCandidate,
            k8s_openapi::api::coordination::v1beta1::LeaseCandidate,
            k8s_openapi::api::core::v1::Binding,
            k8s_openapi::api::core::v1::ComponentStatus,
            k8s_openapi::api::core::v1::ConfigMap,
            k8s_openapi::api::core::v1::Endpoints,
            k8s_openapi::api::core::v1::Event,
            k8s_openapi::api::core::v1::LimitRange,
            k8s_openapi::api::core::v1::Namespace,
            k8s_openapi::api::core::v1::Node,
            k8s_openapi::api::core::v1::PersistentVolume,
            k8s_openapi::api::core::v1::PersistentVolumeClaim,
            k8s_openapi::api::core::v1::Pod,
            k8s_openapi::api::core::v1::PodTemplate,
            k8s_openapi::api::core::v1::ReplicationController,
            k8s_openapi::api::core::v1::ResourceQuota,
            k8s_openapi::api::core::v1::Secret,
            k8s_openapi::api::core::v1::Service,
            k8s_openapi::api::core::v1::ServiceAccount,
            k8s_openapi::api::discovery::v1::EndpointSlice,
            k8s_openapi::api::events::v1::Event,
            k8s_openapi::api::flowcontrol::v1::FlowSchema,
            k8s_openapi::api::flowcontrol::v1::PriorityLevelConfiguration,
            k8s_openapi::api::lifecycle::v1alpha1::Eviction,
            k8s_openapi::api::lifecycle::v1alpha1::EvictionRequest,
            k8s_openapi::api::networking::v1::IPAddress,
            k8s_openapi::api::networking::v1::Ingress,
            k8s_openapi::api::networking::v1::IngressClass,
            k8s_openapi::api::networking::v1::NetworkPolicy,
            k8s_openapi::api::networking::v1::ServiceCIDR,
            k8s_openapi::api::node::v1::RuntimeClass,
            k8s_openapi::api::policy::v1::PodDisruptionBudget,
            k8s_openapi::api::rbac::v1::ClusterRole,
            k8s_openapi::api::rbac::v1::ClusterRoleBinding,
            k8s_openapi::api::rbac::v1::Role,
            k8s_openapi::api::rbac::v1::RoleBinding,
            k8s_openapi::api::resource::v1::DeviceClass,
            k8s_openapi::api::resource::v1::DeviceTaintRule,
            k8s_openapi::api::resource::v1::ResourceClaim,
            k8s_openapi::api::resource::v1::ResourceClaimTemplate,
            k8s_openapi::api::resource::v1::ResourceSlice,
            k8s_openapi::api::resource::v1alpha3::DeviceTaintRule,
            k8s_openapi::api::resource::v1alpha3::ResourcePoolStatusRequest,
            k8s_openapi::api::resource::v1beta1::DeviceClass,
            k8s_openapi::api::resource::v1beta1::ResourceClaim,
            k8s_openapi::api::resource::v1beta1::ResourceClaimTemplate,
            k8s_openapi::api::resource::v1beta1::ResourceSlice,
            k8s_openapi::api::resource::v1beta2::DeviceClass,
            k8s_openapi::api::resource::v1beta2::DeviceTaintRule,
            k8s_openapi::api::resource::v1beta2::ResourceClaim,
            k8s_openapi::api::resource::v1beta2::ResourceClaimTemplate,
            k8s_openapi::api::resource::v1beta2::ResourceSlice,
            k8s_openapi::api::scheduling::v1::PriorityClass,
            k8s_openapi::api::scheduling::v1alpha3::CompositePodGroup,
            k8s_openapi::api::scheduling::v1alpha3::PodGroup,
            k8s_openapi::api::scheduling::v1alpha3::Workload,
            k8s_openapi::api::scheduling::v1beta1::PodGroup,
            k8s_openapi::api::scheduling::v1beta1::Workload,
            k8s_openapi::api::storage::v1::CSIDriver,
            k8s_openapi::api::storage::v1::CSINode,
            k8s_openapi::api::storage::v1::CSIStorageCapacity,
            k8s_openapi::api::storage::v1::StorageClass,
            k8s_openapi::api::storage::v1::VolumeAttachment,
            k8s_openapi::api::storage::v1::VolumeAttributesClass,
            k8s_openapi::api::storagemigration::v1::StorageVersionMigration,
            k8s_openapi::api::storagemigration::v1beta1::StorageVersionMigration,
            k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
            k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService,
        )
        .into_iter()
        .collect();
        Self {
            known,
            by_kind: HashMap::new(),
        }
    }

    /// Learn the scope of every custom kind whose CustomResourceDefinition is in
    /// `objects` (`spec.group`, `spec.names.kind`, `spec.scope`).
    pub fn learn_crds<'a>(&mut self, objects: impl IntoIterator<Item = &'a Value>) {
        for object in objects {
            if object["kind"] != "CustomResourceDefinition"
                || !object["apiVersion"]
                    .as_str()
                    .is_some_and(|v| v.starts_with("apiextensions.k8s.io/"))
            {
                continue;
            }
            let spec = &object["spec"];
            let (Some(group), Some(kind)) =
                (spec["group"].as_str(), spec["names"]["kind"].as_str())
            else {
                continue;
            };
            let scope = match spec["scope"].as_str() {
                Some("Cluster") => Scope::Cluster,
                Some("Namespaced") => Scope::Namespaced,
                _ => continue,
            };
            self.known
                .insert((group.to_owned(), kind.to_owned()), scope);
        }
    }

    /// Declare the scope of `kind`, written `Kind` (any group) or `Kind.group`.
    pub fn declare(&mut self, kind: &str, scope: Scope) {
        match kind.split_once('.') {
            Some((kind, group)) => {
                self.known
                    .insert((group.to_owned(), kind.to_owned()), scope);
            }
            None => {
                self.by_kind.insert(kind.to_owned(), scope);
            }
        }
    }

    /// The scope of `kind` in API group `group`, if known.
    pub fn of(&self, group: &str, kind: &str) -> Option<Scope> {
        self.known
            .get(&(group.to_owned(), kind.to_owned()))
            .or_else(|| self.by_kind.get(kind))
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_kinds_have_their_api_scope() {
        let scopes = Scopes::builtin();
        assert_eq!(scopes.of("", "ConfigMap"), Some(Scope::Namespaced));
        assert_eq!(scopes.of("apps", "Deployment"), Some(Scope::Namespaced));
        assert_eq!(scopes.of("", "Namespace"), Some(Scope::Cluster));
        assert_eq!(
            scopes.of("rbac.authorization.k8s.io", "ClusterRole"),
            Some(Scope::Cluster)
        );
        assert_eq!(
            scopes.of("apiextensions.k8s.io", "CustomResourceDefinition"),
            Some(Scope::Cluster)
        );
        assert_eq!(scopes.of("gateway.networking.k8s.io", "GatewayClass"), None);
    }

    #[test]
    fn crds_in_the_stream_and_declarations_add_scopes() {
        let mut scopes = Scopes::builtin();
        let crd = serde_json::json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "spec": {"group": "gateway.networking.k8s.io", "names": {"kind": "GatewayClass"}, "scope": "Cluster"}});
        scopes.learn_crds([&crd]);
        assert_eq!(
            scopes.of("gateway.networking.k8s.io", "GatewayClass"),
            Some(Scope::Cluster)
        );
        scopes.declare("Widget", Scope::Namespaced);
        scopes.declare("Gadget.example.com", Scope::Cluster);
        assert_eq!(scopes.of("anything.io", "Widget"), Some(Scope::Namespaced));
        assert_eq!(scopes.of("example.com", "Gadget"), Some(Scope::Cluster));
        assert_eq!(scopes.of("other.com", "Gadget"), None);
    }
}
