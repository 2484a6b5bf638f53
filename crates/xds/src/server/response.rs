//! Responses written for the wire: a gRPC message frame as a list of chunks, where the
//! resources' shared bytes pass through untouched and the small parts around them are
//! copied into one buffer. Encoding a response copies no resource bigger than
//! [`SHARE_FROM`], however many proxies it goes to.

use bytes::{BufMut, Bytes, BytesMut};

use crate::resource::NamedResource;
use crate::wire::{field_len, put_field, put_field_head};

/// Chunks smaller than this are copied next to their neighbours rather than sent on
/// their own: each chunk becomes an HTTP/2 DATA frame, and a big one a write of its own.
const SHARE_FROM: usize = 16 * 1024;

/// The gRPC frame header: a compression flag and the message's length.
const GRPC_HEADER: usize = 5;

/// One response, framed for gRPC, in the chunks it goes out in.
#[derive(Debug)]
pub(crate) struct Framed(Vec<Bytes>);

impl Framed {
    /// The chunks, in order.
    pub(crate) fn into_chunks(self) -> Vec<Bytes> {
        self.0
    }
}

/// A `DiscoveryResponse` carrying `resources`.
pub(crate) fn sotw(
    version: &str,
    type_url: &str,
    nonce: &str,
    resources: &[NamedResource],
) -> Framed {
    let runs = NamedResource::joined_fields(resources);
    let len = optional_len(1, version)
        + runs.iter().map(Bytes::len).sum::<usize>()
        + field_len(4, type_url.len())
        + field_len(5, nonce.len());
    let mut w = Writer::new(len);
    put_optional(&mut w.buf, 1, version);
    for run in runs {
        w.put_shared(run);
    }
    put_field(&mut w.buf, 4, type_url.as_bytes());
    put_field(&mut w.buf, 5, nonce.as_bytes());
    w.finish(len)
}

/// A `DeltaDiscoveryResponse` carrying `resources`, each with its version, and the
/// names of those `removed`.
pub(crate) fn delta(
    system_version: &str,
    type_url: &str,
    nonce: &str,
    resources: &[(NamedResource, String)],
    removed: &[String],
) -> Framed {
    // The delta `Resource`: version = 1, resource = 2, name = 3.
    let resource_len = |(r, version): &(NamedResource, String)| {
        field_len(1, version.len()) + r.field().len() + field_len(3, r.name().len())
    };
    let len = optional_len(1, system_version)
        + resources
            .iter()
            .map(|r| field_len(2, resource_len(r)))
            .sum::<usize>()
        + field_len(4, type_url.len())
        + field_len(5, nonce.len())
        + removed.iter().map(|n| field_len(6, n.len())).sum::<usize>();
    let mut w = Writer::new(len);
    put_optional(&mut w.buf, 1, system_version);
    for entry @ (r, version) in resources {
        put_field_head(&mut w.buf, 2, resource_len(entry));
        put_field(&mut w.buf, 1, version.as_bytes());
        w.put_shared(r.field());
        put_field(&mut w.buf, 3, r.name().as_bytes());
    }
    put_field(&mut w.buf, 4, type_url.as_bytes());
    put_field(&mut w.buf, 5, nonce.as_bytes());
    for name in removed {
        put_field(&mut w.buf, 6, name.as_bytes());
    }
    w.finish(len)
}

/// The length of a singular string field, which proto3 leaves out when empty.
fn optional_len(field: u32, value: &str) -> usize {
    if value.is_empty() {
        0
    } else {
        field_len(field, value.len())
    }
}

fn put_optional(buf: &mut BytesMut, field: u32, value: &str) {
    if !value.is_empty() {
        put_field(buf, field, value.as_bytes());
    }
}

/// Builds the chunks of one framed message.
struct Writer {
    chunks: Vec<Bytes>,
    buf: BytesMut,
}

impl Writer {
    /// A frame for a message of `len` bytes, its header written.
    fn new(len: usize) -> Self {
        let mut buf = BytesMut::with_capacity(GRPC_HEADER + len.min(SHARE_FROM));
        buf.put_u8(0);
        buf.put_u32(u32::try_from(len).expect("an xDS response under 4 GiB"));
        Self {
            chunks: Vec::new(),
            buf,
        }
    }

    /// Adds `bytes`: shared when big, copied when small.
    fn put_shared(&mut self, bytes: Bytes) {
        if bytes.len() < SHARE_FROM {
            self.buf.put_slice(&bytes);
        } else {
            if !self.buf.is_empty() {
                self.chunks.push(self.buf.split().freeze());
            }
            self.chunks.push(bytes);
        }
    }

    fn finish(mut self, len: usize) -> Framed {
        if !self.buf.is_empty() {
            self.chunks.push(self.buf.freeze());
        }
        debug_assert_eq!(
            self.chunks.iter().map(Bytes::len).sum::<usize>(),
            GRPC_HEADER + len
        );
        Framed(self.chunks)
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::pb::envoy::config::cluster::v3::Cluster;
    use crate::pb::envoy::service::discovery::v3::{
        DeltaDiscoveryResponse, DiscoveryResponse, Resource,
    };
    use crate::pb::google::protobuf::Any;
    use crate::types::ResourceType;

    /// The message inside a frame, checking the frame's header on the way.
    fn message(framed: Framed) -> (Vec<Bytes>, Vec<u8>) {
        let chunks = framed.into_chunks();
        let all = chunks.concat();
        assert_eq!(all[0], 0, "not compressed");
        let len = u32::from_be_bytes(all[1..5].try_into().unwrap()) as usize;
        assert_eq!(len, all.len() - GRPC_HEADER);
        (chunks, all[GRPC_HEADER..].to_vec())
    }

    fn clusters(sizes: &[usize]) -> Vec<Cluster> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, size)| Cluster {
                name: format!("c{i}"),
                alt_stat_name: "x".repeat(*size),
                ..Default::default()
            })
            .collect()
    }

    fn any(c: &Cluster) -> Any {
        Any {
            type_url: ResourceType::Cluster.type_url().into(),
            value: c.encode_to_vec(),
        }
    }

    #[test]
    fn sotw_decodes_to_the_response_prost_would_build() {
        let all = clusters(&[10, 40_000, 10]);
        // Two batches: the big one in the middle is shared, the small ones copied.
        let mut resources = NamedResource::batch(all[..2].iter().map(|c| (c.name.clone(), c)));
        resources.push(NamedResource::new("c2", &all[2]));
        let (chunks, bytes) = message(sotw(
            "v3",
            ResourceType::Cluster.type_url(),
            "7",
            &resources,
        ));

        let expected = DiscoveryResponse {
            version_info: "v3".into(),
            resources: all.iter().map(any).collect(),
            type_url: ResourceType::Cluster.type_url().into(),
            nonce: "7".into(),
            ..Default::default()
        };
        assert_eq!(
            DiscoveryResponse::decode(bytes.as_slice()).unwrap(),
            expected
        );
        // The batch (small + big, back to back) went out as one shared chunk.
        assert!(
            chunks
                .iter()
                .any(|c| c.as_ptr() == resources[0].field().as_ptr()),
            "the batch is shared, not copied"
        );
    }

    #[test]
    fn empty_sotw_response_is_valid() {
        let (_, bytes) = message(sotw("", ResourceType::Route.type_url(), "1", &[]));
        let decoded = DiscoveryResponse::decode(bytes.as_slice()).unwrap();
        assert!(decoded.resources.is_empty() && decoded.version_info.is_empty());
        assert_eq!(decoded.nonce, "1");
    }

    #[test]
    fn delta_decodes_to_the_response_prost_would_build() {
        let all = clusters(&[5, 20_000]);
        let resources: Vec<(NamedResource, String)> = all
            .iter()
            .map(|c| {
                let r = NamedResource::new(c.name.clone(), c);
                let v = r.version();
                (r, v)
            })
            .collect();
        let removed = vec!["gone".to_string(), String::new()];
        let (chunks, bytes) = message(delta(
            "v9",
            ResourceType::Cluster.type_url(),
            "4",
            &resources,
            &removed,
        ));
        let expected = DeltaDiscoveryResponse {
            system_version_info: "v9".into(),
            resources: resources
                .iter()
                .map(|(r, v)| Resource {
                    name: r.name().into(),
                    version: v.clone(),
                    resource: Some(r.to_any()),
                    ..Default::default()
                })
                .collect(),
            type_url: ResourceType::Cluster.type_url().into(),
            removed_resources: removed,
            nonce: "4".into(),
            ..Default::default()
        };
        assert_eq!(
            DeltaDiscoveryResponse::decode(bytes.as_slice()).unwrap(),
            expected
        );
        assert!(
            chunks
                .iter()
                .any(|c| c.as_ptr() == resources[1].0.field().as_ptr())
        );
    }
}
