# Shared helpers for scripts/test.sh and scripts/setup/*.sh. Source, do not run.

# ensure_packages PKG...: installs the Debian packages that are missing (apt-get update once).
ensure_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing: ${missing[*]}"
  if [ -z "${APT_UPDATED:-}" ]; then
    apt-get update -qq
    export APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# wait_port HOST PORT [SECONDS]: waits until a TCP port accepts connections.
wait_port() {
  local host=$1 port=$2 limit=${3:-30} i
  for ((i = 0; i < limit * 10; i++)); do
    (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "timed out waiting for $host:$port" >&2
  return 1
}

# port_open HOST PORT: true when something listens.
port_open() {
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# Where the test servers keep their files (keys, configs, served directories).
export TEST_ROOT=${TEST_ROOT:-/tmp/ha-listener-test}
mkdir -p "$TEST_ROOT"
