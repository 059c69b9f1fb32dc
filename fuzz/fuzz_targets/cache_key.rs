//! `fresco_fuzzing::cache_key` under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fresco_fuzzing::cache_key::run(data));
