// __NAME__: a proxy-wasm HTTP filter in Rust. The control plane builds it with cargo for
// wasm32-wasip1 on every save and hot-reloads it into Envoy; `npm run filters -- test __NAME__`
// runs filter.test.json in an in-process host.
//
// It stamps `x-__NAME__` on the request and the response with the plugin configuration
// (filter.json "configuration", or the admin API's), or "on" when there is none.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { value: "on".to_string() }) });
}}

struct Root {
    value: String,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        self.value = match self.get_plugin_configuration() {
            Some(bytes) if !bytes.is_empty() => String::from_utf8_lossy(&bytes).into_owned(),
            _ => "on".to_string(),
        };
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stamp { value: self.value.clone() }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stamp {
    value: String,
}

impl Context for Stamp {}

impl HttpContext for Stamp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.add_http_request_header("x-__NAME__", &self.value);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.add_http_response_header("x-__NAME__", &self.value);
        Action::Continue
    }
}
