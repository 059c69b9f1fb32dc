//! `fresco_fuzzing::record` under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fresco_fuzzing::record::run(data));
