//! `fresco_fuzzing::signature` under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fresco_fuzzing::signature::run(data));
