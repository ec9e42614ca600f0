# MariaDB for coord-mysql's tests (sourced by scripts/test.sh; idempotent).
#
# Makes sure that:
# - MariaDB is installed and running, answering on 127.0.0.1:3306 (started here as a
#   background daemon when it is not: `mariadbd --user=mysql`, loopback only);
# - database `test` exists;
# - root can log in over TCP from 127.0.0.1 with no password (the test servers' convention;
#   the tests create their own password users for the wrong-password case);
# - a second, TLS-enabled instance answers on 127.0.0.1:3307 (data, socket and a test CA made
#   here, never committed, in $TEST_ROOT/mariadb-tls), for the `tls = require` tests: the
#   server certificate is for 127.0.0.1 and localhost, signed by ca.pem there.

mariadb_ping() {
  mysqladmin -h127.0.0.1 -P3306 -uroot --connect-timeout=2 ping >/dev/null 2>&1
}

# Alive through TCP or, as the system root, through the unix socket: on a fresh data
# directory with skip-name-resolve, TCP from 127.0.0.1 is refused ("host not allowed")
# until the accounts below exist, and mysqladmin then reports the server as down.
mariadb_alive() {
  mariadb_ping || mysqladmin --protocol=socket -uroot --connect-timeout=2 ping >/dev/null 2>&1
}

mariadb_tcp_root() {
  mysql -h127.0.0.1 -P3306 -uroot --connect-timeout=2 -e 'SELECT 1' >/dev/null 2>&1
}

mariadb_setup() {
  if ! command -v mysqladmin >/dev/null || ! mariadb_alive; then
    ensure_packages mariadb-server mariadb-client
  fi
  if ! mariadb_alive; then
    install -d -o mysql -g mysql -m 0755 /run/mysqld
    if [ ! -d /var/lib/mysql/mysql ]; then
      mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
    fi
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- \
      --user=mysql --bind-address=127.0.0.1 --port=3306 --skip-name-resolve
    wait_port 127.0.0.1 3306 60
    local i
    for ((i = 0; i < 300; i++)); do
      mariadb_alive && break
      sleep 0.1
    done
    mariadb_alive || {
      echo "mariadb: not answering on 127.0.0.1:3306 (see /var/log/mysql/error.log)" >&2
      return 1
    }
  fi

  # Root over TCP with no password. A fresh Debian install lets the system root in through
  # the unix socket only (unix_socket auth), so fix the accounts through the socket.
  if ! mariadb_tcp_root; then
    mysql --protocol=socket -uroot <<'SQL'
CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED VIA mysql_native_password USING '';
ALTER USER 'root'@'127.0.0.1' IDENTIFIED VIA mysql_native_password USING '';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING '';
FLUSH PRIVILEGES;
SQL
  fi
  mariadb_tcp_root || {
    echo "mariadb: root cannot log in over TCP without a password" >&2
    return 1
  }
  mysql -h127.0.0.1 -P3306 -uroot -e 'CREATE DATABASE IF NOT EXISTS test'
}

mariadb_tls_setup() {
  local dir=$TEST_ROOT/mariadb-tls
  if mysqladmin -h127.0.0.1 -P3307 -uroot --connect-timeout=2 ping >/dev/null 2>&1 \
    && [ -s "$dir/ca.pem" ]; then
    return 0
  fi
  ensure_packages openssl
  install -d -o mysql -g mysql -m 0755 "$dir"
  if [ ! -s "$dir/server.pem" ] || [ ! -s "$dir/ca.pem" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=ha-listener mariadb test CA" \
      -keyout "$dir/ca.key" -out "$dir/ca.pem" >/dev/null 2>&1
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
      -keyout "$dir/server.key" -out "$dir/server.csr" >/dev/null 2>&1
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$dir/san.ext"
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
      -CAcreateserial -days 3650 -extfile "$dir/san.ext" -out "$dir/server.pem" >/dev/null 2>&1
    chown mysql:mysql "$dir"/server.* "$dir/ca.pem"
  fi
  if [ ! -d "$dir/data/mysql" ]; then
    install -d -o mysql -g mysql -m 0750 "$dir/data"
    mariadb-install-db --no-defaults --user=mysql --datadir="$dir/data" >/dev/null
  fi
  start-stop-daemon --start --oknodo --background --pidfile "$dir/daemon.pid" --make-pidfile \
    --exec /usr/sbin/mariadbd -- --no-defaults --user=mysql --datadir="$dir/data" \
    --socket="$dir/mysqld.sock" --pid-file="$dir/mariadbd.pid" --bind-address=127.0.0.1 \
    --port=3307 --skip-name-resolve --innodb-buffer-pool-size=32M --performance-schema=ON \
    --ssl-ca="$dir/ca.pem" --ssl-cert="$dir/server.pem" --ssl-key="$dir/server.key" \
    --log-error="$dir/error.log"
  wait_port 127.0.0.1 3307 60
  local i
  for ((i = 0; i < 300; i++)); do
    mysqladmin --socket="$dir/mysqld.sock" -uroot --connect-timeout=2 ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  mysql --socket="$dir/mysqld.sock" -uroot <<'SQL'
CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED VIA mysql_native_password USING '';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
CREATE DATABASE IF NOT EXISTS test;
FLUSH PRIVILEGES;
SQL
}

mariadb_setup
mariadb_tls_setup
