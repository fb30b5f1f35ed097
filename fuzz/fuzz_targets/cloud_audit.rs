#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keyless::fuzzing::cloud_audit(data));
