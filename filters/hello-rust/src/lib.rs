// The filter of the blog post this project grew from, in Rust with the `proxy-wasm` crate:
// a root context that creates an HTTP context per request, whose on_http_request_headers adds
// `X-Wasm-Processed: Yes` (the upstream sees it). It also answers `x-hello-rust: Yes`, so
// `curl -v` through Envoy shows the filter ran.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

/// The headers' value: edit it and save, and the next responses carry the new one.
const PROCESSED: &str = "Yes";

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(HelloRoot) });
}}

struct HelloRoot;

impl Context for HelloRoot {}

impl RootContext for HelloRoot {
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Hello))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Hello;

impl Context for Hello {}

impl HttpContext for Hello {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.add_http_request_header("X-Wasm-Processed", PROCESSED);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.add_http_response_header("x-hello-rust", PROCESSED);
        Action::Continue
    }
}
