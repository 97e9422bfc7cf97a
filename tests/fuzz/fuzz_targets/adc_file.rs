//! ADC files of every type: parsing never panics, and nothing is minted (the deadline has
//! already passed, so no request leaves the process).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("adc.json");
    std::fs::write(&path, data).unwrap();
    let result = docker_credential_gcp::fuzz_api::adc_file(&path);
    assert!(result.is_err(), "a token cannot be minted without time or network");
});
