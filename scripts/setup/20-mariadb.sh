# MariaDB for coord-mysql's tests (sourced by scripts/test.sh; idempotent).
#
# Makes sure that:
# - MariaDB is installed and running, answering on 127.0.0.1:3306 (started here as a
#   background daemon when it is not: `mariadbd --user=mysql`, loopback only);
# - database `test` exists;
# - root can log in over TCP from 127.0.0.1 with no password (the test servers' convention;
#   the tests create their own password users for the wrong-password case).

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

mariadb_setup
