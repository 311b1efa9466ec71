//! A tiny run of the benchmark program (debug, N = 20, every section) against a real server
//! process: it must finish and print one valid JSON line. Times are never asserted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn a_tiny_run_completes_and_prints_one_json_line() {
    let output = Command::new(env!("CARGO_BIN_EXE_haven-bench"))
        .args([
            "run",
            "--server",
            "self",
            "--n",
            "20",
            "--w3-warmup",
            "2",
            "--w3",
            "5",
            "--w3-burst",
            "5",
            "--w3-gap-ms",
            "20",
            "--s2-conns",
            "20",
            "--s2-edits",
            "3",
            "--d1-entries",
            "30",
            "--d1-opens",
            "1",
            "--micro-creates",
            "5",
            "--micro-apply-entries",
            "20",
            "--timeout-s",
            "400",
        ])
        .output()
        .expect("haven-bench runs");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exit {}\n{stderr}\n{stdout}",
        output.status
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stdout: {stdout}");
    let value: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(value["ok"], true, "{value}");
    assert_eq!(value["w1"]["docs"], 20);
    assert_eq!(value["w2"]["verified"], 20);
    assert_eq!(
        value["w3"]["count"].as_u64().unwrap() + value["w3"]["timeouts"].as_u64().unwrap(),
        5
    );
    assert_eq!(value["s2"]["connections"], 20);
    assert_eq!(value["d1"]["entries"], 30);
    assert_eq!(value["micro"]["applyPulled"]["entries"], 20);
    for figure in [
        "w1.uploadMs",
        "w2.downloadMs",
        "w3.p99Ms",
        "server.rssAfterW1Bytes",
        "s2.fanoutAll.p99Ms",
        "d1.openMs",
    ] {
        let found = figure
            .split('.')
            .try_fold(&value, |value, key| value.get(key))
            .and_then(serde_json::Value::as_f64);
        assert!(found.is_some(), "{figure} missing: {value}");
    }
}
