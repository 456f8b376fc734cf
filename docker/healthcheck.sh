#!/bin/sh
# Healthy while the daemon publishes status messages. With CURVE on (a non-loopback bind), the
# check is a subscriber like any other and needs a client key the daemon accepts:
#   EDGEVID_HEALTH_CLIENT_KEY  client secret key file (its .key public half in curve_authorized_keys)
#   EDGEVID_HEALTH_SERVER_KEY  the daemon's public key file
#   EDGEVID_HEALTH_ENDPOINT    default tcp://127.0.0.1:5555
set -eu
set -- --endpoint "${EDGEVID_HEALTH_ENDPOINT:-tcp://127.0.0.1:5555}" --topic status --count 1 --timeout 12
if [ -n "${EDGEVID_HEALTH_CLIENT_KEY:-}" ]; then
    set -- "$@" --curve-secret-key "$EDGEVID_HEALTH_CLIENT_KEY" --curve-server-key "${EDGEVID_HEALTH_SERVER_KEY:?set EDGEVID_HEALTH_SERVER_KEY too}"
fi
exec edgevid subscribe "$@" >/dev/null
