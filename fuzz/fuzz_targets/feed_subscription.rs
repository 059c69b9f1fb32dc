//! `fresco_fuzzing::feed_subscription` under libFuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fresco_fuzzing::feed_subscription::run(data));
