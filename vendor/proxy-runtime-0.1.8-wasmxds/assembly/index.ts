export {
    BaseContext, RootContext, Context, registerRootContext,
    LogLevelValues, WasmResultValues, GrpcStatusValues,
    FilterStatusValues,
    FilterHeadersStatusValues,
    FilterMetadataStatusValues,
    FilterTrailersStatusValues,
    FilterDataStatusValues, stream_context,
    HeaderPair, Headers,
    Gauge, Histogram, Counter, log,
    HttpCallback, send_local_response, continue_request, continue_response, proxy_set_effective_context
} from "./runtime";