#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kube_oidc_proxy_fuzz::h2_guard::run(data));
