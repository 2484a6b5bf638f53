//! Compiles the `.proto` sources that ship inside the `envoy-types` package into one
//! `FileDescriptorSet`, so `mizzen_xds::json` can speak Envoy's JSON mapping for every
//! Envoy type without `protoc`.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;

use prost::Message;
use prost_types::{DescriptorProto, FieldDescriptorProto, FileDescriptorProto};
use protox::Compiler;
use protox::file::{
    ChainFileResolver, File, FileResolver, GoogleFileResolver, IncludeFileResolver,
};

/// Include roots inside `envoy-types/proto`, as the imports in those files expect them.
const INCLUDE_ROOTS: &[&str] = &[
    "data-plane-api",
    "xds",
    "googleapis",
    "protoc-gen-validate",
    "cel-spec/proto",
    "client_model",
    "opentelemetry-proto",
    "ratelimit/api",
];

fn main() {
    let metadata = cargo_metadata();
    let proto_dir = envoy_types_dir(&metadata).join("proto");
    // A new envoy-types version moves to a new directory; the lock file is what says so.
    if let Some(root) = metadata["workspace_root"].as_str() {
        println!("cargo:rerun-if-changed={root}/Cargo.lock");
    }
    println!("cargo:rerun-if-changed=build.rs");

    let roots: Vec<PathBuf> = INCLUDE_ROOTS.iter().map(|r| proto_dir.join(r)).collect();
    let mut paths = Vec::new();
    collect_protos(&proto_dir, &mut paths);
    let mut names: Vec<String> = paths
        .iter()
        .map(|path| {
            let relative = roots
                .iter()
                .find_map(|root| path.strip_prefix(root).ok())
                .unwrap_or_else(|| {
                    panic!(
                        "{} is under no include root of build.rs ({INCLUDE_ROOTS:?}); \
                         envoy-types changed its layout",
                        path.display()
                    )
                });
            relative
                .to_str()
                .expect("UTF-8 proto path")
                .replace('\\', "/")
        })
        .collect();
    for (extra, _) in EXTRA_PROTOS {
        if names.iter().any(|name| name == extra) {
            panic!("envoy-types now ships {extra}; drop it from EXTRA_PROTOS in build.rs");
        }
        names.push((*extra).to_owned());
    }
    names.sort();

    let mut resolver = ChainFileResolver::new();
    for root in roots {
        resolver.add(IncludeFileResolver::new(root));
    }
    resolver.add(GoogleFileResolver::new());
    let mut compiler = Compiler::with_file_resolver(Qualifying {
        inner: resolver,
        parsed: RefCell::default(),
    });
    compiler.include_imports(true).include_source_info(false);
    if let Err(err) = compiler.open_files(&names) {
        panic!("compiling envoy-types protos: {err}");
    }
    // Source info and extension options (validation rules) play no part in the JSON
    // mapping; `file_descriptor_set` leaves both out.
    let set = compiler.file_descriptor_set();

    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    fs::write(out.join("envoy_descriptor_set.bin"), set.encode_to_vec())
        .expect("write envoy_descriptor_set.bin");
}

/// `cargo metadata` for this crate's workspace, run with the same cargo that builds us.
/// Offline and for the target being built, so it needs no crate that was not downloaded
/// for this very build.
fn cargo_metadata() -> serde_json::Value {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target = env::var("TARGET").expect("TARGET");
    let manifest = Path::new(&env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"))
        .join("Cargo.toml");
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--filter-platform",
            &target,
            "--manifest-path",
        ])
        .arg(&manifest)
        .output()
        .expect("run cargo metadata");
    if !output.status.success() {
        panic!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    serde_json::from_slice(&output.stdout).expect("cargo metadata output is JSON")
}

/// The directory of the `envoy-types` package this crate resolved to.
fn envoy_types_dir(metadata: &serde_json::Value) -> PathBuf {
    let manifest = Path::new(&env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"))
        .join("Cargo.toml");
    let packages = metadata["packages"].as_array().expect("packages");
    let ours = packages
        .iter()
        .find(|p| p["manifest_path"].as_str().map(Path::new) == Some(manifest.as_path()))
        .and_then(|p| p["id"].as_str())
        .expect("this crate in cargo metadata");
    let envoy_id = metadata["resolve"]["nodes"]
        .as_array()
        .expect("resolve nodes")
        .iter()
        .find(|node| node["id"].as_str() == Some(ours))
        .and_then(|node| node["deps"].as_array())
        .and_then(|deps| deps.iter().find(|dep| dep["name"] == "envoy_types"))
        .and_then(|dep| dep["pkg"].as_str())
        .expect("envoy-types among this crate's dependencies");
    let envoy_manifest = packages
        .iter()
        .find(|p| p["id"].as_str() == Some(envoy_id))
        .and_then(|p| p["manifest_path"].as_str())
        .expect("envoy-types manifest path");
    Path::new(envoy_manifest)
        .parent()
        .expect("manifest has a directory")
        .to_path_buf()
}

fn collect_protos(dir: &Path, files: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            collect_protos(&path, files);
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            files.push(path);
        }
    }
}

/// xDS types that Istio's generated config puts in `Any`s but `envoy-types` does not ship,
/// written out here (schema only): `TypedStruct` in both of its packages, `IPMatcher`
/// (Istio's `virtualInbound` filter chain matcher), and the configs of istio-proxy's own
/// telemetry filters (`istio.stats`, `istio.metadata_exchange`), as `mizzen_xds::istio`
/// has them.
const EXTRA_PROTOS: &[(&str, &str)] = &[
    (
        "xds/type/v3/typed_struct.proto",
        r#"syntax = "proto3";
package xds.type.v3;
import "google/protobuf/struct.proto";
message TypedStruct {
  string type_url = 1;
  google.protobuf.Struct value = 2;
}
"#,
    ),
    (
        "udpa/type/v1/typed_struct.proto",
        r#"syntax = "proto3";
package udpa.type.v1;
import "google/protobuf/struct.proto";
message TypedStruct {
  string type_url = 1;
  google.protobuf.Struct value = 2;
}
"#,
    ),
    (
        "istio/stats/config.proto",
        r#"syntax = "proto3";
package stats;
import "google/protobuf/duration.proto";
message MetricConfig {
  map<string, string> dimensions = 1;
  string name = 2;
  repeated string tags_to_remove = 3;
  string match = 4;
  bool drop = 5;
}
enum MetricType {
  COUNTER = 0;
  GAUGE = 1;
  HISTOGRAM = 2;
}
message MetricDefinition {
  string name = 1;
  string value = 2;
  MetricType type = 3;
}
enum Reporter {
  UNSPECIFIED = 0;
  SERVER_GATEWAY = 1;
}
message PluginConfig {
  bool disable_host_header_fallback = 6;
  google.protobuf.Duration tcp_reporting_duration = 7;
  repeated MetricConfig metrics = 8;
  repeated MetricDefinition definitions = 9;
  Reporter reporter = 10;
  google.protobuf.Duration rescoping_duration = 11;
  google.protobuf.Duration scope_grace_period_duration = 12;
}
"#,
    ),
    (
        "istio/peer_metadata/config.proto",
        r#"syntax = "proto3";
package io.istio.http.peer_metadata;
message Config {
  message Baggage {}
  message WorkloadDiscovery {}
  message IstioHeaders {
    bool skip_external_clusters = 1;
  }
  message DiscoveryMethod {
    oneof method_specifier {
      Baggage baggage = 1;
      WorkloadDiscovery workload_discovery = 2;
      IstioHeaders istio_headers = 3;
    }
  }
  repeated DiscoveryMethod downstream_discovery = 1;
  repeated DiscoveryMethod upstream_discovery = 2;
  message PropagationMethod {
    oneof method_specifier {
      IstioHeaders istio_headers = 1;
    }
  }
  repeated PropagationMethod downstream_propagation = 3;
  repeated PropagationMethod upstream_propagation = 4;
  bool shared_with_upstream = 5;
  repeated string additional_labels = 6;
}
"#,
    ),
    (
        "istio/metadata_exchange/config.proto",
        r#"syntax = "proto3";
package envoy.tcp.metadataexchange.config;
message MetadataExchange {
  string protocol = 1;
  bool enable_discovery = 2;
  repeated string additional_labels = 3;
}
"#,
    ),
    (
        "xds/type/matcher/v3/ip.proto",
        r#"syntax = "proto3";
package xds.type.matcher.v3;
import "xds/core/v3/cidr.proto";
import "xds/type/matcher/v3/matcher.proto";
message IPMatcher {
  message IPRangeMatcher {
    repeated xds.core.v3.CidrRange ranges = 1;
    Matcher.OnMatch on_match = 2;
    bool exclusive = 3;
  }
  repeated IPRangeMatcher range_matchers = 1;
}
"#,
    ),
];

/// Opens files through the include roots and rewrites every relative type name to the
/// fully qualified one protoc would pick.
///
/// protoc lets a relative name bind only to the packages of the file itself and of its
/// direct imports; protox binds to any package already in its pool. So with all of
/// Envoy's files in one pool, `common.dynamic_forward_proxy.v3.DnsCacheConfig` written in
/// `envoy.extensions.clusters.dynamic_forward_proxy.v3` lands in
/// `envoy.extensions.clusters.common` (a package some other file defines) and fails.
/// Resolving here, with protoc's visibility, makes the result independent of file order.
struct Qualifying {
    inner: ChainFileResolver,
    parsed: RefCell<HashMap<String, Rc<FileDescriptorProto>>>,
}

impl Qualifying {
    fn parse(&self, name: &str) -> Result<Rc<FileDescriptorProto>, protox::Error> {
        if let Some(file) = self.parsed.borrow().get(name) {
            return Ok(file.clone());
        }
        let file = match EXTRA_PROTOS.iter().find(|(extra, _)| *extra == name) {
            Some((_, source)) => File::from_source(name, source)?,
            None => self.inner.open_file(name)?,
        };
        let file = Rc::new(file.file_descriptor_proto().clone());
        self.parsed
            .borrow_mut()
            .insert(name.to_owned(), file.clone());
        Ok(file)
    }

    /// Types (messages and enums, fully qualified) and package prefixes that `file` sees:
    /// its own, its direct imports' and what those re-export with `import public`.
    fn visible_symbols(&self, file: &FileDescriptorProto) -> Result<Symbols, protox::Error> {
        let mut symbols = Symbols::default();
        symbols.add_file(file);
        let mut pending: Vec<String> = file.dependency.clone();
        let mut seen = HashSet::new();
        while let Some(name) = pending.pop() {
            if !seen.insert(name.clone()) {
                continue;
            }
            let dep = self.parse(&name)?;
            symbols.add_file(&dep);
            for &index in &dep.public_dependency {
                pending.push(dep.dependency[index as usize].clone());
            }
        }
        Ok(symbols)
    }
}

impl FileResolver for Qualifying {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        let parsed = self.parse(name)?;
        let symbols = self.visible_symbols(&parsed)?;
        let mut file = (*parsed).clone();
        let package = file.package().to_owned();
        for message in &mut file.message_type {
            qualify_message(message, &package, &symbols);
        }
        for extension in &mut file.extension {
            qualify_field(extension, &package, &symbols);
        }
        for method in file.service.iter_mut().flat_map(|s| s.method.iter_mut()) {
            for type_name in [&mut method.input_type, &mut method.output_type] {
                qualify(type_name, &package, &symbols);
            }
        }
        Ok(File::from_file_descriptor_proto(file))
    }
}

#[derive(Default)]
struct Symbols {
    types: HashSet<String>,
    packages: HashSet<String>,
}

impl Symbols {
    fn add_file(&mut self, file: &FileDescriptorProto) {
        let package = file.package();
        let mut prefix = String::new();
        for part in package.split('.').filter(|p| !p.is_empty()) {
            if !prefix.is_empty() {
                prefix.push('.');
            }
            prefix.push_str(part);
            self.packages.insert(prefix.clone());
        }
        for message in &file.message_type {
            self.add_message(package, message);
        }
        for enumeration in &file.enum_type {
            self.types.insert(join(package, enumeration.name()));
        }
    }

    fn add_message(&mut self, scope: &str, message: &DescriptorProto) {
        let name = join(scope, message.name());
        for nested in &message.nested_type {
            self.add_message(&name, nested);
        }
        for enumeration in &message.enum_type {
            self.types.insert(join(&name, enumeration.name()));
        }
        self.types.insert(name);
    }

    /// protoc's lookup: try `name` in `scope`, then in each enclosing scope. When the
    /// first component of a dotted name binds, the rest must be found under it.
    fn resolve(&self, name: &str, scope: &str) -> Option<String> {
        let first = name.split('.').next().unwrap_or(name);
        let mut scope = scope.to_owned();
        loop {
            let candidate = join(&scope, first);
            let binds = if first.len() == name.len() {
                self.types.contains(&candidate)
            } else {
                self.types.contains(&candidate) || self.packages.contains(&candidate)
            };
            if binds {
                let full = join(&scope, name);
                return self.types.contains(&full).then_some(full);
            }
            if scope.is_empty() {
                return None;
            }
            scope.truncate(scope.rfind('.').unwrap_or(0));
        }
    }
}

fn join(scope: &str, name: &str) -> String {
    if scope.is_empty() {
        name.to_owned()
    } else {
        format!("{scope}.{name}")
    }
}

fn qualify_message(message: &mut DescriptorProto, scope: &str, symbols: &Symbols) {
    let scope = join(scope, message.name());
    for field in message.field.iter_mut().chain(message.extension.iter_mut()) {
        qualify_field(field, &scope, symbols);
    }
    for nested in &mut message.nested_type {
        qualify_message(nested, &scope, symbols);
    }
}

fn qualify_field(field: &mut FieldDescriptorProto, scope: &str, symbols: &Symbols) {
    qualify(&mut field.type_name, scope, symbols);
    qualify(&mut field.extendee, scope, symbols);
}

/// Leaves names it cannot resolve alone, so protox reports them with its own message.
fn qualify(type_name: &mut Option<String>, scope: &str, symbols: &Symbols) {
    if let Some(name) = type_name.as_deref().filter(|n| !n.starts_with('.'))
        && let Some(full) = symbols.resolve(name, scope)
    {
        *type_name = Some(format!(".{full}"));
    }
}
