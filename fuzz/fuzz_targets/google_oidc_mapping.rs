#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keyless::fuzzing::google_oidc_mapping(data));
