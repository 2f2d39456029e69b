#!/usr/bin/env bash
# The servers adaptest's middleware and database tests (and examples/loopback-plan.toml) certify,
# on loopback:
#
#   PostgreSQL 5432 · MariaDB 3306 · Redis 6379 · RabbitMQ 5672 · Mosquitto 1883 · NATS 4222
#   nginx 127.0.0.1:18080 (always a private one) serving the adaptest test docroot
#
# Usage: scripts/services.sh start|stop|status
#
#   start   installs missing packages (apt-get), starts each server that is not already
#           listening on its standard port, with the same commands this machine kind uses, and
#           starts the private nginx. Idempotent: what already runs is left alone.
#   stop    stops the private nginx and only those servers that `start` itself started
#           (recorded under the state directory), each by its PID.
#   status  one line per server.
#
# State (PIDs, nginx config, docroot, logs): $ADAPTEST_SERVICES_DIR, default /tmp/adaptest-services.
set -euo pipefail

STATE="${ADAPTEST_SERVICES_DIR:-/tmp/adaptest-services}"
NGINX_PORT="${ADAPTEST_NGINX_PORT:-18080}"
WWW="$STATE/www"
export ERL_EPMD_ADDRESS=127.0.0.1

log() { printf 'services: %s\n' "$*" >&2; }

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port seconds name
  local i=0
  while ! listening "$1"; do
    i=$((i + 1))
    if [ "$i" -gt $(($2 * 10)) ]; then
      log "$3 is not listening on 127.0.0.1:$1 after $2 s"
      return 1
    fi
    sleep 0.1
  done
}

# PIDs of the processes listening on a TCP port.
port_pids() {
  ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u
}

APT_UPDATED=
apt_install() { # package...
  export DEBIAN_FRONTEND=noninteractive
  if [ -z "$APT_UPDATED" ]; then
    apt-get update -qq
    APT_UPDATED=1
  fi
  log "apt-get install $*"
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

need() { # command package
  command -v "$1" >/dev/null 2>&1 || [ -x "$1" ] || apt_install "$2"
}

# Remember the PIDs serving a port, for `stop`.
record() { # name port
  port_pids "$2" >"$STATE/$1.pids" || true
}

# ---------------------------------------------------------------- each server

start_postgres() {
  listening 5432 && return 0
  need pg_ctlcluster postgresql
  local v
  v=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1)
  if [ -z "$v" ] || [ ! -d "/etc/postgresql/$v/main" ]; then
    v=$(ls /usr/lib/postgresql | sort -V | tail -n1)
    log "creating PostgreSQL $v cluster main"
    pg_createcluster "$v" main >/dev/null
  fi
  log "starting PostgreSQL $v"
  pg_ctlcluster --skip-systemctl-redirect "$v" main start
  wait_port 5432 60 PostgreSQL
  echo "$v" >"$STATE/postgres.version"
  touch "$STATE/postgres.started"
}

start_mariadb() {
  listening 3306 && return 0
  need /usr/sbin/mariadbd mariadb-server
  install -d -o mysql -g mysql /run/mysqld
  log "starting MariaDB"
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
  wait_port 3306 60 MariaDB
  record mariadb 3306
}

start_redis() {
  listening 6379 && return 0
  need redis-server redis-server
  install -d /var/lib/redis /var/log/redis
  log "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_port 6379 30 Redis
  record redis 6379
}

start_rabbitmq() {
  listening 5672 && return 0
  need rabbitmq-server rabbitmq-server
  log "starting RabbitMQ (about 10 s)"
  rabbitmq-server -detached
  wait_port 5672 120 RabbitMQ
  record rabbitmq 5672
  port_pids 4369 >"$STATE/epmd.pids" || true
}

start_mosquitto() {
  listening 1883 && return 0
  need mosquitto mosquitto
  need mosquitto_pub mosquitto-clients
  install -d -o mosquitto /run/mosquitto /var/log/mosquitto /var/lib/mosquitto 2>/dev/null \
    || install -d /run/mosquitto /var/log/mosquitto /var/lib/mosquitto
  log "starting Mosquitto"
  mosquitto -d -c /etc/mosquitto/mosquitto.conf
  wait_port 1883 30 Mosquitto
  record mosquitto 1883
}

start_nats() {
  listening 4222 && return 0
  need /usr/sbin/nats-server nats-server
  install -d /var/lib/nats-server
  log "starting NATS (JetStream)"
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  wait_port 4222 30 NATS
  record nats 4222
}

# The adaptest test docroot (suites/mw/http.toml describes it).
write_docroot() {
  install -d -m 755 "$WWW"
  cat >"$WWW/index.html" <<'HTML'
<!DOCTYPE html>
<html lang="zh-CN">
<head><meta charset="utf-8"><title>adaptest</title></head>
<body><p>adaptest docroot — 适配测试</p></body>
</html>
HTML
  printf '中文文件名 ok\n' >"$WWW/中文.txt"
  local size=5242880
  if [ "$(stat -c %s "$WWW/big.bin" 2>/dev/null || echo 0)" != "$size" ]; then
    # 0-9a-zA-Z repeated: the same bytes as the adapters' generated payloads.
    # (`yes` ends on SIGPIPE: the pipeline's status is checked through the file's size.)
    { yes 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ | tr -d '\n' \
      | head -c "$size" >"$WWW/big.bin"; } || true
    [ "$(stat -c %s "$WWW/big.bin")" = "$size" ] || { log "could not write $WWW/big.bin"; return 1; }
  fi
  chmod 644 "$WWW"/*
}

nginx_pid() {
  local pid
  pid=$(cat "$STATE/nginx/nginx.pid" 2>/dev/null || true)
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

start_nginx() {
  need nginx nginx
  write_docroot
  if [ -n "$(nginx_pid)" ] && listening "$NGINX_PORT"; then
    return 0
  fi
  if listening "$NGINX_PORT"; then
    log "port $NGINX_PORT is taken by something else; set ADAPTEST_NGINX_PORT"
    return 1
  fi
  local d="$STATE/nginx"
  install -d "$d" "$d/logs"
  install -d -o nobody "$d/tmp"
  cat >"$d/nginx.conf" <<CONF
# Written by scripts/services.sh: a private nginx for adaptest's HTTP suite.
user nobody nogroup;
worker_processes 1;
pid $d/nginx.pid;
error_log $d/logs/error.log;
events { worker_connections 256; }
http {
  include /etc/nginx/mime.types;
  default_type application/octet-stream;
  access_log off;
  client_body_temp_path $d/tmp/body;
  proxy_temp_path $d/tmp/proxy;
  fastcgi_temp_path $d/tmp/fastcgi;
  uwsgi_temp_path $d/tmp/uwsgi;
  scgi_temp_path $d/tmp/scgi;
  keepalive_requests 10000;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    server_name localhost;
    root $WWW;
  }
}
CONF
  log "starting nginx on 127.0.0.1:$NGINX_PORT (docroot $WWW)"
  nginx -p "$d" -c "$d/nginx.conf"
  wait_port "$NGINX_PORT" 15 nginx
}

# ---------------------------------------------------------------- commands

stop_pids() { # name
  local f="$STATE/$1.pids" pid
  [ -s "$f" ] || return 0
  for pid in $(cat "$f"); do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for _ in $(seq 100); do
    local alive=
    for pid in $(cat "$f"); do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ -z "$alive" ] && break
    sleep 0.1
  done
  for pid in $(cat "$f"); do kill -KILL "$pid" 2>/dev/null || true; done
  rm -f "$f"
  log "stopped $1"
}

# The `test` database the SQL tests and the example plan use (best effort: the servers'
# authentication is the machine's business).
ensure_test_databases() {
  if command -v psql >/dev/null 2>&1 && command -v runuser >/dev/null 2>&1; then
    if ! runuser -u postgres -- psql -Atqc "select 1 from pg_database where datname = 'test'" 2>/dev/null | grep -q 1; then
      runuser -u postgres -- psql -qc 'create database test' >/dev/null 2>&1 \
        && log "created PostgreSQL database test" || true
    fi
  fi
  if command -v mariadb >/dev/null 2>&1; then
    mariadb -uroot -e 'create database if not exists test' >/dev/null 2>&1 || true
  fi
}

cmd_start() {
  install -d "$STATE"
  start_postgres
  start_mariadb
  ensure_test_databases
  start_redis
  start_rabbitmq
  start_mosquitto
  start_nats
  start_nginx
  cmd_status
}

cmd_stop() {
  local pid
  pid=$(nginx_pid || true)
  if [ -n "$pid" ]; then
    kill -QUIT "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    log "stopped nginx"
  fi
  if [ -f "$STATE/postgres.started" ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(cat "$STATE/postgres.version")" main stop || true
    rm -f "$STATE/postgres.started"
    log "stopped PostgreSQL"
  fi
  if [ -s "$STATE/rabbitmq.pids" ]; then
    rabbitmqctl stop >/dev/null 2>&1 || true
  fi
  for s in mariadb redis rabbitmq epmd mosquitto nats; do
    stop_pids "$s"
  done
}

cmd_status() {
  local name port
  while read -r name port; do
    if listening "$port"; then
      printf '%-10s 127.0.0.1:%-5s listening\n' "$name" "$port"
    else
      printf '%-10s 127.0.0.1:%-5s down\n' "$name" "$port"
    fi
  done <<EOF
postgresql 5432
mariadb 3306
redis 6379
rabbitmq 5672
mosquitto 1883
nats 4222
nginx $NGINX_PORT
EOF
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
