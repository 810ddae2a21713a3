export * from "@solo-io/proxy-runtime/proxy";
import {
  RootContext, Context, registerRootContext, FilterHeadersStatusValues, stream_context,
} from "@solo-io/proxy-runtime";
import { readPluginConfiguration } from "../_lib/config";

// Marks requests and responses so a `curl -v` through Envoy shows the filter ran.
// A plugin configuration string, if any, is echoed as `x-wasm-config` to prove that
// configuration reaches the filter (it must be a valid header value).

class AddHeaderRoot extends RootContext {
  configValue: string = "";

  createContext(context_id: u32): Context {
    return new AddHeader(context_id, this);
  }

  // Replaces the runtime's onConfigure, which misreads the configuration (see _lib/config.ts).
  onConfigure(configuration_size: u32): bool {
    this.configValue = readPluginConfiguration(configuration_size);
    return true;
  }
}

class AddHeader extends Context {
  configValue: string;

  constructor(context_id: u32, root_context: AddHeaderRoot) {
    super(context_id, root_context);
    this.configValue = root_context.configValue;
  }

  onRequestHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.request.add("x-wasm-processed", "yes");
    return FilterHeadersStatusValues.Continue;
  }

  onResponseHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.response.add("x-wasm-filter", "add-header");
    if (this.configValue.length > 0) {
      stream_context.headers.response.add("x-wasm-config", this.configValue);
    }
    return FilterHeadersStatusValues.Continue;
  }
}

registerRootContext((context_id: u32): RootContext => {
  return new AddHeaderRoot(context_id);
}, "add-header");
