#!/usr/bin/env bash
# Builds the ca-appliance Debian package with dpkg-deb (no cargo-deb needed).
#
#   packaging/build-deb.sh [--bin-dir DIR] [--out DIR] [--fast]
#
# --bin-dir: where the built binaries and plugin libraries are (default: target/release, built
#            with `cargo build --release --workspace --lib --bins` if missing);
# --out:     where the .deb goes (default: target/debian);
# --fast:    gzip -1 instead of xz (the CI package test).
# Prints the path of the .deb on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
bin_dir="$root/target/release"
out="$root/target/debian"
compress=(-Zxz)
while [ $# -gt 0 ]; do
    case "$1" in
        --bin-dir) bin_dir=$(cd "$2" && pwd); shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --fast) compress=(-Zgzip -z1); shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
if [ ! -x "$bin_dir/ca-appliance" ]; then
    cargo build --release --workspace --lib --bins
fi
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
mkdir -p "$out"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
pkg="$stage/ca-appliance"

install -d -m 0755 "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/usr/lib/ca-appliance/plugins" \
    "$pkg/lib/systemd/system" "$pkg/usr/lib/sysusers.d" "$pkg/usr/lib/tmpfiles.d" \
    "$pkg/usr/share/doc/ca-appliance/examples" "$pkg/usr/share/ca-appliance/profiles" \
    "$pkg/usr/share/ca-appliance/channels" "$pkg/usr/share/ca-appliance/monitoring"
for b in ca-appliance ca-plugin-worker; do
    install -m 0755 "$bin_dir/$b" "$pkg/usr/bin/$b"
    strip --strip-debug "$pkg/usr/bin/$b"
done
# The first-party verifier and channel plugins (the misbehaving test plugin is not shipped).
for p in phone_real_name bank_card face corporate_transfer org_registry channel_notify channel_webhook; do
    install -m 0644 "$bin_dir/libplugin_$p.so" "$pkg/usr/lib/ca-appliance/plugins/"
    strip --strip-debug "$pkg/usr/lib/ca-appliance/plugins/libplugin_$p.so"
done
# ca-softtoken, the SM2-capable PKCS#11 module of this workspace (demo and tests; `init --demo
# --sm2` finds it here), with its [hsm.sm2] preset "ca-softtoken" documented in the README.
install -m 0644 "$bin_dir/libca_softtoken.so" "$pkg/usr/lib/ca-appliance/libca_softtoken.so"
strip --strip-debug "$pkg/usr/lib/ca-appliance/libca_softtoken.so"
install -m 0644 systemd/ca-appliance.service "$pkg/lib/systemd/system/"
install -m 0644 packaging/debian/ca-appliance.sysusers "$pkg/usr/lib/sysusers.d/ca-appliance.conf"
install -m 0644 packaging/debian/ca-appliance.tmpfiles "$pkg/usr/lib/tmpfiles.d/ca-appliance.conf"
install -m 0644 config/appliance.example.toml "$pkg/usr/share/doc/ca-appliance/examples/"
install -m 0644 config/profiles/*.toml "$pkg/usr/share/ca-appliance/profiles/"
# Example channel definitions (config/channels/*.toml): the operator copies the ones wanted into
# /etc/ca-appliance/channels once the plugins they name are configured.
for c in config/channels/*.toml; do
    [ -e "$c" ] && install -m 0644 "$c" "$pkg/usr/share/ca-appliance/channels/"
done
install -m 0644 packaging/monitoring/alerts.yml packaging/monitoring/grafana-dashboard.json \
    "$pkg/usr/share/ca-appliance/monitoring/"
install -m 0644 README.md ARCHITECTURE.md "$pkg/usr/share/doc/ca-appliance/"
printf 'ca-appliance\nLicense: Apache-2.0\n' > "$pkg/usr/share/doc/ca-appliance/copyright"
chmod 0644 "$pkg/usr/share/doc/ca-appliance/copyright"
install -m 0755 packaging/debian/postinst packaging/debian/postrm "$pkg/DEBIAN/"
size=$(du -sk "$pkg" | cut -f1)
cat > "$pkg/DEBIAN/control" <<CONTROL
Package: ca-appliance
Version: $version
Architecture: $arch
Maintainer: CA appliance maintainers <ca-appliance@localhost>
Installed-Size: $size
Depends: libc6 (>= 2.36), libgcc-s1, systemd (>= 252)
Recommends: softhsm2, opensc
Section: admin
Priority: optional
Homepage: https://localhost/ca-appliance
Description: self-hosted certificate-authority appliance
 An HSM-backed CA: issuance over mutual TLS, OCSP with pre-signed responses, CRLs, identity
 verification plugins in sandboxed workers, Prometheus metrics, backups.
CONTROL
deb="$out/ca-appliance_${version}_${arch}.deb"
dpkg-deb --root-owner-group "${compress[@]}" --build "$pkg" "$deb" >/dev/null
echo "$deb"
