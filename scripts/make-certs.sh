#!/usr/bin/env bash
# `make certs`: a local CA and one certificate per broker (common name = broker id; valid for
# 127.0.0.1 and localhost), for the local clusters. Usage: make-certs.sh <dir> <broker id>...
# Keeps what exists: the CA is made once and a broker certificate only when missing.
set -euo pipefail
dir="${1:?usage: make-certs.sh <dir> <broker id>...}"
shift
if ! command -v openssl >/dev/null; then
  # `make run` installs what is missing: openssl from Debian's packages when we may.
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get install -y openssl >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y openssl >/dev/null 2>&1; }
  fi
  command -v openssl >/dev/null || { echo "make-certs: openssl is needed (apt-get install openssl)" >&2; exit 1; }
fi
mkdir -p "$dir"
chmod 700 "$dir"
if [ ! -f "$dir/ca.crt" ] || [ ! -f "$dir/ca.key" ]; then
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$dir/ca.key" -sha256 -days 825 -subj "/CN=Mamba MQ local CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$dir/ca.crt"
  echo "made CA $dir/ca.crt"
fi
for id in "$@"; do
  [ -f "$dir/$id.crt" ] && [ -f "$dir/$id.key" ] && continue
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/$id.key" 2>/dev/null
  openssl req -new -key "$dir/$id.key" -subj "/CN=$id" -out "$dir/$id.csr"
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:%s\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=critical,digitalSignature\n' "$id" > "$dir/$id.ext"
  openssl x509 -req -in "$dir/$id.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial -days 825 -sha256 -extfile "$dir/$id.ext" -out "$dir/$id.crt" 2>/dev/null
  rm -f "$dir/$id.csr" "$dir/$id.ext"
  echo "made certificate $dir/$id.crt"
done
chmod 600 "$dir"/*.key
