#!/usr/bin/env bash
# Quick start: install the Debian packages the appliance needs, build it, create a demo appliance
# (SoftHSM2 token, SQLite database, demo TLS PKI, CA ceremony) and serve it in the foreground.
# Usage: ./quickstart.sh [DIR]   (DIR defaults to ./demo; an existing demo is reused)
#
# Stopping it (Ctrl-C, or SIGTERM to this script's PID) stops everything it started: the script
# `exec`s the server, so its PID is the server's, and vendor-sim runs under a parent-death signal
# (`setpriv --pdeathsig TERM`), so it goes when the server goes.
# QUICKSTART_BIN_DIR=DIR skips the package install and the release build and uses the binaries
# already in DIR (e.g. target/debug); the system tests run the script that way.
set -euo pipefail

cd "$(dirname "$0")"
DIR="${1:-demo}"
API_ADDR="${API_ADDR:-127.0.0.1:8443}"
PUBLIC_ADDR="${PUBLIC_ADDR:-127.0.0.1:8080}"
VENDOR_SIM_ADDR="${VENDOR_SIM_ADDR:-127.0.0.1:8099}"

if [ -n "${QUICKSTART_BIN_DIR:-}" ]; then
    BIN_DIR="$(cd "$QUICKSTART_BIN_DIR" && pwd)"
else
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    need=()
    for pkg in softhsm2 opensc openssl curl; do
        dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
    done
    if [ "${#need[@]}" -gt 0 ]; then
        $SUDO apt-get update
        $SUDO apt-get install -y --no-install-recommends "${need[@]}"
    fi
    # The appliance, the plugin worker, vendor-sim and the verifier plugin libraries.
    cargo build --release --workspace --lib --bins
    BIN_DIR="$PWD/target/release"
fi
BIN="$BIN_DIR/ca-appliance"

if [ ! -f "$DIR/appliance.toml" ]; then
    "$BIN" init --dir "$DIR" --demo --api-addr "$API_ADDR" --public-addr "$PUBLIC_ADDR" \
        --vendor-sim-addr "$VENDOR_SIM_ADDR"
fi
DIR="$(cd "$DIR" && pwd)"

# The vendor simulator stands in for the carrier, bank, SMS, face, payout and registry APIs the
# demo channel's verifier plugins call. Its parent is this process, which becomes the server
# (exec below): the kernel sends it SIGTERM when the server exits, however it is stopped.
if [ -f "$DIR/secrets/vendor-sim-api-key" ]; then
    # The partner webhook sink checks the signatures of the demo channel's callbacks.
    PARTNER=()
    if [ -f "$DIR/secrets/partner-webhook-secret" ]; then
        PARTNER=(--partner-secret-file "$DIR/secrets/partner-webhook-secret")
    fi
    setpriv --pdeathsig TERM -- "$BIN_DIR/vendor-sim" --addr "$VENDOR_SIM_ADDR" \
        --api-key "$(cat "$DIR/secrets/vendor-sim-api-key")" "${PARTNER[@]}" \
        >"$DIR/vendor-sim.log" 2>&1 &
fi

if [ ! -f "$DIR/quickstart.csr" ]; then
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$DIR/quickstart.key" -out "$DIR/quickstart.csr" -subj "/CN=ignored" 2>/dev/null
fi

cat <<MSG

The appliance is starting (Ctrl-C stops it). In another terminal, issue a certificate directly as
the operator over mTLS (a channel's certificates come from applications, see README):

curl --cacert $DIR/tls/ca.pem --cert $DIR/tls/operator.pem --key $DIR/tls/operator.key \\
  -H 'content-type: application/json' https://$API_ADDR/api/v1/certificates \\
  --data "\$(python3 -c 'import json,sys; print(json.dumps({"profile":"personal","csr":open(sys.argv[1]).read(),"subject":{"name":"Demo User"}}))' $DIR/quickstart.csr)"

Verify a (simulated) phone owner with the phone-real-name plugin, then read the SMS code the
simulator "sent" and submit it (replace ID with the verification id from the first answer):

C="curl -s --cacert $DIR/tls/ca.pem --cert $DIR/tls/channel-demo.pem --key $DIR/tls/channel-demo.key -H content-type:application/json"
\$C https://$API_ADDR/api/v1/verifications --data '{"plugin":"phone-real-name","applicant":{"name":"张三","id_number":"11010519491231002X","phone":"13800138000"}}'
curl -s 'http://$VENDOR_SIM_ADDR/_sim/sms?phone=13800138000'
\$C https://$API_ADDR/api/v1/verifications/ID/input --data '{"kind":"sms_code","value":"CODE"}'

CA certificates: http://$PUBLIC_ADDR/ca/root.pem  http://$PUBLIC_ADDR/ca/personal.pem
OCSP: http://$PUBLIC_ADDR/ocsp   CRL: http://$PUBLIC_ADDR/crl/personal.crl

Enrollment page (applicants, mobile, Chinese): http://$PUBLIC_ADDR/enroll/
Operator console (import tls/operator.pem + .key into the browser): https://$API_ADDR/console/
MSG

# exec: the server takes this script's PID, so a signal to the script reaches the server, which
# shuts down gracefully (in-flight requests answered, plugin workers stopped).
exec "$BIN" serve --config "$DIR/appliance.toml"
