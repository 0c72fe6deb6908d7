//! The bundled sample month in examples/ passes the checker.

use std::path::Path;

#[test]
fn every_sample_file_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/month-202610");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("CSV") {
            continue;
        }
        let name = path.file_name().unwrap().to_str().unwrap();
        let report = renkei_protocol::check_bytes(name, &std::fs::read(&path).unwrap());
        assert!(report.is_valid(), "{name}: {:#?}", report.errors);
        assert!(report.records > 0);
        n += 1;
    }
    assert_eq!(n, 24, "expected the 24 sample files");
}
