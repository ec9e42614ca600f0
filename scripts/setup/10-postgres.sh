# PostgreSQL for coord-postgres's tests (sourced by scripts/test.sh; idempotent).
#
# Makes sure that:
# - PostgreSQL is installed and running, answering on 127.0.0.1:5432;
# - database `test` exists;
# - pg_hba.conf starts with this script's rules: role `ha_listener_pw` must give a password
#   (scram-sha-256, so the wrong-password test has something to fail against), everyone else
#   on 127.0.0.1 is trusted (the test servers' convention: user postgres, no password);
# - the server's TLS certificate is signed by a test CA made here (never committed), kept in
#   /var/lib/postgresql/ha-listener-tls (not under /tmp: a reboot must not leave the server
#   with ssl=on and no certificate), so the tests can check sslmode=verify-full against
#   ca.pem there. Clients that only require TLS are not affected.

pg_setup() {
  if ! command -v pg_ctlcluster >/dev/null || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
    ensure_packages postgresql openssl
  fi
  ensure_packages openssl
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  if ! pg_isready -q -h 127.0.0.1; then
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
  fi
  wait_port 127.0.0.1 5432 60
  local i
  for ((i = 0; i < 300; i++)); do
    pg_isready -q -h 127.0.0.1 && break
    sleep 0.1
  done
  pg_isready -h 127.0.0.1

  # From /, so psql (as postgres) does not complain about a working directory it cannot read.
  local psql=(runuser -u postgres -- env --chdir=/ psql -X -q -v ON_ERROR_STOP=1 -d postgres)

  # pg_hba.conf: our rules first (the first matching line wins).
  local hba
  hba=$("${psql[@]}" -Atc 'SHOW hba_file')
  local marker="# ha-listener test rules (scripts/setup/10-postgres.sh)"
  if ! grep -qF "$marker" "$hba"; then
    local tmp
    tmp=$(mktemp)
    {
      echo "$marker"
      echo "host all ha_listener_pw 127.0.0.1/32 scram-sha-256"
      echo "host all all 127.0.0.1/32 trust"
      echo "# end of ha-listener test rules"
      cat "$hba"
    } >"$tmp"
    cat "$tmp" >"$hba"
    rm -f "$tmp"
    "${psql[@]}" -c 'SELECT pg_reload_conf()' >/dev/null
  fi

  # A second password role, for the listener's configuration tests (its own role, so that
  # coord-postgres's tests changing ha_listener_pw's password cannot race them).
  if ! grep -qF "host all ha_listener_cfg 127.0.0.1/32 scram-sha-256" "$hba"; then
    sed -i "1i host all ha_listener_cfg 127.0.0.1/32 scram-sha-256" "$hba"
    "${psql[@]}" -c 'SELECT pg_reload_conf()' >/dev/null
  fi

  # TLS: a test CA and a server certificate for 127.0.0.1 / localhost.
  local tls=/var/lib/postgresql/ha-listener-tls
  if [ ! -s "$tls/server.pem" ] || [ ! -s "$tls/server.key" ] || [ ! -s "$tls/ca.pem" ]; then
    mkdir -p "$tls"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=ha-listener pg test CA" \
      -keyout "$tls/ca.key" -out "$tls/ca.pem" >/dev/null 2>&1
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
      -keyout "$tls/server.key" -out "$tls/server.csr" >/dev/null 2>&1
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' \
      >"$tls/ext.cnf"
    openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" \
      -CAcreateserial -days 3650 -extfile "$tls/ext.cnf" -out "$tls/server.pem" >/dev/null 2>&1
    chown -R postgres: "$tls"
    chmod 600 "$tls"/*.key
    chmod 644 "$tls/ca.pem" "$tls/server.pem"
    chmod 755 "$tls"
  fi
  if [ "$("${psql[@]}" -Atc 'SHOW ssl_cert_file')" != "$tls/server.pem" ]; then
    "${psql[@]}" -c "ALTER SYSTEM SET ssl_cert_file = '$tls/server.pem'" \
      -c "ALTER SYSTEM SET ssl_key_file = '$tls/server.key'" -c "ALTER SYSTEM SET ssl = on" \
      >/dev/null
    "${psql[@]}" -c 'SELECT pg_reload_conf()' >/dev/null
  fi

  # The tests' database.
  if [ "$("${psql[@]}" -Atc "SELECT 1 FROM pg_database WHERE datname = 'test'")" != 1 ]; then
    "${psql[@]}" -c 'CREATE DATABASE test' >/dev/null
  fi
}

pg_setup
