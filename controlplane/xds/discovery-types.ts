import type { AnyMessage } from "./codec.ts";

// Shapes of the ADS messages as @grpc/proto-loader decodes them (keepCase, enums as strings).

export interface EnvoyNode {
  id?: string;
  cluster?: string;
  user_agent_name?: string;
  user_agent_build_version?: unknown;
}

export interface DiscoveryRequest {
  version_info?: string;
  node?: EnvoyNode | null;
  resource_names?: string[];
  type_url?: string;
  response_nonce?: string;
  error_detail?: { code?: number; message?: string } | null;
}

export interface DiscoveryResponse {
  version_info: string;
  resources: AnyMessage[];
  type_url: string;
  nonce: string;
}

export interface DeltaDiscoveryRequest {
  node?: EnvoyNode | null;
  type_url?: string;
  resource_names_subscribe?: string[];
  resource_names_unsubscribe?: string[];
  initial_resource_versions?: Record<string, string>;
  response_nonce?: string;
  error_detail?: { code?: number; message?: string } | null;
}

export interface DeltaResource {
  name: string;
  version: string;
  resource: AnyMessage;
}

export interface DeltaDiscoveryResponse {
  system_version_info: string;
  resources: DeltaResource[];
  type_url: string;
  removed_resources: string[];
  nonce: string;
}
