# Redis for coord-redis's tests (sourced by scripts/test.sh; idempotent).
#
# Every machine of this project's kind (CI's too) starts Redis on 127.0.0.1:6379, keeping
# nothing on disk, before the session; this only checks that it answers, and starts it with
# the machine's own command if it stopped. The tests use keys under a prefix unique to each
# run and remove them, so nothing here is cleared.

redis_setup() {
  if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    ensure_packages redis-server redis-tools
  fi
  if [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" != "PONG" ]; then
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
      --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
  fi
  wait_port 127.0.0.1 6379 30
  local i
  for ((i = 0; i < 300; i++)); do
    [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ] && break
    sleep 0.1
  done
  [ "$(redis-cli -h 127.0.0.1 -p 6379 ping)" = "PONG" ]
}

redis_setup
