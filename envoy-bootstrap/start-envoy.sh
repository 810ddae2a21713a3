#!/bin/sh
# Starts Envoy on envoy-bootstrap/envoy.yaml with the control plane's xDS token written in.
#
#   sh start-envoy.sh [bootstrap] [envoy args...]      (docker-compose.yml runs it in the Envoy container)
#
# Envoy does not expand environment variables in a bootstrap, and the token must not live in
# the repository: this replaces the bootstrap's `__CP_XDS_TOKEN__` placeholder (the
# `authorization: Bearer ...` initial_metadata of the ADS service and of the stats sink) with
# $CP_XDS_TOKEN in a private copy, then execs Envoy on that copy. The token is checked against
# the charset the control plane accepts (config.ts), which also keeps the sed expression safe.
set -eu
template="${1:-/etc/envoy/envoy.yaml}"
[ "$#" -gt 0 ] && shift
: "${CP_XDS_TOKEN:?start-envoy.sh: set CP_XDS_TOKEN to the control plane's xDS token}"
case "$CP_XDS_TOKEN" in
  *[!A-Za-z0-9._~+/=-]*)
    echo "start-envoy.sh: CP_XDS_TOKEN: expected letters, digits and - . _ ~ + / = only" >&2
    exit 2
    ;;
esac
umask 077
rendered="${TMPDIR:-/tmp}/envoy-with-token.yaml"
sed "s|__CP_XDS_TOKEN__|${CP_XDS_TOKEN}|g" "$template" >"$rendered"
if grep -q "__CP_XDS_TOKEN__" "$rendered" || ! grep -q "Bearer ${CP_XDS_TOKEN}" "$rendered"; then
  echo "start-envoy.sh: $template has no __CP_XDS_TOKEN__ placeholder to replace" >&2
  exit 2
fi
exec "${ENVOY:-envoy}" -c "$rendered" "$@"
