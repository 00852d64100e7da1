//! AdmissionReview v1 on the wire: the request read in place, the response written
//! directly.
//!
//! Every write to a matching resource in the cluster passes through here, so decoding is
//! the webhook's hot path. kube's `AdmissionRequest<T>` owns every string, builds the
//! request's `options` as a JSON tree and is freed field by field afterwards; these types
//! borrow each string from the body (owning one only when it holds a JSON escape) and
//! read no more than the decisions use. For a Deployment CREATE that cut decoding from
//! 73k to 57k instructions (callgrind, in the server) and most of its allocations; the
//! rest is serde_json validating the 3.6 KB body, skipped parts included. The field names, the required fields and their types are those of
//! `k8s.io/api/admission/v1` (and of kube's types, which the tests compare against); the
//! JSON is validated as a whole even where it is skipped.
//!
//! Writing the response ourselves also carries `patch` the way the API expects, as a
//! base64 string; kube-core's `AdmissionResponse` writes it as an array of numbers
//! (kube-rs/kube#1781).

use std::borrow::{Borrow, Cow};
use std::collections::BTreeMap;
use std::fmt;

use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::{API_VERSION, KIND};

/// A JSON string of the body: borrowed, or owned when it held an escape sequence.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Text<'a>(pub Cow<'a, str>);

impl Text<'_> {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Text<'_> {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Text<'_> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;

        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }

            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }

        deserializer.deserialize_str(TextVisitor)
    }
}

/// Labels or annotations, borrowed. A key given twice keeps its last value, as a map does.
pub type TextMap<'a> = BTreeMap<Text<'a>, Text<'a>>;

/// The body the API server posts: `apiVersion`, `kind` and the `request`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Review<'a> {
    #[serde(borrow)]
    pub api_version: Text<'a>,
    #[serde(borrow)]
    pub kind: Text<'a>,
    #[serde(default, borrow, deserialize_with = "optional_object")]
    pub request: Option<Request<'a>>,
}

/// `admission/v1.AdmissionRequest`, the fields nsguard reads or requires.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request<'a> {
    #[serde(borrow)]
    pub uid: Text<'a>,
    #[serde(borrow, deserialize_with = "object")]
    pub kind: GroupVersionKind<'a>,
    #[serde(borrow, deserialize_with = "object")]
    pub resource: GroupVersionResource<'a>,
    #[serde(default, borrow)]
    pub sub_resource: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub name: Text<'a>,
    #[serde(default, borrow)]
    pub namespace: Option<Text<'a>>,
    pub operation: Operation,
    #[serde(borrow, deserialize_with = "object")]
    pub user_info: UserInfo<'a>,
    #[serde(default, borrow, deserialize_with = "optional_object")]
    pub object: Option<Object<'a>>,
    #[serde(default, borrow, deserialize_with = "optional_object")]
    pub old_object: Option<Object<'a>>,
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Deserialize)]
pub struct GroupVersionKind<'a> {
    #[serde(borrow)]
    pub group: Text<'a>,
    #[serde(borrow)]
    pub version: Text<'a>,
    #[serde(borrow)]
    pub kind: Text<'a>,
}

#[derive(Debug, Deserialize)]
pub struct GroupVersionResource<'a> {
    #[serde(borrow)]
    pub group: Text<'a>,
    #[serde(borrow)]
    pub version: Text<'a>,
    #[serde(borrow)]
    pub resource: Text<'a>,
}

/// The operation under review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

/// `authentication/v1.UserInfo`: who asks.
#[derive(Debug, Default, Deserialize)]
pub struct UserInfo<'a> {
    #[serde(default, borrow)]
    pub username: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub groups: Option<Vec<Text<'a>>>,
}

/// The object (or old object) of a review, metadata only: spec, status and
/// managedFields are skipped without being built.
#[derive(Debug, Default, Deserialize)]
pub struct Object<'a> {
    #[serde(default, borrow, deserialize_with = "object")]
    pub metadata: Metadata<'a>,
}

/// The `ObjectMeta` fields the decisions read.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata<'a> {
    #[serde(default, borrow)]
    pub name: Option<Text<'a>>,
    /// A refused namespace delete's Event names the Namespace by it.
    #[serde(default, borrow)]
    pub uid: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub namespace: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub generate_name: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub labels: Option<TextMap<'a>>,
    #[serde(default, borrow)]
    pub annotations: Option<TextMap<'a>>,
    #[serde(default, borrow, deserialize_with = "optional_objects")]
    pub owner_references: Option<Vec<OwnerReference<'a>>>,
    /// Set once the object is being deleted; only its presence matters.
    #[serde(default, borrow)]
    pub deletion_timestamp: Option<Text<'a>>,
}

impl Metadata<'_> {
    /// Whether a controller (a Deployment for its ReplicaSet, ...) owns the object.
    pub fn controller_owned(&self) -> bool {
        self.owner_references
            .iter()
            .flatten()
            .any(|r| r.controller == Some(true))
    }

    /// The Pod that controls the object: for a claim, that it is a generic ephemeral
    /// volume's ([`crate::decisions::data_at_risk::ephemeral_pod`]).
    pub fn ephemeral_pod(&self) -> Option<&str> {
        fn text<'t>(t: &'t Option<Text<'_>>) -> &'t str {
            t.as_ref().map_or("", Text::as_str)
        }
        crate::decisions::data_at_risk::ephemeral_pod(self.owner_references.iter().flatten().map(
            |r| crate::decisions::data_at_risk::OwnerRef {
                api_version: text(&r.api_version),
                kind: text(&r.kind),
                name: text(&r.name),
                controller: r.controller == Some(true),
            },
        ))
    }
}

/// Of an ownerReference, nsguard reads whether it is the controller, and which object
/// (a Pod's controls an ephemeral volume's claim).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnerReference<'a> {
    #[serde(default)]
    pub controller: Option<bool>,
    #[serde(default, borrow)]
    pub api_version: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub kind: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub name: Option<Text<'a>>,
}

/// Only a JSON object is read as a struct. serde's derive also reads a struct from a
/// positional array (`["admission.k8s.io/v1","AdmissionReview",{...}]`), which is not
/// Kubernetes JSON: every struct of the review is read through here instead.
pub fn object<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    deserializer.deserialize_map(ObjectVisitor(PhantomData))
}

struct ObjectVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map))
    }
}

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for ObjectVisitor<T> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<T, D::Error> {
        object(deserializer)
    }
}

/// [`object`], or `null`.
fn optional_object<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    deserializer.deserialize_option(Optional(ObjectVisitor::<T>(PhantomData)))
}

/// An array of [`object`]s, or `null`.
fn optional_objects<'de, D, T>(deserializer: D) -> Result<Option<Vec<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    deserializer.deserialize_option(Optional(Objects::<T>(PhantomData)))
}

/// An array of [`object`]s.
struct Objects<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for Objects<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of JSON objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element_seed(ObjectVisitor(PhantomData))? {
            out.push(item);
        }
        Ok(out)
    }
}

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for Objects<T> {
    type Value = Vec<T>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Vec<T>, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

/// `null`, or what the seed reads: serde's `Option`, for a field read through a seed.
struct Optional<S>(S);

impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for Optional<S> {
    type Value = Option<S::Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("null or a JSON object or array of them")
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        self.0.deserialize(deserializer).map(Some)
    }
}

/// nsguard's answer to one review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response<'a> {
    /// The request's uid, which the API server matches the answer to.
    pub uid: &'a str,
    pub allowed: bool,
    /// Why a denied request was denied (sent as a `metav1.Status` with `code`).
    pub denial: Option<String>,
    /// The status code of a denial: 403 Forbidden, 409 Conflict for the volume guard (a
    /// step that conflicts with where the sub-env's data is), or 400 BadRequest for a
    /// review that cannot be judged (a namespace DELETE without a name).
    pub code: u16,
    /// A JSONPatch document (RFC 6902), serialized.
    pub patch: Option<Vec<u8>>,
    /// Warnings kubectl prints as `Warning: ...`.
    pub warnings: Vec<String>,
}

impl<'a> Response<'a> {
    pub fn allow(request: &'a Request<'_>) -> Self {
        Self {
            uid: request.uid.as_str(),
            allowed: true,
            denial: None,
            code: 403,
            patch: None,
            warnings: Vec::new(),
        }
    }

    /// A denial in the form `kubectl` prints well: code 403, reason Forbidden.
    pub fn deny(request: &'a Request<'_>, message: impl Into<String>) -> Self {
        Self {
            allowed: false,
            denial: Some(message.into()),
            ..Self::allow(request)
        }
    }

    /// A refusal of a review that is malformed for its purpose: code 400, reason BadRequest.
    pub fn bad_request(request: &'a Request<'_>, message: impl Into<String>) -> Self {
        Self {
            code: 400,
            ..Self::deny(request, message)
        }
    }

    /// A refusal because of the cluster's state, not the request: code 409, reason
    /// Conflict. The volume guard's: pulumi-kubernetes takes a 403 from its server-side
    /// dry run for missing rights and previews without it, while a 409 fails the preview.
    pub fn conflict(request: &'a Request<'_>, message: impl Into<String>) -> Self {
        Self {
            code: 409,
            ..Self::deny(request, message)
        }
    }

    /// The full AdmissionReview body of this answer.
    pub fn encode(&self) -> Vec<u8> {
        use base64::Engine as _;

        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct ReviewOut<'r> {
            api_version: &'static str,
            kind: &'static str,
            response: ResponseOut<'r>,
        }

        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct ResponseOut<'r> {
            uid: &'r str,
            allowed: bool,
            status: StatusOut<'r>,
            #[serde(skip_serializing_if = "Option::is_none")]
            patch: Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            patch_type: Option<&'static str>,
            #[serde(skip_serializing_if = "<[String]>::is_empty")]
            warnings: &'r [String],
        }

        /// `metav1.Status`: empty when allowed.
        #[derive(Serialize)]
        struct StatusOut<'r> {
            #[serde(skip_serializing_if = "Option::is_none")]
            status: Option<&'static str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            code: Option<u16>,
            #[serde(skip_serializing_if = "Option::is_none")]
            message: Option<&'r str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            reason: Option<&'static str>,
        }

        let denied = self.denial.is_some() || !self.allowed;
        let review = ReviewOut {
            api_version: API_VERSION,
            kind: KIND,
            response: ResponseOut {
                uid: self.uid,
                allowed: self.allowed,
                status: StatusOut {
                    status: denied.then_some("Failure"),
                    code: denied.then_some(self.code),
                    message: self.denial.as_deref(),
                    reason: denied.then_some(match self.code {
                        400 => "BadRequest",
                        409 => "Conflict",
                        _ => "Forbidden",
                    }),
                },
                patch: self
                    .patch
                    .as_ref()
                    .map(|patch| base64::engine::general_purpose::STANDARD.encode(patch)),
                patch_type: self.patch.is_some().then_some("JSONPatch"),
                warnings: &self.warnings,
            },
        };
        // Room for the envelope and every string, so the buffer is allocated once.
        let capacity = 256
            + self.denial.as_ref().map_or(0, String::len)
            + self.patch.as_ref().map_or(0, |p| p.len() * 4 / 3 + 4)
            + self.warnings.iter().map(|w| w.len() + 8).sum::<usize>();
        let mut body = Vec::with_capacity(capacity);
        // Strings, bools and numbers always serialize.
        serde_json::to_writer(&mut body, &review).expect("an AdmissionReview response serializes");
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_borrowed_unless_escaped() {
        let map: TextMap = serde_json::from_str(r#"{"a":"plain","b\u0021":"tab\there"}"#).unwrap();
        let (plain_key, plain) = map.iter().next().unwrap();
        assert!(matches!(plain_key.0, Cow::Borrowed("a")));
        assert!(matches!(plain.0, Cow::Borrowed("plain")));
        assert_eq!(map.get("b!").map(Text::as_str), Some("tab\there"));
        assert!(matches!(map.get("b!").unwrap().0, Cow::Owned(_)));
    }

    #[test]
    fn a_repeated_label_keeps_its_last_value() {
        let map: TextMap = serde_json::from_str(r#"{"a":"1","a":"2"}"#).unwrap();
        assert_eq!(map.len(), 1);
        assert_eq!(map.get("a").map(Text::as_str), Some("2"));
    }

    #[test]
    fn skips_all_but_the_metadata_it_reads() {
        let object: Object = serde_json::from_str(
            r#"{"apiVersion":"apps/v1","kind":"Deployment",
                "metadata":{"name":"a","namespace":"ns","uid":"u","generation":3,
                  "labels":{"x":"1"},"annotations":{"y":"2"},
                  "ownerReferences":[{"apiVersion":"v1","kind":"K","name":"o","uid":"u2","controller":true}],
                  "managedFields":[{"manager":"m","fieldsV1":{"f:spec":{}}}]},
                "spec":{"replicas":1,"template":{"spec":{"containers":[]}}},"status":{}}"#,
        )
        .unwrap();
        let meta = object.metadata;
        assert_eq!(meta.name.unwrap().as_str(), "a");
        assert_eq!(meta.namespace.unwrap().as_str(), "ns");
        assert_eq!(meta.labels.unwrap().get("x").unwrap().as_str(), "1");
        assert_eq!(meta.annotations.unwrap().get("y").unwrap().as_str(), "2");
        assert_eq!(meta.owner_references.unwrap()[0].controller, Some(true));
    }

    #[test]
    fn a_struct_is_read_from_an_object_only() {
        fn read(json: &str) -> serde_json::Result<Object<'_>> {
            object(&mut serde_json::Deserializer::from_str(json))
        }
        assert!(read(r#"{"metadata":{"name":"a"}}"#).is_ok());
        for positional in [
            r#"[{"name":"a"}]"#,
            r#"{"metadata":["a"]}"#,
            r#"{"metadata":{"ownerReferences":[[true]]}}"#,
        ] {
            let err = read(positional).unwrap_err().to_string();
            assert!(
                err.contains("expected a JSON object"),
                "{positional}: {err}"
            );
        }
        let meta: Object = read(r#"{"metadata":{"ownerReferences":null,"labels":null}}"#).unwrap();
        assert!(meta.metadata.owner_references.is_none());
    }

    #[test]
    fn malformed_metadata_and_skipped_json_are_still_errors() {
        assert!(serde_json::from_str::<Object>(r#"{"metadata":{"labels":{"a":1}}}"#).is_err());
        assert!(serde_json::from_str::<Object>(r#"{"spec":{"a":}}"#).is_err());
        assert!(serde_json::from_str::<Object>(r#"{"spec":{"a":"unterminated}}"#).is_err());
        assert!(serde_json::from_str::<Object>(r#"{}"#).is_ok());
    }
}
