#!/usr/bin/env bash
# npm run test:compose — validates compose.yaml and compose.cluster.yaml with `docker-compose
# config` (Debian 12 has docker-compose 1.29, which checks the Compose Specification schema; it
# has no compose plugin), checks the cluster's settings, and checks deploy/nginx.conf with
# `nginx -t`. Installs docker-compose and nginx-light with apt-get when missing (root).
set -euo pipefail
cd "$(dirname "$0")/../.."

need=()
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "need root to install ${need[*]}"; exit 1; }
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp compose.yaml compose.cluster.yaml "$work/"
mkdir -p "$work/deploy" && cp deploy/nginx.conf "$work/deploy/"
# env_file must exist to validate; the example stands in for the user's .env.
cp .env.example "$work/.env"
cd "$work"

failures=0
check() {
  local what=$1
  shift
  if "$@"; then echo "   ok    $what"; else
    echo "   FAIL  $what"
    failures=$((failures + 1))
  fi
}

echo "== docker-compose config ($(docker-compose version --short))"
# -q: validate only; the resolved output would print the settings from .env.
check "compose.yaml is valid" docker-compose -f compose.yaml config -q
check "compose.cluster.yaml is valid" docker-compose -f compose.cluster.yaml config -q
sed 's/^  kentik-image-cache:/  kentik-image-cache:\n    no_such_option: 1/' compose.yaml >broken.yaml
check "a broken file is refused (the check can fail)" bash -c '! docker-compose -f broken.yaml config -q 2>/dev/null'

echo "== settings"
docker-compose -f compose.yaml config >single.resolved.yaml
docker-compose -f compose.cluster.yaml config >cluster.resolved.yaml
check "settings as documented" python3 - <<'PY'
import sys, yaml

single = yaml.safe_load(open('single.resolved.yaml'))['services']
cluster = yaml.safe_load(open('cluster.resolved.yaml'))['services']
problems = []
def expect(cond, msg):
    if not cond:
        problems.append(msg)

restricted = lambda s: s.get('read_only') is True and s.get('cap_drop') == ['ALL'] \
    and 'no-new-privileges:true' in s.get('security_opt', [])
svc = single.get('kentik-image-cache', {})
expect(len(single) == 1, 'compose.yaml: one service')
expect(any(p.get('target') == 8080 if isinstance(p, dict) else str(p).endswith(':8080') for p in svc.get('ports', [])), 'compose.yaml: port 8080')
expect(any(':/cache' in str(v) or (isinstance(v, dict) and v.get('target') == '/cache') for v in svc.get('volumes', [])), 'compose.yaml: volume on /cache')
expect(restricted(svc), 'compose.yaml: restricted flags')

replicas = {k: v for k, v in cluster.items() if k.startswith('cache-')}
expect(len(replicas) == 3, 'cluster: three replicas')
for name, s in replicas.items():
    env = s.get('environment', {})
    expect(env.get('CACHE_BACKEND') == 'redis', f'{name}: CACHE_BACKEND=redis')
    expect(env.get('REDIS_URL') == 'redis://redis:6379/0', f'{name}: REDIS_URL')
    expect(str(env.get('PORT')) == '8080', f'{name}: PORT=8080')
    expect(restricted(s), f'{name}: restricted flags')
redis = cluster.get('redis', {})
cmd = redis.get('command', [])
cmd = cmd.split() if isinstance(cmd, str) else cmd
expect(str(redis.get('image', '')).startswith('redis:7'), 'redis: image redis:7')
expect('--appendonly' in cmd and cmd[cmd.index('--appendonly') + 1] == 'yes', 'redis: AOF on')
expect('--maxmemory-policy' in cmd and cmd[cmd.index('--maxmemory-policy') + 1] == 'noeviction', 'redis: noeviction')
nginx = cluster.get('nginx', {})
expect(any('nginx.conf' in str(v) for v in nginx.get('volumes', [])), 'nginx: mounts deploy/nginx.conf')
for p in problems:
    print('         ' + p)
sys.exit(1 if problems else 0)
PY

echo "== deploy/nginx.conf"
conf=deploy/nginx.conf
check "proxies to the three replicas" test "$(grep -cE '^\s*server cache-[123]:8080' "$conf")" = 3
check "passes X-Forwarded-For" grep -q 'proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for' "$conf"
# nginx -t resolves upstream names: point them at loopback for the syntax check.
sed -E 's/server cache-([123]):8080/server 127.0.0.1:808\1/' "$conf" >nginx.test.conf
check "nginx -t accepts it" "$NGINX" -t -q -c "$work/nginx.test.conf" -g "pid $work/nginx.pid; error_log stderr;"

echo "== done: $failures failed"
[ "$failures" = 0 ]
