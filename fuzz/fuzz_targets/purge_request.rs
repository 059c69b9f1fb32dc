//! `fresco_fuzzing::purge_request` under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fresco_fuzzing::purge_request::run(data));
