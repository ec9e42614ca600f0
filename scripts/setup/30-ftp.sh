# FTP test servers for transfer-ftp (sourced by scripts/test.sh; idempotent).
#
# Starts on loopback:
#   vsftpd  127.0.0.1:2121  (no MLSD; explicit FTPS optional on the same port), passive 30000-30099
#   proftpd 127.0.0.1:2122  (MLSD;    explicit FTPS optional on the same port), passive 30100-30199
#   vsftpd  127.0.0.1:2125  (implicit FTPS: TLS from the first byte; the same root as 2121),
#           passive 30300-30349
# and writes configs for two more instances that the restart tests start and kill themselves:
#   vsftpd 2123 (passive 30200-30249), proftpd 2124 (passive 30250-30299).
#
# Debian's vsftpd and proftpd-core conflict (both provide ftp-server): proftpd comes from apt,
# vsftpd's binary is unpacked from its .deb into $TEST_ROOT/ftp/vsftpd-pkg.
#
# Layout under $TEST_ROOT/ftp: password (the test user's, random, made once), tls/ (a CA and a
# server certificate for 127.0.0.1/localhost, made here, never committed), vsftpd/ and
# proftpd/ (the served roots: the test user `hatest` lands there), run/ (configs, logs, pids).

ftp_setup() {
  local root="$TEST_ROOT/ftp"
  local run="$root/run" tls="$root/tls"
  ensure_packages proftpd-core proftpd-mod-crypto openssl curl libwrap0 libcap2 libpam0g \
    libpam-modules libssl3 procps
  mkdir -p "$root" "$run" "$tls" "$root/home" "$root/vsftpd" "$root/proftpd" "$run/vsftpd-empty"

  # vsftpd: unpack the .deb (cannot be installed next to proftpd-core).
  local vsftpd_bin="$root/vsftpd-pkg/usr/sbin/vsftpd"
  if [ ! -x "$vsftpd_bin" ]; then
    local dl
    dl=$(mktemp -d)
    if ! (cd "$dl" && apt-get download vsftpd >/dev/null 2>&1); then
      [ -n "${APT_UPDATED:-}" ] || { apt-get update -qq && export APT_UPDATED=1; }
      (cd "$dl" && apt-get download vsftpd >/dev/null)
    fi
    dpkg -x "$dl"/vsftpd_*.deb "$root/vsftpd-pkg"
    rm -rf "$dl"
  fi
  ln -sf "$vsftpd_bin" "$root/vsftpd-bin"

  # The test user: password from $root/password (made once), lands in the served roots.
  if [ ! -s "$root/password" ]; then
    (umask 077 && openssl rand -hex 16 >"$root/password")
  fi
  if ! id hatest >/dev/null 2>&1; then
    useradd --no-create-home --home-dir "$root/home" --shell /bin/bash hatest
  fi
  echo "hatest:$(cat "$root/password")" | chpasswd
  chmod 0755 "$TEST_ROOT" "$root"
  # Directories left by earlier test runs (the tests make a new one each time).
  rm -rf "$root"/vsftpd/t-* "$root"/proftpd/t-*
  chown hatest: "$root/home" "$root/vsftpd" "$root/proftpd"
  chmod 0755 "$root/vsftpd" "$root/proftpd"

  # A private CA and a server certificate signed by it (made here; never committed).
  if [ ! -s "$tls/server.pem" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=ha-listener test CA" \
      -keyout "$tls/ca.key" -out "$tls/ca.pem" >/dev/null 2>&1
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
      -keyout "$tls/server.key" -out "$tls/server.csr" >/dev/null 2>&1
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' >"$tls/ext.cnf"
    openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" \
      -CAcreateserial -days 3650 -extfile "$tls/ext.cnf" -out "$tls/server.pem" >/dev/null 2>&1
    chmod 600 "$tls"/*.key
  fi

  # PAM service for vsftpd (the unpacked package does not install its own).
  if [ ! -f /etc/pam.d/ha-listener-vsftpd ]; then
    printf 'auth required pam_unix.so\naccount required pam_unix.so\nsession required pam_unix.so\n' \
      >/etc/pam.d/ha-listener-vsftpd
  fi

  ftp_vsftpd_conf 2121 30000 30099 YES >"$run/vsftpd.conf"
  { ftp_vsftpd_conf 2125 30300 30349 YES; echo "implicit_ssl=YES"; } >"$run/vsftpd-implicit.conf"
  ftp_vsftpd_conf 2123 30200 30249 NO >"$run/vsftpd-restart.conf"
  ftp_proftpd_conf 2122 30100 30199 main >"$run/proftpd.conf"
  ftp_proftpd_conf 2124 30250 30299 restart >"$run/proftpd-restart.conf"

  if ! port_open 127.0.0.1 2121; then
    echo "starting vsftpd on 127.0.0.1:2121"
    "$vsftpd_bin" "$run/vsftpd.conf"
  fi
  if ! port_open 127.0.0.1 2122; then
    echo "starting proftpd on 127.0.0.1:2122"
    proftpd -c "$run/proftpd.conf"
  fi
  if ! port_open 127.0.0.1 2125; then
    echo "starting vsftpd (implicit FTPS) on 127.0.0.1:2125"
    "$vsftpd_bin" "$run/vsftpd-implicit.conf"
  fi
  wait_port 127.0.0.1 2121 30
  wait_port 127.0.0.1 2125 30
  wait_port 127.0.0.1 2122 30
}

# ftp_vsftpd_conf PORT PASV_MIN PASV_MAX BACKGROUND
ftp_vsftpd_conf() {
  local root="$TEST_ROOT/ftp"
  cat <<EOF
listen=YES
listen_ipv6=NO
listen_address=127.0.0.1
listen_port=$1
background=$4
anonymous_enable=NO
local_enable=YES
write_enable=YES
local_umask=022
local_root=$root/vsftpd
chroot_local_user=YES
allow_writeable_chroot=YES
pam_service_name=ha-listener-vsftpd
secure_chroot_dir=$root/run/vsftpd-empty
nopriv_user=nobody
seccomp_sandbox=NO
isolate=NO
isolate_network=NO
force_dot_files=YES
use_localtime=NO
pasv_enable=YES
pasv_address=127.0.0.1
pasv_min_port=$2
pasv_max_port=$3
max_clients=50
vsftpd_log_file=$root/run/vsftpd-$1.log
xferlog_enable=YES
ssl_enable=YES
allow_anon_ssl=NO
force_local_logins_ssl=NO
force_local_data_ssl=NO
require_ssl_reuse=NO
ssl_ciphers=HIGH
ssl_tlsv1=NO
ssl_sslv2=NO
ssl_sslv3=NO
rsa_cert_file=$root/tls/server.pem
rsa_private_key_file=$root/tls/server.key
EOF
}

# ftp_proftpd_conf PORT PASV_MIN PASV_MAX NAME
ftp_proftpd_conf() {
  local root="$TEST_ROOT/ftp"
  cat <<EOF
ServerName "ha-listener proftpd $4"
ServerType standalone
DefaultAddress 127.0.0.1
SocketBindTight on
UseIPv6 off
Port $1
PassivePorts $2 $3
MaxInstances 50
User nobody
Group nogroup
Umask 022
AllowOverwrite on
UseReverseDNS off
DefaultRoot $root/proftpd
RequireValidShell off
AuthOrder mod_auth_unix.c
WtmpLog off
DelayEngine off
PidFile $root/run/proftpd-$4.pid
ScoreboardFile $root/run/proftpd-$4.scoreboard
SystemLog $root/run/proftpd-$4.log
TransferLog none
ListOptions "-a"
ModulePath /usr/lib/proftpd
LoadModule mod_tls.c
<IfModule mod_tls.c>
  TLSEngine on
  TLSRequired off
  TLSProtocol TLSv1.2 TLSv1.3
  TLSRSACertificateFile $root/tls/server.pem
  TLSRSACertificateKeyFile $root/tls/server.key
  TLSVerifyClient off
  TLSOptions NoSessionReuseRequired
  TLSLog $root/run/proftpd-$4-tls.log
</IfModule>
<Directory />
  AllowOverwrite on
</Directory>
EOF
}

ftp_setup
