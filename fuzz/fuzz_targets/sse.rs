//! `fresco_fuzzing::sse` under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fresco_fuzzing::sse::run(data));
