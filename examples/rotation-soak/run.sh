#!/usr/bin/env bash
# Rotation soak (issue 10's scenario): nginx writes a JSON access log under load from a local
# HTTP load generator, `logbelt run` follows it into PostgreSQL, and the real logrotate rotates
# it twice while the load runs: first `create` + `postrotate nginx -s reopen`, then
# `copytruncate`. At the end it counts the lines on disk, the rows, the lines stored twice or
# never, and the append-to-row latency before and after each rotation; then restarts logbelt
# (`run --once`), which must store nothing more. Exit 0 when every line on disk is stored once.
#
# Loopback only: nginx listens on 127.0.0.1, the load comes from 127.0.0.1.
#
#   sudo examples/rotation-soak/run.sh                 # ~1 minute with the defaults
#   PHASE_SECONDS=60 LOGBELT_BIN=target/release/logbelt examples/rotation-soak/run.sh
#
# Settings (environment):
#   LOGBELT_BIN     logbelt binary (default: target/release/logbelt, built if missing)
#   PG_ADMIN_URL    PostgreSQL admin URL (default postgres://postgres@127.0.0.1:5432/postgres);
#                   a database logbelt_soak_<pid> is created on it and dropped at the end
#   PHASE_SECONDS   seconds of load before the first rotation, between them, and after (15)
#   PORT            nginx's port on 127.0.0.1 (18080)
#   INCLUDE         logbelt's include glob, relative to the work dir (logs/access.json*)
#   KEEP=1          keep the work dir and the database for a look afterwards
#
# Needs root (nginx, apt-get), psql and python3. Installs nginx, and wrk (else apache2-utils'
# ab) with apt-get when missing; without either, a small Python client makes the load.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)

PHASE_SECONDS=${PHASE_SECONDS:-15}
PORT=${PORT:-18080}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
INCLUDE=${INCLUDE:-logs/access.json*}
LOGBELT_BIN=${LOGBELT_BIN:-$repo/target/release/logbelt}
KEEP=${KEEP:-0}

say() { printf '[soak %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# ---------------------------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------------------------

apt_install() {
    # Keep a package's service from starting on install (nginx would listen on port 80): a
    # policy-rc.d that refuses, only while installing and only if there is none already.
    local policy=/usr/sbin/policy-rc.d made_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        made_policy=1
    fi
    local rc=0
    if [ -z "${apt_updated:-}" ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq || rc=$?
        apt_updated=1
    fi
    if [ "$rc" -eq 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" \
            >/dev/null || rc=$?
    fi
    if [ "$made_policy" -eq 1 ]; then rm -f "$policy"; fi
    return "$rc"
}

command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { say "installing nginx"; apt_install nginx; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
command -v logrotate >/dev/null || [ -x /usr/sbin/logrotate ] || { say "installing logrotate"; apt_install logrotate; }
LOGROTATE=$(command -v logrotate || echo /usr/sbin/logrotate)

loadgen=python
if command -v wrk >/dev/null || apt_install wrk 2>/dev/null; then
    loadgen=wrk
elif command -v ab >/dev/null || apt_install apache2-utils 2>/dev/null; then
    loadgen=ab
fi
command -v psql >/dev/null
command -v python3 >/dev/null

if [ ! -x "$LOGBELT_BIN" ]; then
    say "building logbelt (release)"
    cargo build --release --bin logbelt
    LOGBELT_BIN=$repo/target/release/logbelt
fi

# ---------------------------------------------------------------------------------------------
# The work dir, the database, and clean-up of what this script started (by pid, nothing else)
# ---------------------------------------------------------------------------------------------

work=$(mktemp -d /tmp/logbelt-soak.XXXXXX)
chmod 0755 "$work"
mkdir -m 0755 "$work/logs" "$work/nginx"
db=logbelt_soak_$$
db_url="${PG_ADMIN_URL%/*}/$db"
psql -q "$PG_ADMIN_URL" -c "CREATE DATABASE $db" >/dev/null

logbelt_pid="" load_pid=""
cleanup() {
    set +e
    [ -n "$load_pid" ] && kill "$load_pid" 2>/dev/null && wait "$load_pid" 2>/dev/null
    if [ -f "$work/nginx/nginx.pid" ]; then
        "$NGINX" -p "$work/nginx" -c "$work/nginx/nginx.conf" -s quit 2>/dev/null
    fi
    [ -n "$logbelt_pid" ] && kill -INT "$logbelt_pid" 2>/dev/null && wait "$logbelt_pid" 2>/dev/null
    if [ "$KEEP" = 1 ]; then
        say "kept $work and database $db"
    else
        psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
        rm -rf "$work"
    fi
}
trap cleanup EXIT

# ---------------------------------------------------------------------------------------------
# nginx: a JSON access log, one line per request, $request_id as the line's identity
# ---------------------------------------------------------------------------------------------

cat >"$work/nginx/nginx.conf" <<EOF
user root;
worker_processes 1;
daemon on;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 1024; }
http {
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    log_format json escape=json '{"time":"\$time_iso8601","msec":\$msec,"id":"\$request_id",'
        '"remote":"\$remote_addr","method":"\$request_method","uri":"\$request_uri",'
        '"status":\$status,"bytes":\$body_bytes_sent,"request_time":\$request_time,'
        '"agent":"\$http_user_agent"}';
    access_log $work/logs/access.json json;
    server {
        listen 127.0.0.1:$PORT;
        location / { return 200 "ok\n"; }
    }
}
EOF
"$NGINX" -p "$work/nginx" -c "$work/nginx/nginx.conf" -t -q
"$NGINX" -p "$work/nginx" -c "$work/nginx/nginx.conf"

# ---------------------------------------------------------------------------------------------
# logbelt
# ---------------------------------------------------------------------------------------------

cat >"$work/logbelt.toml" <<EOF
[database]
url = "$db_url"

[agent]
host = "soak"

[[sources]]
name = "nginx"
include = ["$INCLUDE"]

[pipeline]
flush_interval_ms = 200
poll_interval_ms = 1000
EOF
"$LOGBELT_BIN" run --config "$work/logbelt.toml" 2>"$work/logbelt.stderr" &
logbelt_pid=$!
for _ in $(seq 1 100); do
    grep -q "Pipeline started" "$work/logbelt.stderr" && break
    kill -0 "$logbelt_pid" || { cat "$work/logbelt.stderr"; exit 1; }
    sleep 0.1
done

# ---------------------------------------------------------------------------------------------
# logrotate: the two setups of the issue
# ---------------------------------------------------------------------------------------------

cat >"$work/logrotate-create.conf" <<EOF
"$work/logs/access.json" {
    rotate 10
    create 0644 root root
    sharedscripts
    postrotate
        "$NGINX" -p "$work/nginx" -c "$work/nginx/nginx.conf" -s reopen
    endscript
}
EOF
cat >"$work/logrotate-copytruncate.conf" <<EOF
"$work/logs/access.json" {
    rotate 10
    copytruncate
}
EOF
chmod 0644 "$work"/logrotate-*.conf

# ---------------------------------------------------------------------------------------------
# Load: unique URLs until stopped
# ---------------------------------------------------------------------------------------------

total_seconds=$((PHASE_SECONDS * 3 + 5))
url="http://127.0.0.1:$PORT"
case "$loadgen" in
wrk)
    cat >"$work/unique.lua" <<'EOF'
local counter = 0
local threads = 0
function setup(thread) thread:set("tid", threads); threads = threads + 1 end
function request()
    counter = counter + 1
    return wrk.format("GET", "/item/" .. tostring(tid) .. "-" .. counter)
end
EOF
    wrk -t1 -c8 -d"${total_seconds}s" -s "$work/unique.lua" "$url" >"$work/load.out" 2>&1 &
    ;;
ab)
    # ab repeats one URL; the request id still tells the lines apart.
    ab -q -k -c 8 -t "$total_seconds" -n 100000000 "$url/item/ab" >"$work/load.out" 2>&1 &
    ;;
python)
    python3 - "$PORT" "$total_seconds" >"$work/load.out" 2>&1 <<'EOF' &
import http.client, sys, threading, time
port, seconds = int(sys.argv[1]), float(sys.argv[2])
end = time.time() + seconds
def run(t):
    c = http.client.HTTPConnection("127.0.0.1", port)
    n = 0
    while time.time() < end:
        c.request("GET", f"/item/py{t}-{n}")
        c.getresponse().read()
        n += 1
threads = [threading.Thread(target=run, args=(t,)) for t in range(4)]
[t.start() for t in threads]
[t.join() for t in threads]
EOF
    ;;
esac
load_pid=$!
say "load: $loadgen on $url; logbelt $LOGBELT_BIN -> $db; work dir $work"

sleep "$PHASE_SECONDS"
rot1=$(date +%s.%N)
say "rotation 1: create + postrotate nginx -s reopen"
"$LOGROTATE" -f -s "$work/logrotate.state" "$work/logrotate-create.conf"
sleep "$PHASE_SECONDS"
rot2=$(date +%s.%N)
say "rotation 2: copytruncate"
"$LOGROTATE" -f -s "$work/logrotate.state" "$work/logrotate-copytruncate.conf"
sleep "$PHASE_SECONDS"
say "stopping the load"
kill "$load_pid" 2>/dev/null || true
wait "$load_pid" 2>/dev/null || true
load_pid=""
"$NGINX" -p "$work/nginx" -c "$work/nginx/nginx.conf" -s quit
for _ in $(seq 1 50); do [ -f "$work/nginx/nginx.pid" ] || break; sleep 0.1; done

# ---------------------------------------------------------------------------------------------
# Catch-up: until the row count stops changing for 15 s (the grace for a rotated file is 5 s),
# at most 120 s
# ---------------------------------------------------------------------------------------------

rows() { psql -At "$db_url" -c "SELECT (SELECT count(*) FROM log_events) + (SELECT count(*) FROM dead_letters)"; }
last=-1 stable=0
for _ in $(seq 1 120); do
    now=$(rows)
    if [ "$now" = "$last" ]; then stable=$((stable + 1)); else stable=0; last=$now; fi
    [ "$stable" -ge 15 ] && break
    sleep 1
done
kill -INT "$logbelt_pid"
wait "$logbelt_pid" || say "logbelt exited with $?"
logbelt_pid=""
say "logbelt's files table:"
psql "$db_url" -c "SELECT path, committed_offset, updated_at FROM files ORDER BY path"

# A restart must store nothing more: everything on disk was stored, and its position committed.
rows_live=$(rows)
say "restart: run --once"
"$LOGBELT_BIN" run --once --config "$work/logbelt.toml" 2>>"$work/logbelt.stderr"
rows_restart=$(rows)

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

psql -At "$db_url" -c "COPY (SELECT fields->>'id', fields->>'msec',
    extract(epoch FROM ingested_at)::text FROM log_events) TO STDOUT" >"$work/rows.tsv"
dead=$(psql -At "$db_url" -c "SELECT count(*) FROM dead_letters")
python3 - "$work" "$rot1" "$rot2" "$dead" "$loadgen" "$rows_live" "$rows_restart" <<'EOF'
import collections, glob, gzip, json, math, os, sys
work, rot1, rot2, dead, loadgen = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
rows_live, rows_restart = int(sys.argv[6]), int(sys.argv[7])
disk = {}
partial = 0
for path in sorted(glob.glob(os.path.join(work, "logs", "access.json*"))):
    data = (gzip.open if path.endswith(".gz") else open)(path, "rb").read()
    body, _, tail = data.rpartition(b"\n")
    partial += len(tail)
    for line in body.split(b"\n") if body else []:
        line = line.strip(b"\0")  # a copytruncate race can leave NULs before a line
        if line:
            record = json.loads(line)
            disk[record["id"]] = float(record["msec"])
stored = collections.Counter()
lat = collections.defaultdict(list)
for row in open(os.path.join(work, "rows.tsv")):
    rid, msec, ingested = row.rstrip("\n").split("\t")
    stored[rid] += 1
    if stored[rid] == 1:
        t = float(msec)
        phase = "before rotation 1" if t < rot1 else ("after rotation 1 (create)" if t < rot2 else "after rotation 2 (copytruncate)")
        lat[phase].append(float(ingested) - t)
rows = sum(stored.values())
twice = sum(1 for c in stored.values() if c > 1)
extra = rows - len(stored)
missing = sum(1 for rid in disk if rid not in stored)
not_on_disk = sum(1 for rid in stored if rid not in disk)
print(f"load generator: {loadgen}")
print(f"lines on disk: {len(disk)} (plus {partial} bytes of a cut line)")
print(f"rows: {rows} (+ {dead} dead letters); lines stored more than once: {twice} ({extra} extra rows)")
print(f"rows stored by the restart (run --once) after the live run: {rows_restart - rows_live}")
print(f"lines on disk never stored: {missing}; stored but not on disk (lost by copytruncate): {not_on_disk}")
def pct(v, p):
    v = sorted(v)
    return v[min(len(v), max(1, math.ceil(p * len(v)))) - 1]
print("latency (ingested_at - nginx's msec; msec has millisecond resolution):")
for phase in ["before rotation 1", "after rotation 1 (create)", "after rotation 2 (copytruncate)"]:
    v = lat.get(phase, [])
    if v:
        print(f"  {phase:34} {len(v):8} lines  p50 {pct(v, .5)*1000:7.0f} ms  p99 {pct(v, .99)*1000:7.0f} ms  max {max(v)*1000:7.0f} ms")
    else:
        print(f"  {phase:34} no lines")
ok = missing == 0 and twice == 0 and dead == 0 and rows_restart == rows_live
print("RESULT:", "every line on disk stored exactly once" if ok else "NOT exactly once")
sys.exit(0 if ok else 1)
EOF
