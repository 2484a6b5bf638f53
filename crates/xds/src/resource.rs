//! Resources encoded once and shared by every response that carries them.
//!
//! A resource is kept as the bytes it occupies inside a response: the `resources` field
//! of a `DiscoveryResponse` (field 2) holding its `google.protobuf.Any`. The delta
//! `Resource` message keeps its `Any` in field 2 as well, so the same bytes serve both
//! protocols. Resources encoded together ([`NamedResource::batch`]) lie back to back in
//! one allocation, and a response that carries them in that order sends them as a single
//! shared chunk: a thousand proxies of one namespace get one copy of their clusters in
//! memory, not a thousand.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use prost::{Message, Name};

use crate::pb::google::protobuf::Any;
use crate::wire::{field_len, put_field, put_field_head};

/// The field that holds a resource's `Any`, in `DiscoveryResponse` and in the delta
/// `Resource` alike.
pub(crate) const RESOURCE_FIELD: u32 = 2;

/// One resource of one proxy's response, by name; cheap to clone.
#[derive(Clone)]
pub struct NamedResource {
    name: Arc<str>,
    /// The allocation holding this resource, perhaps among others of its batch.
    block: Bytes,
    /// Where the resource's field (key, length, `Any`) lies in `block`.
    range: Range<usize>,
    /// Where its `Any` starts, after the field's key and length.
    any_at: usize,
    /// FNV-1a of the `Any`: the resource's version for Delta, stable across runs.
    digest: u64,
}

impl NamedResource {
    /// `message`, packed in an `Any` of its type and encoded.
    pub fn new<M: Message + Name>(name: impl Into<Arc<str>>, message: &M) -> Self {
        Self::batch([(name, message)]).remove(0)
    }

    /// `messages`, encoded into one shared allocation in this order: responses that
    /// carry them in the same order send them as one chunk.
    pub fn batch<'m, N, M, I>(messages: I) -> Vec<Self>
    where
        N: Into<Arc<str>>,
        M: Message + Name + 'm,
        I: IntoIterator<Item = (N, &'m M)>,
    {
        let type_url = M::type_url();
        let messages: Vec<(Arc<str>, &M, usize)> = messages
            .into_iter()
            .map(|(name, m)| (name.into(), m, m.encoded_len()))
            .collect();
        let any_len = |len| field_len(1, type_url.len()) + field_len(2, len);
        let total = messages
            .iter()
            .map(|(_, _, len)| field_len(RESOURCE_FIELD, any_len(*len)))
            .sum();
        let mut buf = BytesMut::with_capacity(total);
        let mut spans = Vec::with_capacity(messages.len());
        for (name, message, len) in messages {
            let start = buf.len();
            put_field_head(&mut buf, RESOURCE_FIELD, any_len(len));
            let any_at = buf.len();
            put_field(&mut buf, 1, type_url.as_bytes());
            put_field_head(&mut buf, 2, len);
            message.encode_raw(&mut buf);
            spans.push((name, start..buf.len(), any_at));
        }
        let block = buf.freeze();
        spans
            .into_iter()
            .map(|(name, range, any_at)| Self {
                digest: fnv1a(&block[any_at..range.end]),
                name,
                block: block.clone(),
                range,
                any_at,
            })
            .collect()
    }

    /// A resource already packed in an `Any`.
    pub fn from_any(name: impl Into<Arc<str>>, any: &Any) -> Self {
        let len = any.encoded_len();
        let mut buf = BytesMut::with_capacity(field_len(RESOURCE_FIELD, len));
        put_field_head(&mut buf, RESOURCE_FIELD, len);
        let any_at = buf.len();
        any.encode_raw(&mut buf);
        let block = buf.freeze();
        Self {
            name: name.into(),
            digest: fnv1a(&block[any_at..]),
            range: 0..block.len(),
            block,
            any_at,
        }
    }

    /// The resource's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The resource, decoded back into an `Any` (for debug output, not the hot path).
    pub fn to_any(&self) -> Any {
        Any::decode(&self.block[self.any_at..self.range.end])
            .expect("a NamedResource holds the Any it encoded")
    }

    /// The resource's field as it goes into a response, shared.
    pub(crate) fn field(&self) -> Bytes {
        self.block.slice(self.range.clone())
    }

    /// The resource's version for Delta: a digest of its content.
    pub(crate) fn version(&self) -> String {
        format!("{:016x}", self.digest)
    }

    /// The fields of consecutive `resources`, runs that lie back to back in one
    /// allocation joined into one chunk.
    pub(crate) fn joined_fields(resources: &[NamedResource]) -> Vec<Bytes> {
        let mut out = Vec::new();
        let mut run: Option<(&NamedResource, usize)> = None;
        for r in resources {
            match &mut run {
                Some((first, end))
                    if first.block.as_ptr() == r.block.as_ptr() && *end == r.range.start =>
                {
                    *end = r.range.end;
                }
                _ => {
                    if let Some((first, end)) = run.take() {
                        out.push(first.block.slice(first.range.start..end));
                    }
                    run = Some((r, r.range.end));
                }
            }
        }
        if let Some((first, end)) = run {
            out.push(first.block.slice(first.range.start..end));
        }
        out
    }
}

impl PartialEq for NamedResource {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.block[self.any_at..self.range.end] == other.block[other.any_at..other.range.end]
    }
}

impl fmt::Debug for NamedResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NamedResource")
            .field("name", &self.name)
            .field("bytes", &(self.range.end - self.any_at))
            .field("version", &self.version())
            .finish()
    }
}

/// 64-bit FNV-1a: a stable digest (unlike `std`'s hasher, the same in every run, which
/// a reconnecting Delta client's `initial_resource_versions` rely on).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::envoy::config::cluster::v3::Cluster;
    use crate::pb::envoy::service::discovery::v3::DiscoveryResponse;
    use crate::types::ResourceType;

    fn put_all(buf: &mut Vec<u8>, resources: &[NamedResource]) {
        for r in resources {
            buf.extend_from_slice(&r.field());
        }
    }

    fn cluster(name: &str) -> Cluster {
        Cluster {
            name: name.into(),
            alt_stat_name: "stat".into(),
            ..Default::default()
        }
    }

    fn any(c: &Cluster) -> Any {
        Any {
            type_url: ResourceType::Cluster.type_url().into(),
            value: c.encode_to_vec(),
        }
    }

    #[test]
    fn fields_decode_as_prost_encodes_them() {
        let clusters = [cluster("a"), cluster("b")];
        let batch = NamedResource::batch(clusters.iter().map(|c| (c.name.as_str(), c)));
        let mut buf = Vec::new();
        put_all(&mut buf, &batch);
        let decoded = DiscoveryResponse::decode(buf.as_slice()).unwrap();
        let expected: Vec<Any> = clusters.iter().map(any).collect();
        assert_eq!(decoded.resources, expected);
        assert_eq!(batch[1].to_any(), expected[1]);
        assert_eq!(batch[0], NamedResource::from_any("a", &expected[0]));
        assert_eq!(batch[0], NamedResource::new("a", &clusters[0]));
    }

    #[test]
    fn a_batch_in_order_is_one_chunk_and_shares_its_bytes() {
        let clusters: Vec<Cluster> = (0..5).map(|i| cluster(&format!("c{i}"))).collect();
        let batch = NamedResource::batch(clusters.iter().map(|c| (c.name.as_str(), c)));
        let joined = NamedResource::joined_fields(&batch);
        assert_eq!(joined.len(), 1);
        assert_eq!(joined[0].as_ptr(), batch[0].field().as_ptr(), "no copy");
        // Out of order, or with a stranger in between, runs break where they must.
        let other = NamedResource::new("x", &cluster("x"));
        let mixed = [
            batch[0].clone(),
            batch[1].clone(),
            other,
            batch[3].clone(),
            batch[2].clone(),
        ];
        let chunks = NamedResource::joined_fields(&mixed);
        assert_eq!(chunks.len(), 4);
        let mut all = Vec::new();
        put_all(&mut all, &mixed);
        assert_eq!(chunks.concat(), all);
    }

    #[test]
    fn versions_follow_content() {
        let a = NamedResource::new("a", &cluster("a"));
        let mut changed = cluster("a");
        assert_eq!(a.version(), NamedResource::new("a", &changed).version());
        changed.alt_stat_name = "other".into();
        assert_ne!(a.version(), NamedResource::new("a", &changed).version());
        assert_eq!(a.version().len(), 16);
    }
}
