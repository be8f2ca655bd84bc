#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ldk_trampoline::fuzz_targets::outer_onion(data));
